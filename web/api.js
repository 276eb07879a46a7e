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
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;  // http.read: token
  const response = await fetch("/api/v1/" + path + (qs ? "?" + qs : ""), { headers });
  const reply = await readReply(response);
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

function askToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  input.value = "";
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

export function confirmDialog(text) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

// POST /api/v1/jobs/ID/VERB with the token (asked for once per tab). Cancel
// destroys work, so it asks first. Returns the JobActionReply, or null when
// the user backed out; throws ApiError with the API's line when refused.
export async function jobAction(id, verb) {
  if (verb === "cancel") {
    const ok = await confirmDialog(
      `Cancel job ${id}? Its running tasks are stopped and its queued tasks never run.`,
    );
    if (!ok) return null;
  }
  let token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    token = await askToken();
    if (!token) return null;
    sessionStorage.setItem(TOKEN_KEY, token);
    document.dispatchEvent(new Event("farmhand-token"));
  }
  const response = await fetch(`/api/v1/jobs/${encodeURIComponent(id)}/${verb}`, {
    method: "POST",
    headers: { Authorization: "Bearer " + token, "Idempotency-Key": crypto.randomUUID() },
  });
  try {
    const reply = await readReply(response);
    return reply.action || {};
  } catch (e) {
    // A token the broker does not know is dropped so the next action asks again.
    if (e.status === 401 || e.status === 403) forgetToken();
    throw e;
  }
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

export function startStream() {
  if (source) return;
  source = new EventSource("/api/v1/stream");
  source.addEventListener("open", () => emit("open", null));
  source.addEventListener("error", () => emit("down", null));
  for (const type of ["job", "worker", "publish"]) {
    source.addEventListener(type, (e) => {
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
