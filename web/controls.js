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
  for (const [key, value] of typed) {
    const el = find(container, key);
    if (el) {
      el.value = value;
      el.dataset.dirty = "1";
    }
  }
  if (focused !== undefined) refocus(container, focused);
}

function find(container, key) {
  return container.querySelector(`[data-key="${CSS.escape(key)}"]`);
}

// Focus on the control `key` names; one the change disabled (drain, once
// drained) hands it to the next one its row still offers (disable), else the
// one before. Used after
// an action: its dialogs took the focus, and a redraw meanwhile removed the
// element they would give it back to.
export function refocus(container, key) {
  const el = find(container, key);
  if (!el || !el.disabled) return el?.focus();
  const buttons = [...(el.closest("tr, .actions")?.querySelectorAll("button") || [])];
  const at = buttons.indexOf(el);
  const open = (b) => !b.disabled;
  (buttons.slice(at + 1).find(open) || buttons.slice(0, at).reverse().find(open))?.focus();
}

// For a field's oninput: what the user typed is kept over the API's value.
export function markDirty(e) {
  e.target.dataset.dirty = "1";
}
