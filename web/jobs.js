// The jobs page: filters and paging on the server (GET /api/v1/jobs), rows
// patched in place from the stream's `job` events.
import { get, onStream, streamOf, MAX_ID } from "./api.js";
import { h, badge, stateName, progressBar, ago, user, notice, throttle } from "./util.js";

const PAGE = 100;
const STATES = ["", "queued", "running", "paused", "succeeded", "failed", "cancelled"];

function filtersFromHash(hash) {
  const q = new URLSearchParams(hash.split("?")[1] || "");
  return {
    state: q.get("state") || "",
    user: q.get("user") || "",
    project: q.get("project") || "",
    text: q.get("text") || "",
    offset: Number(q.get("offset") || 0),
  };
}

function hashFor(f) {
  const q = new URLSearchParams();
  for (const k of ["state", "user", "project", "text"]) if (f[k]) q.set(k, f[k]);
  if (f.offset) q.set("offset", f.offset);
  const qs = q.toString();
  return "#/jobs" + (qs ? "?" + qs : "");
}

// Would the server's filter list this job? (A new job on the first page.)
function matches(job, f) {
  if (f.state && stateName(job.state) !== f.state) return false;
  if (f.user && job.submitted_by !== f.user) return false;
  if (f.project && job.project !== f.project) return false;
  if (f.text && !String(job.name || "").toLowerCase().includes(f.text.toLowerCase())) return false;
  return true;
}

function row(job) {
  const state = stateName(job.state);
  const id = String(job.id);
  return h("tr", { dataset: { id, state } },
    h("td.num", {}, h("a", { href: `#/jobs/${id}` }, id)),
    h("td", {}, badge(state)),
    h("td", {}, progressBar(job)),
    h("td", {}, h("a", { href: `#/jobs/${id}` }, job.name || "")),
    h("td", {}, user(job)),
    h("td", {}, job.project || ""),
    h("td.num", {}, job.priority || 0),
    h("td.num", { title: new Date(Number(job.submitted_unix_ms || 0)).toLocaleString() }, ago(job.submitted_unix_ms)),
  );
}

export function mount(el, { hash }) {
  performance.clearMarks("jobs:start");
  performance.mark("jobs:start");
  const f = filtersFromHash(hash);
  const rows = new Map();  // job id -> <tr>
  const tbody = h("tbody");
  const pagerText = h("span");
  const prev = h("button", { type: "button", onclick: () => go({ ...f, offset: Math.max(0, f.offset - PAGE) }) }, "newer");
  const next = h("button", { type: "button", onclick: () => go({ ...f, offset: f.offset + PAGE }) }, "older");
  const go = (nf) => { location.hash = hashFor(nf); };

  const form = h("form.filters", {
    onsubmit: (e) => {
      e.preventDefault();
      const d = new FormData(form);
      go({ state: d.get("state"), user: d.get("user").trim(), project: d.get("project").trim(), text: d.get("text").trim(), offset: 0 });
    },
  },
  h("label", {}, "state", h("select", { name: "state", id: "filter-state" },
    STATES.map((s) => h("option", { value: s, selected: s === f.state }, s || "any")))),
  h("label", {}, "user", h("input", { name: "user", id: "filter-user", value: f.user, size: 12 })),
  h("label", {}, "project", h("input", { name: "project", id: "filter-project", value: f.project, size: 12 })),
  h("label", {}, "name contains", h("input", { name: "text", id: "filter-text", value: f.text, size: 20, type: "search" })),
  h("button", { type: "submit" }, "filter"));

  el.append(h("h1", {}, "Jobs"), form,
    h("table", { id: "jobs" },
      h("thead", {}, h("tr", {}, ["id", "state", "progress", "name", "user", "project", "priority", "age"].map(
        (c) => h(c === "id" || c === "priority" || c === "age" ? "th.num" : "th", {}, c)))),
      tbody),
    h("div.pager", {}, prev, next, pagerText));

  let alive = true;
  async function load() {
    try {
      const list = await get("jobs", { state: f.state, user: f.user, project: f.project, text: f.text, limit: PAGE, offset: f.offset }, "list");
      if (!alive) return;
      const jobs = (list.jobs || []).slice().sort((a, b) => Number(b.id) - Number(a.id));
      rows.clear();
      tbody.replaceChildren(...jobs.map((j) => {
        const r = row(j);
        rows.set(String(j.id), r);
        return r;
      }));
      // These rows' changes, and the moves of the jobs that could come onto
      // the page: those its filter matches; without one, only newer jobs (the
      // first page is the newest); none onto a later page. A busy farm moves
      // a thousand jobs a second.
      const filtered = f.state || f.user || f.project || f.text;
      streamOf({
        jobs: [...rows.keys()],
        others: f.offset !== 0 ? { newer_than: MAX_ID }
          : { state: f.state, user: f.user, project: f.project, text: f.text,
              newer_than: filtered ? undefined : newestShown() },
      });
      const matched = Number(list.matched || 0);
      pagerText.textContent = matched
        ? `${f.offset + 1}–${f.offset + jobs.length} of ${matched}`
        : "no jobs match";
      prev.disabled = f.offset === 0;
      next.disabled = !Number(list.next_offset || 0);
      el.dataset.loaded = "1";
      performance.clearMarks("jobs:rendered");
      performance.mark("jobs:rendered");
      performance.clearMeasures("jobs:render");
      performance.measure("jobs:render", "jobs:start", "jobs:rendered");
    } catch (e) {
      if (alive) notice("jobs: " + e.message);
    }
  }
  const reload = throttle(load, 1000);
  // Without a filter the first page is the newest jobs: an older job that
  // finished elsewhere does not change it.
  const newestShown = () => Math.max(0, ...[...rows.keys()].map(Number));

  const offJob = onStream("job", (ev) => {
    const id = String(ev.id);
    const old = rows.get(id);
    if (!ev.job) {  // forgotten
      if (old) reload();
      return;
    }
    if (old) {
      if (!matches(ev.job, f)) return reload();  // left the filter (e.g. state=running)
      const fresh = row(ev.job);
      old.replaceWith(fresh);
      rows.set(id, fresh);
    } else if (f.offset === 0 && matches(ev.job, f) &&
               (f.state || f.user || f.project || f.text || Number(id) > newestShown())) {
      reload();  // a new (or newly matching) job: the first page changes
    }
  });
  const offReset = onStream("reset", reload);
  const ticker = setInterval(reload, 60000);  // ages move on
  load();
  return () => {
    alive = false;
    streamOf({});
    offJob();
    offReset();
    clearInterval(ticker);
  };
}
