// farmhand monitor: hash routes, the live-stream indicator, health and notices.
// Each view's mount(el, route) returns a function that unmounts it.
import { get, onStream, startStream, hasToken, forgetToken } from "./api.js";
import { notice, throttle } from "./util.js";
import * as jobs from "./jobs.js";
import * as job from "./job.js";
import * as workers from "./workers.js";
import * as events from "./events.js";
import * as limits from "./limits.js";

const routes = [
  [/^#\/jobs\/(\d+)$/, job, "jobs"],
  [/^#\/jobs(?:\?.*)?$/, jobs, "jobs"],
  [/^#\/workers$/, workers, "workers"],
  [/^#\/events$/, events, "events"],
  [/^#\/limits$/, limits, "limits"],
];

let unmount = null;

function route() {
  const hash = location.hash || "#/jobs";
  for (const [pattern, view, nav] of routes) {
    const m = hash.match(pattern);
    if (!m) continue;
    if (unmount) unmount();
    notice("");
    const el = document.getElementById("view");
    el.replaceChildren();
    delete el.dataset.loaded;  // each view sets it when its first data is shown
    delete el.dataset.state;
    for (const a of document.querySelectorAll("[data-nav]")) {
      a.classList.toggle("active", a.dataset.nav === nav);
    }
    unmount = view.mount(el, { params: m.slice(1), hash }) || null;
    return;
  }
  location.hash = "#/jobs";
}

async function refreshHealth() {
  const el = document.getElementById("health");
  try {
    const health = await get("health", {}, "health");
    const jobsByState = health.jobs || {};
    const parts = [`${health.workers_alive || 0} workers alive`];
    for (const s of ["running", "queued", "failed"]) if (jobsByState[s]) parts.push(`${jobsByState[s]} ${s}`);
    if (health.store_writes === false) parts.unshift("STORE NOT WRITING: " + (health.store_error || ""));
    el.textContent = parts.join(" · ");
  } catch (e) {
    el.textContent = "broker: " + e.message;
  }
}

function showTokenButton() {
  document.getElementById("forget-token").hidden = !hasToken();
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  onStream("open", () => {
    live.textContent = "live";
    live.classList.add("on");
  });
  onStream("down", () => {
    live.textContent = "reconnecting";
    live.classList.remove("on");
  });
  const health = throttle(refreshHealth, 2000);
  for (const type of ["job", "worker", "farm", "reset"]) onStream(type, health);
  document.getElementById("forget-token").addEventListener("click", forgetToken);
  document.addEventListener("farmhand-token", showTokenButton);
  showTokenButton();
  startStream();
  refreshHealth();
  route();
});
