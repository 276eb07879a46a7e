// Publish events, newest first (GET /api/v1/events), with the jobs each made
// and what those jobs write. The API serves no output files, so thumbnails are
// listed by path, not shown.
// TODO(issue 12): show thumbnails inline once the API serves a job's outputs.
import { get, onStream } from "./api.js";
import { h, badge, stateName, when, notice, throttle } from "./util.js";

const MAX_JOBS = 200;  // job summaries fetched for their output paths

function outputsOf(job) {
  return Object.entries(job?.params || {}).filter(([k]) => /^(output|out)/.test(k)).map(([, v]) => v);
}

export function mount(el) {
  const tbody = h("tbody");
  el.append(h("h1", {}, "Publish events"),
    h("table", { id: "events" },
      h("thead", {}, h("tr", {}, ["received", "event", "path", "source", "meta", "rules", "jobs", "outputs"].map((c) => h("th", {}, c)))),
      tbody));
  let alive = true;
  const jobCache = new Map();

  async function jobOf(id) {
    if (!jobCache.has(id)) {
      jobCache.set(id, get(`jobs/${id}`, { tasks_limit: 1 }, "status").then((s) => s.job).catch(() => null));
    }
    return jobCache.get(id);
  }

  async function load() {
    try {
      const r = await get("events", { limit: 100 }, "events");
      if (!alive) return;
      const events = r.events || [];
      let budget = MAX_JOBS;
      tbody.replaceChildren(...events.map((e) => {
        const outputs = h("td.mono");
        const ids = e.job_ids || [];
        for (const id of ids) {
          if (budget-- <= 0) break;
          jobOf(String(id)).then((job) => {
            for (const path of outputsOf(job)) outputs.append(h("div", { title: "not served by the API" }, path));
          });
        }
        return h("tr", { dataset: { event: e.event_id } },
          h("td", {}, when(e.received_unix_ms)),
          h("td.mono", {}, e.event_id),
          h("td.mono", {}, e.path),
          h("td", {}, e.source || ""),
          h("td", {}, Object.entries(e.meta || {}).map(([k, v]) => h("div", {}, `${k}=${v}`))),
          h("td", {}, (e.rules || []).join(", "), (e.warnings || []).map((w) => h("div.muted", {}, w))),
          h("td", {}, ids.map((id, i) => h("div", {}, h("a", { href: `#/jobs/${id}` }, `job ${id}`), " ",
            e.job_states && e.job_states[i] ? badge(stateName(e.job_states[i])) : ""))),
          outputs);
      }));
      if (!events.length) tbody.append(h("tr", {}, h("td", { colspan: 8 }, "No publish events yet.")));
      el.dataset.loaded = "1";
    } catch (e) {
      if (alive) notice("events: " + e.message);
    }
  }
  const reload = throttle(load, 1000);
  const offs = ["publish", "reset"].map((t) => onStream(t, reload));
  // Job states shown per event move on as their jobs run.
  const offJob = onStream("job", (ev) => { if (ev.job && ev.job.event_id) reload(); });
  load();
  return () => {
    alive = false;
    offs.forEach((off) => off());
    offJob();
  };
}
