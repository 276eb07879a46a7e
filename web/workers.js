// Workers: slots, running tasks, last beat, control (enabled, disabled,
// draining), isolation; a worker whose heartbeats stopped is marked lost.
// Reloaded on the stream's worker and farm events (it reads no job's: a busy
// farm moves thousands a second), and every 5 s (last beat).
// Each worker can be disabled, drained (both ask first, with an optional
// reason) or enabled again.
import { get, onStream, streamOf, action, promptDialog } from "./api.js";
import { replaceKeeping, refocus } from "./controls.js";
import { h, badge, bytes, duration, notice, throttle, num } from "./util.js";

// [verb, the control states it makes sense in, question (null: acts at once)].
const CONTROLS = [
  ["drain", ["enabled"], (name) => `Drain worker ${name}? It takes no new task; its running tasks finish.`],
  ["disable", ["enabled", "draining"], (name) => `Disable worker ${name}? It takes no new task; its running tasks finish. It stays disabled across restarts until enabled.`],
  ["enable", ["disabled", "draining"], null],
];

function row(w, control) {
  const state = w.control || "enabled";
  const lost = !w.alive;
  const running = w.running || [];
  return h("tr" + (lost ? ".lost" : ""), { dataset: { name: w.name, alive: String(!!w.alive), control: state } },
    h("td", {}, w.name),
    h("td", {}, badge(lost ? "lost" : "alive"), " ",
      w.control && w.control !== "enabled" ? badge(w.control) : "",
      w.control_reason ? h("span.muted", {}, " " + w.control_reason) : ""),
    h("td", {}, w.host ? `${w.host}${w.pid ? ":" + w.pid : ""}` : ""),
    h("td.num", {}, `${running.length}/${w.slots || 0}` + (w.interactive_slots ? ` +${w.interactive_slots}i` : "")),
    h("td", {}, running.map((t) => [h("a", { href: `#/jobs/${t.job_id}` }, `${t.job_id}.${t.index || 0}`), " "])),
    h("td.num", {}, [w.cores ? `${w.cores_used || 0}/${w.cores} cores` : "",
      num(w.memory_bytes) ? `${bytes(w.memory_used_bytes) || "0"}/${bytes(w.memory_bytes)}` : ""].filter(Boolean).join(", ")),
    h("td.num", {}, duration(w.last_beat_s) + " ago"),
    h("td", {}, w.isolation || ""),
    h("td", {}, (w.tags || []).join(", ")),
    h("td.controls", {}, CONTROLS.map(([verb, states]) => h("button" + (verb === "enable" ? "" : ".danger"), {
      type: "button", dataset: { key: `${verb}:${w.name}`, verb }, disabled: !states.includes(state),
      title: `${verb} ${w.name}`, onclick: () => control(w.name, verb),
    }, verb))));
}

export function mount(el) {
  const tbody = h("tbody");
  const summary = h("p.muted");
  el.append(h("h1", {}, "Workers"), summary,
    h("table", { id: "workers" },
      h("thead", {}, h("tr", {}, ["name", "state", "host", "busy/slots", "running", "booked", "last beat", "isolation", "tags", "control"].map((c) => h("th", {}, c)))),
      tbody));
  let alive = true;
  function show(reply) {
    const workers = (reply.workers || []).slice().sort((a, b) => (b.alive - a.alive) || a.name.localeCompare(b.name));
    replaceKeeping(tbody, ...workers.map((w) => row(w, control)));
    return workers;
  }
  // POST /api/v1/workers/NAME/VERB; the reply has every worker after the change.
  async function control(name, verb) {
    const question = CONTROLS.find(([v]) => v === verb)[2];
    let body = null;
    if (question) {
      const reason = await promptDialog(question(name), "Reason (optional)", verb);
      if (reason === null) return;
      if (reason) body = { reason };
    }
    try {
      const reply = await action(`workers/${encodeURIComponent(name)}/${verb}`, body);
      if (!reply || !alive) return;
      show(reply.worker_control || {});
      refocus(tbody, `${verb}:${name}`);
      notice(`${verb}: worker ${name}${body ? ` (${body.reason})` : ""}`, true);
    } catch (e) {
      notice(`${verb} refused: ${e.message}`);
    }
  }
  async function load() {
    try {
      const reply = await get("workers", {}, "workers");
      if (!alive) return;
      const workers = show(reply);
      const up = workers.filter((w) => w.alive);
      summary.textContent = `${up.length} alive, ${workers.length - up.length} lost; ` +
        `${up.reduce((n, w) => n + (w.running || []).length, 0)} of ${up.reduce((n, w) => n + num(w.slots), 0)} slots busy`;
      el.dataset.loaded = "1";
    } catch (e) {
      if (alive) notice("workers: " + e.message);
    }
  }
  const reload = throttle(load, 1000);
  streamOf({ jobs: "none" });
  const offs = ["worker", "farm", "reset"].map((t) => onStream(t, reload));
  const timer = setInterval(load, 5000);
  load();
  return () => {
    alive = false;
    offs.forEach((off) => off());
    clearInterval(timer);
    streamOf({});
  };
}
