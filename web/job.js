// A job's page: summary, errors, dependencies, actions, a form that changes
// its priority, max running and pool, and its tasks as a canvas grid (every
// state as a letter from GET /api/v1/jobs/ID/states, changed indices from the
// stream), a task's details and actions on click (or by its number).
import { get, onStream, streamOf, jobAction, action, MAX_ID } from "./api.js";
import { replaceKeeping, markDirty } from "./controls.js";
import { TaskGrid, TASK_STATES } from "./grid.js";
import {
  h, badge, stateName, progressBar, ago, when, duration, bytes, user, notice, throttle, num,
} from "./util.js";

const TASK_PAGE = 10000;
const FINISHED = ["succeeded", "failed", "cancelled"];
const ACTIONS = [
  ["pause", ["queued", "running"]],
  ["resume", ["paused"]],
  ["retry", ["failed", "cancelled", "running", "queued", "paused"]],
  ["cancel", ["queued", "running", "paused"]],
  ["requeue", FINISHED],
];

// A task's actions: [id, label, task states it makes sense in, body, question].
// Kill and skip destroy or bypass work, so they ask first.
const TASK_ACTIONS = [
  ["retry", "retry", ["succeeded", "failed", "dead", "cancelled"], {}, null],
  ["kill", "kill", ["running"], {},
    (id, i) => `Kill task ${i} of job ${id}? Its running attempt is stopped; the task runs again as a new attempt.`],
  ["kill", "kill as failed", ["running"], { fail: true },
    (id, i) => `Kill task ${i} of job ${id} as failed? Its running attempt is stopped and counts as a failed attempt.`],
  ["skip", "skip", ["waiting", "queued", "running", "failed", "dead", "cancelled"], {},
    (id, i) => `Skip task ${i} of job ${id}? It is marked succeeded without running (a running attempt is stopped) and its dependants are released.`],
];

// The job's fields the set form changes: [JobSetRequest field, label, input attributes].
const SET_FIELDS = [
  ["priority", "priority", { type: "number", step: "1", min: "-2147483648", max: "2147483647", required: true }],
  ["max_running", "max running (0: no cap)", { type: "number", step: "1", min: "0", max: "4294967295", required: true }],
  ["pool", "pool (empty: any)", { type: "text", maxlength: "64", size: "12" }],
];

function summaryList(job, status) {
  const items = [
    ["state", badge(stateName(job.state))],
    ["progress", progressBar(job)],
    ["kind", job.kind + (job.command_template ? ` (${job.command_template})` : "")],
    ["params", Object.entries(job.params || {}).map(([k, v]) => h("div.mono", {}, `${k}=${v}`))],
    ["frames", job.frames ? `${job.frames} (chunk ${job.chunk || 1})` : ""],
    ["tasks", `${job.task_count || 0}: ` + Object.entries(job.counts || {}).filter(([, v]) => num(v)).map(([k, v]) => `${v} ${k}`).join(", ")],
    ["submitted", `${when(job.submitted_unix_ms)} (${ago(job.submitted_unix_ms)} ago)`],
    ["submitter", [user(job), job.submitted_key ? ` key ${job.submitted_key}` : ""].join("")],
    ["project", job.project || ""],
    ["priority", String(job.priority || 0)],
    ["pool", job.pool || "any"],
    ["started", job.started_unix_ms && num(job.started_unix_ms) ? when(job.started_unix_ms) : "not yet"],
    ["finished", num(job.finished_unix_ms) ? when(job.finished_unix_ms) : ""],
    ["attempts", `at most ${job.max_attempts || "default"}` + (job.timeout_s ? `, timeout ${job.timeout_s}s` : "")],
    ["limits", (job.limits || []).join(", ") + (job.max_running ? ` max running ${job.max_running}` : "")],
    ["requests", [job.cores ? `${job.cores} cores` : "", job.memory_bytes && num(job.memory_bytes) ? bytes(job.memory_bytes) : ""].filter(Boolean).join(", ")],
    ["usage", job.usage ? `CPU ${duration(job.usage.cpu_s)}, peak ${bytes(job.usage.peak_rss_bytes) || "?"}, ${job.usage.attempts || 0} attempts measured` : ""],
    ["labels", Object.entries(job.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ")],
    ["after", (job.after || []).length ? (job.after || []).map((id) => [h("a", { href: `#/jobs/${id}` }, `job ${id}`), " "]) : ""],
    ["after frames of", num(job.after_frames) ? h("a", { href: `#/jobs/${job.after_frames}` }, `job ${job.after_frames}`) : ""],
    ["publish event", job.event_id || ""],
    ["waiting", status.waiting_reason || ""],
  ];
  return h("dl.summary", { id: "job-summary" },
    items.filter(([, v]) => v !== "" && !(Array.isArray(v) && !v.length)).map(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { field: k } }, v)]));
}

function errorsList(status, unblock) {
  const errors = status.last_errors || [];
  const blocked = status.blocked || [];
  if (!errors.length && !blocked.length) return h("div", { id: "job-errors" });
  return h("div", { id: "job-errors" },
    h("h2", {}, "Errors"),
    h("ul.errors", {}, errors.map((t) =>
      h("li", {}, `task ${t.index || 0} (frames ${t.frames || ""})${t.worker ? " on " + t.worker : ""}, attempt ${t.attempts || 0}: ${t.error || ""}`))),
    blocked.length ? h("p", {}, "Blocked workers: ", blocked.map((b) => `${b.worker} (${b.failures} failures: ${b.reason})`).join("; "), " ",
      blocked.map((b) => [h("button", { type: "button", dataset: { key: "unblock-" + b.worker }, onclick: () => unblock(b.worker) },
        `unblock ${b.worker}`), " "]),
      blocked.length > 1 ? h("button", { type: "button", dataset: { key: "unblock-all" }, onclick: () => unblock("") }, "unblock all") : "") : "");
}

function taskPanel(t, actTask) {
  const a = t.last_attempt;
  const rows = [
    ["state", badge(stateName(t.state))],
    ["frames", t.frames || ""],
    ["attempts", String(t.attempts || 0)],
    ["worker", t.worker || ""],
    ["started", num(t.started_unix_ms) ? when(t.started_unix_ms) : ""],
    ["elapsed", t.elapsed_s ? duration(t.elapsed_s) : (t.running_s ? duration(t.running_s) : "")],
    ["progress", num(t.progress_total) ? `${t.progress_done || 0}/${t.progress_total}` : ""],
    ["error", t.error || ""],
  ];
  if (a) {
    rows.push(["wall", duration(a.wall_s)],
      ["CPU", `${duration(num(a.cpu_user_s) + num(a.cpu_system_s))} (user ${duration(a.cpu_user_s)}, system ${duration(a.cpu_system_s)})`],
      ["peak memory", bytes(a.peak_rss_bytes) || "unknown"],
      ["exit", a.exit_signal ? a.exit_signal : (a.exit_code !== undefined ? `code ${a.exit_code}` : "")]);
  }
  const state = stateName(t.state);
  return h("div.task-panel", { id: "task-panel", dataset: { index: String(t.index || 0), state } },
    h("h2", {}, `Task ${t.index || 0}`),
    h("div.actions", { id: "task-actions" }, TASK_ACTIONS.map(([verb, label, states, body, question]) => {
      const key = "task-" + label.replace(/ /g, "-");
      return h("button" + (question ? ".danger" : ""), {
        type: "button", id: key, dataset: { key }, disabled: !states.includes(state),
        onclick: () => actTask(Number(t.index || 0), verb, label, body, question),
      }, label);
    })),
    h("dl.summary", {}, rows.filter(([, v]) => v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("h2", {}, "Attempts and log"),
    h("div", { id: "task-logs" }, h("p", {}, "loading…")),
    t.error ? h("pre", {}, t.error) : "");
}

function decodeText(b64) {
  if (!b64) return "";
  const raw = atob(b64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return new TextDecoder().decode(bytes);  // undecodable bytes show as U+FFFD
}

// A task's attempts, newest first, each with its log; true while one runs.
function renderLogs(box, logs) {
  const attempts = (logs || []).slice().sort((a, b) => num(b.attempt) - num(a.attempt));
  if (!attempts.length) {
    box.replaceChildren(h("p", {}, "no attempt has a log yet"));
    return false;
  }
  box.replaceChildren(...attempts.map((a) => {
    const s = a.stats || {};
    const facts = [
      `attempt ${a.attempt || 0}`, a.worker ? `on ${a.worker}` : "",
      a.running ? "running (log so far, following)" : "",
      s.wall_s ? `wall ${duration(s.wall_s)}` : "",
      s.cpu_user_s || s.cpu_system_s ? `CPU ${duration(num(s.cpu_user_s) + num(s.cpu_system_s))}` : "",
      num(s.peak_rss_bytes) ? `peak ${bytes(s.peak_rss_bytes)}` : "",
      s.exit_signal ? `killed by ${s.exit_signal}` : (a.stats && !a.running ? `exit ${s.exit_code || 0}` : ""),
    ].filter(Boolean).join(", ");
    return h("div.attempt", { dataset: { attempt: String(a.attempt || 0), running: a.running ? "1" : "0" } },
      h("h3", {}, facts),
      a.error ? h("p.error", {}, a.error) : "",
      h("pre.log", {}, decodeText(a.text) || "(no output)"));
  }));
  return attempts.some((a) => a.running);
}

export function mount(el, { params }) {
  const id = params[0];
  // This job's changes and task indices, for its grid; no other job's moves.
  streamOf({ tasks: id, jobs: [id], others: { newer_than: MAX_ID } });
  performance.clearMarks("grid:start");
  performance.mark("grid:start");
  let alive = true;
  let grid = null;
  let job = null;
  const head = h("div");
  const summaryBox = h("div");
  const errorsBox = h("div");
  const legend = h("div.legend", { id: "task-legend" });
  const canvas = h("canvas.grid", { id: "task-grid" });
  const panelBox = h("div");
  const actionButtons = Object.fromEntries(ACTIONS.map(([verb]) => [verb,
    h("button" + (verb === "cancel" || verb === "requeue" ? ".danger" : ""), {
      type: "button", id: "action-" + verb, disabled: true, onclick: () => act(verb),
    }, verb)]));
  const actions = h("div.actions", { id: "job-actions" }, Object.values(actionButtons));
  const setInputs = Object.fromEntries(SET_FIELDS.map(([field, , attrs]) =>
    [field, h("input", { ...attrs, id: "set-" + field, name: field, oninput: markDirty, onchange: markDirty })]));
  const setButton = h("button", { type: "submit", id: "set-apply" }, "set");
  const setForm = h("form.filters", { id: "job-set", onsubmit: (e) => { e.preventDefault(); applySet(); } },
    SET_FIELDS.map(([field, label]) => h("label", {}, label, setInputs[field])), setButton);
  const pickInput = h("input", { type: "number", id: "task-pick", min: "0", step: "1", required: true });
  const pickForm = h("form.filters", { id: "task-pick-form", onsubmit: (e) => { e.preventDefault(); showTask(); } },
    h("label", {}, "task", pickInput), h("button", { type: "submit", id: "task-pick-show" }, "show task"));
  el.append(head, actions, h("h2", {}, "Change"), setForm, summaryBox, errorsBox, h("h2", {}, "Tasks"), legend,
    h("div.grid-wrap", {}, canvas), pickForm, panelBox);

  function renderHead() {
    head.replaceChildren(h("h1", {}, `Job ${id}: ${job.name || ""} `, badge(stateName(job.state))));
    const state = stateName(job.state);
    // The buttons stay (a redraw would take a keyboard user's focus, and the
    // element a click was aimed at); only whether each makes sense changes.
    for (const [verb, states] of ACTIONS) actionButtons[verb].disabled = !states.includes(state);
    el.dataset.state = state;
    // The set form shows the job's values, except where the user is typing.
    const values = { priority: String(job.priority || 0), max_running: String(job.max_running || 0), pool: job.pool || "" };
    for (const [field, input] of Object.entries(setInputs)) {
      if (!input.dataset.dirty) input.value = values[field];
      input.disabled = FINISHED.includes(state);
    }
    setButton.disabled = FINISHED.includes(state);
  }

  function renderLegend() {
    if (!grid) return;
    const counts = grid.countsByState();
    legend.replaceChildren(...TASK_STATES.map((s, i) => (i && counts[i]) || (!i && counts[0])
      ? h("span", {}, h("i", { style: `background:${grid.colours[i]}` }), `${s === "unknown" ? "loading" : s} ${counts[i]}`) : ""));
  }

  function renderStatus(status) {
    job = status.job || {};
    renderHead();
    summaryBox.replaceChildren(summaryList(job, status));
    replaceKeeping(errorsBox, errorsList(status, unblock));
  }

  async function act(verb) {
    try {
      const reply = await jobAction(id, verb);
      if (!reply) return;
      notice(`${verb}: job ${id} is ${stateName(reply.state)} (${reply.tasks_changed || 0} tasks changed)`, true);
      refreshStatus();
    } catch (e) {
      notice(`${verb} refused: ${e.message}`);
    }
  }

  // POST /set with the fields the user changed; the summary follows from the stream.
  async function applySet() {
    const body = {};
    for (const [field, input] of Object.entries(setInputs)) {
      if (!input.dataset.dirty) continue;
      body[field] = field === "pool" ? input.value.trim() : Number(input.value);
    }
    if (!Object.keys(body).length) return notice("set: nothing changed (edit priority, max running or pool first)");
    try {
      const reply = await action(`jobs/${id}/set`, body);
      if (!reply) return;
      for (const input of Object.values(setInputs)) delete input.dataset.dirty;
      notice(`set: job ${id} ${Object.entries(body).map(([k, v]) => `${k.replace("_", " ")} ${v === "" ? "any" : v}`).join(", ")}`, true);
      refreshStatus();
    } catch (e) {
      notice(`set refused: ${e.message}`);
    }
  }

  async function actTask(index, verb, label, body, question) {
    try {
      const reply = await jobAction(id, verb, { ...body, tasks: String(index) },
        { confirm: question ? question(id, index) : null, yes: label });
      if (!reply) return;
      const changed = num(reply.tasks_changed);
      notice(`${label}: task ${index} of job ${id}: ${changed ? `done, job ${stateName(reply.state)}` : "no task matched"}`, true);
      refreshStatus();
      if (pickedIndex === index) pick(index);
    } catch (e) {
      notice(`${label} refused: ${e.message}`);
    }
  }

  async function unblock(worker) {
    try {
      const reply = await jobAction(id, "unblock", worker ? { worker } : null);
      if (!reply) return;
      notice(`unblock: job ${id} may run on ${worker || "every blocked worker"} again`, true);
      refreshStatus();
    } catch (e) {
      notice(`unblock refused: ${e.message}`);
    }
  }

  function showTask() {
    const index = Number(pickInput.value);
    const count = num(job?.task_count);
    if (!Number.isInteger(index) || index < 0 || index >= count) {
      return notice(`job ${id} has tasks 0 to ${Math.max(0, count - 1)}, not ${pickInput.value}`);
    }
    if (grid) {
      grid.selected = index;
      grid.draw();
    }
    pick(index);
  }

  async function fetchTasks(offset, limit) {
    const status = await get(`jobs/${id}`, { tasks_offset: offset, tasks_limit: limit }, "status");
    return status;
  }

  // The job, its first page of tasks, then every task's state in one
  // request (a letter a task) for the grid.
  async function loadAll() {
    const first = await fetchTasks(0, TASK_PAGE);
    if (!alive) return;
    renderStatus(first);
    const count = num(first.job?.task_count);
    if (!grid || grid.count !== count) grid = new TaskGrid(canvas, count, pick);
    grid.set(first.tasks || []);
    grid.draw();  // the first page shows at once; the rest fill in
    renderLegend();
    performance.clearMarks("grid:first");
    performance.mark("grid:first");
    performance.clearMeasures("grid:first-page");
    performance.measure("grid:first-page", "grid:start", "grid:first");
    if (count > TASK_PAGE) {
      const states = await get(`jobs/${id}/states`, {}, "status");
      if (!alive) return;
      grid.setLetters(0, states.task_states || "");
    }
    performance.clearMarks("grid:fetched");
    performance.mark("grid:fetched");
    grid.draw();
    renderLegend();
    el.dataset.loaded = "1";
    performance.clearMarks("grid:rendered");
    performance.mark("grid:rendered");
    performance.clearMeasures("grid:render");
    performance.measure("grid:render", "grid:start", "grid:rendered");
    performance.clearMeasures("grid:draw");
    performance.measure("grid:draw", "grid:fetched", "grid:rendered");
  }

  // Changed indices, fetched as a few ranges (indices close together share one).
  async function loadIndices(indices) {
    const sorted = [...new Set(indices.map(Number))].sort((a, b) => a - b);
    const ranges = [];
    for (const i of sorted) {
      const last = ranges[ranges.length - 1];
      if (last && i - last[0] < TASK_PAGE && i - last[1] <= 256) last[1] = i;
      else ranges.push([i, i]);
    }
    for (const [lo, hi] of ranges) {
      const page = await fetchTasks(lo, hi - lo + 1);
      if (!alive || !grid) return;
      grid.set(page.tasks || []);
    }
    renderLegend();
  }

  const refreshStatus = throttle(async () => {
    try {
      const status = await fetchTasks(Math.max(0, num(job?.task_count)), 1);
      if (alive) renderStatus(status);
    } catch (e) {
      if (alive) notice(e.message);
    }
  }, 1000);
  const reloadAll = throttle(() => loadAll().catch((e) => alive && notice(e.message)), 2000);

  let pickedIndex = -1;
  let follow = null;
  async function loadLogs(index) {
    clearTimeout(follow);
    const box = panelBox.querySelector("#task-logs");
    if (!box) return;
    try {
      const reply = await get(`jobs/${id}/tasks/${index}/logs`, {}, "logs");
      if (!alive || pickedIndex !== index) return;
      // A running attempt's log is followed: asked again every 2 s while shown.
      if (renderLogs(box, reply.logs)) follow = setTimeout(() => loadLogs(index), 2000);
    } catch (e) {
      if (alive) box.replaceChildren(h("p", {}, `log not available: ${e.message}`));
    }
  }
  async function pick(index) {
    pickedIndex = index;
    try {
      const page = await fetchTasks(index, 1);
      const t = (page.tasks || [])[0];
      if (alive && t && pickedIndex === index) {
        replaceKeeping(panelBox, taskPanel(t, actTask));
        loadLogs(index);
      }
    } catch (e) {
      notice(e.message);
    }
  }

  const offJob = onStream("job", (ev) => {
    if (String(ev.id) !== String(id) || !grid) return;
    if (!ev.job) return notice(`job ${id} is gone`);
    const tasks = ev.tasks || [];
    if (num(ev.tasks_changed) > tasks.length) reloadAll();  // more changed than listed
    else if (tasks.length) loadIndices(tasks).catch((e) => alive && notice(e.message));
    refreshStatus();
    if (pickedIndex >= 0 && tasks.map(Number).includes(pickedIndex)) pick(pickedIndex);
  });
  const offReset = onStream("reset", reloadAll);
  loadAll().catch((e) => notice(`job ${id}: ${e.message}`));
  return () => {
    alive = false;
    streamOf({});
    clearTimeout(follow);
    offJob();
    offReset();
  };
}
