// Workers: slots, running tasks, last beat, control (enabled, disabled,
// draining), isolation; a worker whose heartbeats stopped is marked lost.
// Reloaded on the stream's worker and job events, and every 5 s (last beat).
import { get, onStream } from "./api.js";
import { h, badge, bytes, duration, notice, throttle, num } from "./util.js";

function row(w) {
  const lost = !w.alive;
  const running = w.running || [];
  return h("tr" + (lost ? ".lost" : ""), { dataset: { name: w.name, alive: String(!!w.alive) } },
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
    h("td", {}, (w.tags || []).join(", ")));
}

export function mount(el) {
  const tbody = h("tbody");
  const summary = h("p.muted");
  el.append(h("h1", {}, "Workers"), summary,
    h("table", { id: "workers" },
      h("thead", {}, h("tr", {}, ["name", "state", "host", "busy/slots", "running", "booked", "last beat", "isolation", "tags"].map((c) => h("th", {}, c)))),
      tbody));
  let alive = true;
  async function load() {
    try {
      const reply = await get("workers", {}, "workers");
      if (!alive) return;
      const workers = (reply.workers || []).slice().sort((a, b) => (b.alive - a.alive) || a.name.localeCompare(b.name));
      tbody.replaceChildren(...workers.map(row));
      const up = workers.filter((w) => w.alive);
      summary.textContent = `${up.length} alive, ${workers.length - up.length} lost; ` +
        `${up.reduce((n, w) => n + (w.running || []).length, 0)} of ${up.reduce((n, w) => n + num(w.slots), 0)} slots busy`;
      el.dataset.loaded = "1";
    } catch (e) {
      if (alive) notice("workers: " + e.message);
    }
  }
  const reload = throttle(load, 1000);
  const offs = ["worker", "job", "reset"].map((t) => onStream(t, reload));
  const timer = setInterval(load, 5000);
  load();
  return () => {
    alive = false;
    offs.forEach((off) => off());
    clearInterval(timer);
  };
}
