// The broker's JSON API (docs/openapi.yaml), its live stream, and actions with
// a bearer token kept in sessionStorage.

const TOKEN_KEY = "farmhand.token";

export class ApiError extends Error {
  constructor(status, line) {
    super(line);
    this.status = status;
  }
}

// GET /api/v1/PATH?params; returns the reply's body under `body` (e.g. "list").
export async function get(path, params = {}, body = null) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") query.append(k, String(v));
  }
  const qs = query.toString();
  const url = "/api/v1/" + path + (qs ? "?" + qs : "");
  const token = sessionStorage.getItem(TOKEN_KEY);
  let reply;
  try {
    // The token is sent for http.read: token.
    reply = await readReply(await fetch(url, { headers: token ? { Authorization: "Bearer " + token } : {} }));
  } catch (e) {
    // The broker refuses a read with a token it does not know, even when
    // reading needs none: such a token (given for an action just refused, or
    // removed from the tokens file since) is dropped and the read asked again.
    if (!token || (e.status !== 401 && e.status !== 403)) throw e;
    if (sessionStorage.getItem(TOKEN_KEY) === token) forgetToken();
    reply = await readReply(await fetch(url));
  }
  return body ? reply[body] || {} : reply;
}

// An image the API serves (a thumbnail), as an object URL for <img>: fetched
// here so that the token goes with it when reading needs one.
const imageUrls = new Map();
export async function getImage(path) {
  if (imageUrls.has(path)) return imageUrls.get(path);
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch("/api/v1/" + path, { headers });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  imageUrls.set(path, url);
  return url;
}

async function readReply(response) {
  let reply;
  try {
    reply = await response.json();
  } catch {
    throw new ApiError(response.status, `HTTP ${response.status} ${response.statusText}`);
  }
  if (!response.ok || reply.ok === false) {
    throw new ApiError(response.status, reply.error || `HTTP ${response.status}`);
  }
  return reply;
}

// ---------------------------------------------------------------- token and dialogs

export function hasToken() {
  return !!sessionStorage.getItem(TOKEN_KEY);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  document.dispatchEvent(new Event("farmhand-token"));
}

// Enter in a dialog's field means its OK button (a form's implicit submission
// would press its first button, the one that backs out).
function enterMeansOk(dialog, input) {
  input.onkeydown = (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    dialog.close("ok");
  };
}

function askToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  input.value = "";
  enterMeansOk(dialog, input);
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => resolve(dialog.returnValue === "ok" && input.value.trim() ? input.value.trim() : null),
      { once: true },
    );
    dialog.showModal();
    input.focus();
  });
}

// A question before an action that destroys or bypasses work: true for yes.
export function confirmDialog(text, yes = "Yes") {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = yes;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

// A question with a line of text to give (a worker's reason): the text ("" when
// left empty), or null when the user backed out.
export function promptDialog(text, label, yes) {
  const dialog = document.getElementById("prompt-dialog");
  const input = document.getElementById("prompt-input");
  document.getElementById("prompt-text").textContent = text;
  document.getElementById("prompt-label").textContent = label;
  document.getElementById("prompt-ok").textContent = yes;
  input.value = "";
  enterMeansOk(dialog, input);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok" ? input.value.trim() : null),
      { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
}

// A fresh key for each action: a repeat with it (a resent request) is answered
// without acting again. crypto.randomUUID exists only in secure contexts
// (https, localhost); a monitor opened as http://farmhost:7680 has not it.
function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// POST /api/v1/PATH with `body` (the request's other fields by protobuf name,
// or null) and the token (asked for once per tab). With `confirm`, asks that
// question first. Returns the broker's reply (its `action`, `worker_control`,
// `limits`...), or null when the user backed out; throws ApiError with the
// API's line when refused. A token the broker does not know is dropped, so the
// next action asks again.
export async function action(path, body = null, { confirm = null, yes = "Yes" } = {}) {
  if (confirm && !(await confirmDialog(confirm, yes))) return null;
  let token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    token = await askToken();
    if (!token) return null;
    sessionStorage.setItem(TOKEN_KEY, token);
    document.dispatchEvent(new Event("farmhand-token"));
  }
  const headers = { Authorization: "Bearer " + token, "Idempotency-Key": idempotencyKey() };
  if (body) headers["Content-Type"] = "application/json";
  const response = await fetch("/api/v1/" + path, {
    method: "POST", headers, body: body ? JSON.stringify(body) : undefined,
  });
  try {
    return await readReply(response);
  } catch (e) {
    if (e.status === 401 || e.status === 403) forgetToken();
    throw e;
  }
}

// What each job action asks first, if anything: the ones that destroy work.
const JOB_QUESTIONS = {
  cancel: (id) => `Cancel job ${id}? Its running tasks are stopped and its queued tasks never run.`,
  requeue: (id) => `Requeue job ${id}? It runs again: every task, earlier attempts kept in its logs.`,
};

// POST /api/v1/jobs/ID/VERB (cancel, pause, resume, retry, kill, skip,
// requeue, unblock) with an optional JobActionRequest body ({tasks: "3"});
// returns the JobActionReply, or null when the user backed out.
export async function jobAction(id, verb, body = null, options = {}) {
  const question = JOB_QUESTIONS[verb];
  const reply = await action(`jobs/${encodeURIComponent(id)}/${verb}`, body,
    { confirm: question ? question(id) : null, ...options });
  return reply && (reply.action || {});
}

// ---------------------------------------------------------------- live stream

// One EventSource for the page; views subscribe with onStream(type, fn) and
// unsubscribe with the function it returns. EventSource reconnects by itself
// and sends Last-Event-ID; `reset` means: reload from the API.
const listeners = new Map();
let source = null;

export function onStream(type, fn) {
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(fn);
  return () => listeners.get(type).delete(fn);
}

function emit(type, data) {
  for (const fn of listeners.get(type) || []) {
    try {
      fn(data);
    } catch (e) {
      console.error(e);
    }
  }
}

// Whose changed task indices the stream brings: none (the lists), or the job
// whose page is open (its grid); and whose job changes: every job's moves
// (made, changed state, forgotten) and every change of the jobs the page
// shows (a busy farm changes thousands a second; a page shows a hundred).
// Set by the views; the stream is reopened to continue from the last event seen.
let streamTasks = "none";
let streamJobs = "states";
let streamOthers = "";
let lastEventId = "";

function reopenStream() {
  if (!source) return;
  source.close();
  source = null;
  startStream();
}

// newer_than it: no other job's moves (a page of its own jobs only).
export const MAX_ID = "18446744073709551615";

// tasks: the job whose task indices to bring, or none; jobs: the ids of the
// jobs shown (at most 1000), nothing (every job's moves), or "none" (no job
// event at all: a page about the whole farm reloads on `farm` events);
// others: which other jobs' moves a page can use ({state, user, project,
// text} as a list is filtered, newer_than: an id), or all of them.
// streamOf({}) is what a page of no job wants.
export function streamOf({ tasks = null, jobs = null, others = {} } = {}) {
  const nextTasks = tasks ? String(tasks) : "none";
  const nextJobs = jobs === "none" ? "none" : jobs && jobs.length ? jobs.map(String).sort().join(",") : "states";
  const narrowed = new URLSearchParams();
  for (const [k, v] of Object.entries(others)) if (v !== undefined && v !== null && v !== "") narrowed.set(k, String(v));
  narrowed.sort();
  const nextOthers = narrowed.toString();
  if (nextTasks === streamTasks && nextJobs === streamJobs && nextOthers === streamOthers) return;
  streamTasks = nextTasks;
  streamJobs = nextJobs;
  streamOthers = nextOthers;
  reopenStream();
}

export function startStream() {
  if (source) return;
  const query = new URLSearchParams(streamOthers);
  query.set("tasks", streamTasks);
  query.set("jobs", streamJobs);
  if (lastEventId) query.set("last_event_id", lastEventId);
  // EventSource sends no header: with http.read: token the token goes in the URL.
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) query.set("access_token", token);
  source = new EventSource("/api/v1/stream?" + query.toString());
  source.addEventListener("open", () => emit("open", null));
  source.addEventListener("error", () => emit("down", null));
  for (const type of ["job", "worker", "publish", "farm"]) {
    source.addEventListener(type, (e) => {
      if (e.lastEventId) lastEventId = e.lastEventId;
      let data;
      try {
        data = JSON.parse(e.data);
      } catch {
        return;
      }
      emit(type, data);
    });
  }
  source.addEventListener("reset", () => emit("reset", null));
}

// Closed when the page goes away: an open stream left to the browser held one
// of its six connections to the broker for about a minute, and the pages that
// followed stalled behind the sixth. Opened again if the page comes back.
window.addEventListener("pagehide", () => {
  if (source) source.close();
  source = null;
});
window.addEventListener("pageshow", (e) => {
  if (e.persisted) startStream();
});
