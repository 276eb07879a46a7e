// Controls that survive a view redrawing itself: the views rebuild their tables
// from the API every few seconds, and a keyboard user's focus or a half-typed
// value must not vanish with the old elements. A control carries data-key
// (unique in its container); a field the user typed in carries data-dirty.

export function replaceKeeping(container, ...children) {
  const active = document.activeElement;
  const focused = container.contains(active) ? active.dataset.key : undefined;
  const typed = new Map();
  for (const el of container.querySelectorAll("[data-key][data-dirty]")) typed.set(el.dataset.key, el.value);
  container.replaceChildren(...children);
  const find = (key) => container.querySelector(`[data-key="${CSS.escape(key)}"]`);
  for (const [key, value] of typed) {
    const el = find(key);
    if (el) {
      el.value = value;
      el.dataset.dirty = "1";
    }
  }
  if (focused !== undefined) find(focused)?.focus();
}

// For a field's oninput: what the user typed is kept over the API's value.
export function markDirty(e) {
  e.target.dataset.dirty = "1";
}
