// Small helpers shared by the views: elements, names and numbers.

// h("td.num", {title: "x"}, "text", child...): an element; text is never parsed as HTML.
export function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// "JOB_RUNNING" -> "running", "TASK_DEAD" -> "dead".
export function stateName(s) {
  return String(s || "").replace(/^(JOB|TASK)_/, "").toLowerCase() || "unknown";
}

export function badge(name) {
  return h("span.badge.s-" + name, {}, name);
}

export const num = (v) => Number(v || 0);

export function ago(unixMs) {
  const ms = num(unixMs);
  if (!ms) return "";
  return duration((Date.now() - ms) / 1000);
}

export function duration(s) {
  s = Math.max(0, num(s));
  if (s < 1) return s ? s.toFixed(2) + "s" : "0s";
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  return Math.floor(s / 86400) + "d" + Math.floor((s % 86400) / 3600) + "h";
}

export function when(unixMs) {
  const ms = num(unixMs);
  return ms ? new Date(ms).toLocaleString() : "";
}

export function bytes(v) {
  let n = num(v);
  if (!n) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

export function user(job) {
  return job.submitted_by ? job.submitted_by + (job.submitted_from ? "@" + job.submitted_from : "") : "";
}

// Frames done out of the job's frames, else tasks done out of its tasks.
export function progressOf(job) {
  const counts = job.counts || {};
  const tasks = num(job.task_count);
  const bad = num(counts.dead) + num(counts.failed) + num(counts.cancelled);
  if (num(job.frames_total)) {
    return { done: num(job.frames_succeeded), total: num(job.frames_total), bad: tasks ? bad / tasks : 0, unit: "frames" };
  }
  return { done: num(counts.succeeded), total: tasks, bad: tasks ? bad / tasks : 0, unit: "tasks" };
}

export function progressBar(job) {
  const p = progressOf(job);
  const frac = p.total ? p.done / p.total : 0;
  const bar = h("div.progress", { title: `${p.done}/${p.total} ${p.unit}` },
    h("span.done", { style: `width:${(frac * 100).toFixed(1)}%` }),
    h("span.bad", { style: `left:${(frac * 100).toFixed(1)}%;width:${(Math.min(p.bad, 1 - frac) * 100).toFixed(1)}%` }));
  return h("div", {}, bar, h("span.progress-label", {}, `${p.done}/${p.total} ${p.unit}`));
}

// Calls fn at most once per `ms`, the last call always landing.
export function throttle(fn, ms) {
  let timer = null;
  let again = false;
  const run = () => {
    timer = null;
    if (again) {
      again = false;
      fn();
      timer = setTimeout(run, ms);
    }
  };
  return () => {
    if (timer) {
      again = true;
      return;
    }
    fn();
    timer = setTimeout(run, ms);
  };
}

// A line for the user above the view: the API's error, or what an action did.
export function notice(text, ok = false) {
  const el = document.getElementById("notice");
  el.textContent = text;
  el.className = ok ? "notice ok" : "notice";
  el.hidden = !text;
}
