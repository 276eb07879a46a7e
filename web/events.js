// Publish events, newest first (GET /api/v1/events), with the jobs each made
// and what those jobs write: a thumbnail's image inline (GET
// /api/v1/jobs/ID/image, fetched with the token when reading needs one),
// other outputs by path.
import { get, getImage, onStream, streamOf, MAX_ID } from "./api.js";
import { h, badge, stateName, when, notice, throttle } from "./util.js";

const MAX_JOBS = 200;  // job summaries fetched for their output paths
const MAX_STREAM_JOBS = 1000;  // the stream's limit of listed jobs

function outputsOf(job) {
  return Object.entries(job?.params || {}).filter(([k]) => /^(output|out)/.test(k)).map(([, v]) => v);
}

// A succeeded thumbnail, convert or contact sheet job that wrote one JPEG or PNG: shown.
function showsImage(job) {
  const out = job?.params?.output || "";
  return ["thumbnail", "convert", "contactsheet"].includes(job?.kind) && stateName(job.state) === "succeeded" &&
    /\.(jpe?g|png)$/i.test(out) && !/[#@%]/.test(out);
}

export function mount(el) {
  const tbody = h("tbody");
  el.append(h("h1", {}, "Publish events"),
    h("table", { id: "events" },
      h("thead", {}, h("tr", {}, ["received", "event", "path", "source", "meta", "rules", "jobs", "outputs"].map((c) => h("th", {}, c)))),
      tbody));
  let alive = true;
  const jobCache = new Map();

  // A job's summary; kept once the job is finished (what it wrote is then
  // known), asked again while it runs.
  async function jobOf(id) {
    if (!jobCache.has(id)) {
      const pending = get(`jobs/${id}`, { tasks_limit: 1 }, "status").then((s) => s.job).catch(() => null);
      jobCache.set(id, pending);
      pending.then((job) => {
        if (!job || !["succeeded", "failed", "cancelled"].includes(stateName(job.state))) jobCache.delete(id);
      });
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
          jobOf(String(id)).then(async (job) => {
            if (showsImage(job)) {
              try {
                const url = await getImage(`jobs/${id}/image`);
                outputs.append(h("a", { href: `#/jobs/${id}`, title: job.params.output },
                  h("img.thumb", { src: url, alt: `thumbnail of job ${id}`, dataset: { job: String(id) } })));
                return;
              } catch (e) {
                // Shown by path below, with why.
              }
            }
            for (const path of outputsOf(job)) outputs.append(h("div", {}, path));
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
      const shown = events.flatMap((e) => e.job_ids || []).slice(0, MAX_STREAM_JOBS);
      streamOf({ jobs: shown, others: { newer_than: MAX_ID } });
      el.dataset.loaded = "1";
    } catch (e) {
      if (alive) notice("events: " + e.message);
    }
  }
  const reload = throttle(load, 1000);
  // A new publish comes as a publish event; the job states shown move on as
  // their jobs run: the stream brings the changes of the jobs shown, and no
  // other job's (a busy farm moves a thousand a second).
  const offs = ["publish", "job", "reset"].map((t) => onStream(t, reload));
  load();
  return () => {
    alive = false;
    offs.forEach((off) => off());
    streamOf({});
  };
}
