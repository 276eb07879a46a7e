// Limits (named licence pools) and fair shares, from GET /api/v1/limits. A
// limit's capacity is set on its row (asks first when it becomes 0, which
// stops new tasks holding it), a new limit by the form under the table.
import { get, onStream, streamOf, action } from "./api.js";
import { replaceKeeping, markDirty } from "./controls.js";
import { h, notice, throttle, num } from "./util.js";

const MAX_CAPACITY = 4294967295;

export function mount(el) {
  const box = h("div");
  const sharesBox = h("div");
  const nameInput = h("input", { type: "text", id: "limit-new-name", required: true, maxlength: "64",
    pattern: "[A-Za-z0-9_.\\-]{1,64}", title: "1-64 of A-Z a-z 0-9 _ . -", size: "16" });
  const capacityInput = h("input", { type: "number", id: "limit-new-capacity", required: true, min: "0",
    max: String(MAX_CAPACITY), step: "1", size: "6" });
  const newForm = h("form.filters", { id: "limit-new", onsubmit: (e) => {
    e.preventDefault();
    setLimit(nameInput.value.trim(), capacityInput.value).then((ok) => {
      if (ok) nameInput.value = capacityInput.value = "";
    });
  } },
  h("label", {}, "name", nameInput), h("label", {}, "capacity", capacityInput),
  h("button", { type: "submit", id: "limit-new-set" }, "set limit"));
  el.append(h("h1", {}, "Limits"), box, h("h2", {}, "Set a limit by name"), newForm, h("h2", {}, "Fair shares"), sharesBox);
  let alive = true;
  let capacities = new Map();  // name -> capacity shown

  // POST /api/v1/limits/NAME {"capacity": N}; true when set.
  async function setLimit(name, value) {
    const capacity = Number(value);
    if (value === "" || !Number.isInteger(capacity) || capacity < 0 || capacity > MAX_CAPACITY) {
      notice(`limit ${name}: capacity must be a whole number from 0 to ${MAX_CAPACITY}, not "${value}"`);
      return false;
    }
    const before = capacities.get(name);
    const question = capacity === 0 && before !== 0
      ? `Set limit ${name} to 0? No new task holding it starts until it is raised; running ones finish.` : null;
    try {
      const reply = await action(`limits/${encodeURIComponent(name)}`, { capacity }, { confirm: question, yes: "Set to 0" });
      if (!reply) return false;
      const field = box.querySelector(`[data-key="${CSS.escape("capacity:" + name)}"]`);
      if (field) delete field.dataset.dirty;
      if (alive) show(reply.limits || {});
      notice(`limit ${name}: capacity ${capacity}`, true);
      return true;
    } catch (e) {
      notice(`limit ${name} refused: ${e.message}`);
      return false;
    }
  }

  function limitRow(l) {
    const key = "capacity:" + l.name;
    const input = h("input.capacity", { type: "number", min: "0", max: String(MAX_CAPACITY), step: "1",
      value: String(l.capacity || 0), "aria-label": `capacity of ${l.name}`, dataset: { key }, oninput: markDirty, onchange: markDirty });
    const form = h("form.inline", { onsubmit: (e) => {
      e.preventDefault();
      setLimit(l.name, input.value);
    } }, input, " ", h("button", { type: "submit", dataset: { key: "set:" + l.name } }, "set"));
    return h("tr", { dataset: { name: l.name, capacity: String(l.capacity || 0) } },
      h("td", {}, l.name), h("td.num", {}, l.in_use || 0), h("td.num", {}, l.capacity || 0),
      h("td.num", {}, l.waiting_jobs || 0), h("td", {}, l.configured ? "yes" : "no (named by jobs only)"),
      h("td", {}, form));
  }

  function show(r) {
    const limits = r.limits || [];
    const shares = r.shares || [];
    capacities = new Map(limits.map((l) => [l.name, num(l.capacity)]));
    replaceKeeping(box,
      limits.length
        ? h("table", { id: "limits" },
          h("thead", {}, h("tr", {}, ["name", "in use", "capacity", "waiting jobs", "configured", "set capacity"].map((c) => h("th", {}, c)))),
          h("tbody", {}, limits.map(limitRow)))
        : h("p.muted", { id: "limits" }, "No limits configured or named by jobs."));
    sharesBox.replaceChildren(
      r.shares_configured || shares.length
        ? h("table", { id: "shares" },
          h("thead", {}, h("tr", {}, ["project", "weight", "running", "queued jobs", "configured"].map((c) => h("th", {}, c)))),
          h("tbody", {}, shares.map((s) => h("tr", {},
            h("td", {}, s.project || "(default)"), h("td.num", {}, s.weight || 1), h("td.num", {}, s.running || 0),
            h("td.num", {}, s.queued_jobs || 0), h("td", {}, s.configured ? "yes" : "default share")))))
        : h("p.muted", {}, "No fair share: slots go job by job (config shares)."));
  }

  async function load() {
    try {
      const r = await get("limits", {}, "limits");
      if (!alive) return;
      show(r);
      el.dataset.loaded = "1";
    } catch (e) {
      if (alive) notice("limits: " + e.message);
    }
  }
  const reload = throttle(load, 2000);
  // No job's events: the farm events say when limits in use may have moved.
  streamOf({ jobs: "none" });
  const offs = ["farm", "reset"].map((t) => onStream(t, reload));
  load();
  return () => {
    alive = false;
    offs.forEach((off) => off());
    streamOf({});
  };
}
