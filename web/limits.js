// Limits (named licence pools) and fair shares, from GET /api/v1/limits.
import { get, onStream } from "./api.js";
import { h, notice, throttle } from "./util.js";

export function mount(el) {
  const box = h("div");
  el.append(h("h1", {}, "Limits"), box);
  let alive = true;
  async function load() {
    try {
      const r = await get("limits", {}, "limits");
      if (!alive) return;
      const limits = r.limits || [];
      const shares = r.shares || [];
      box.replaceChildren(
        limits.length
          ? h("table", { id: "limits" },
            h("thead", {}, h("tr", {}, ["name", "in use", "capacity", "waiting jobs", "configured"].map((c) => h("th", {}, c)))),
            h("tbody", {}, limits.map((l) => h("tr", {},
              h("td", {}, l.name), h("td.num", {}, l.in_use || 0), h("td.num", {}, l.capacity || 0),
              h("td.num", {}, l.waiting_jobs || 0), h("td", {}, l.configured ? "yes" : "no (named by jobs only)")))))
          : h("p.muted", { id: "limits" }, "No limits configured or named by jobs."),
        h("h2", {}, "Fair shares"),
        r.shares_configured || shares.length
          ? h("table", { id: "shares" },
            h("thead", {}, h("tr", {}, ["project", "weight", "running", "queued jobs", "configured"].map((c) => h("th", {}, c)))),
            h("tbody", {}, shares.map((s) => h("tr", {},
              h("td", {}, s.project || "(default)"), h("td.num", {}, s.weight || 1), h("td.num", {}, s.running || 0),
              h("td.num", {}, s.queued_jobs || 0), h("td", {}, s.configured ? "yes" : "default share")))))
          : h("p.muted", {}, "No fair share: slots go job by job (config shares)."));
      el.dataset.loaded = "1";
    } catch (e) {
      if (alive) notice("limits: " + e.message);
    }
  }
  const reload = throttle(load, 2000);
  const offs = ["job", "reset"].map((t) => onStream(t, reload));
  load();
  return () => {
    alive = false;
    offs.forEach((off) => off());
  };
}
