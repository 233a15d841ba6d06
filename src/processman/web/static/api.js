// The HTTP side: where the API lives, the session (credential) and the calls the dashboard makes.
// The page may be served at "/" (processman itself) or at "/pm/" (through PocketBase): the API is always
// at the origin's /api/pm/, so every URL is built from the origin, never from the page's path.

export const API_ROOT = new URL("/api/pm/", location.origin);

export function apiUrl(path, params) {
  const url = new URL(path, API_ROOT);
  for (const [key, value] of Object.entries(params ?? {})) url.searchParams.set(key, String(value));
  return url.toString();
}

/** An error answer of the API ({"status","message","data"}) or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, message, data = {}) {
    super(message);
    this.status = status;
    this.data = data;
  }

  get isAuth() {
    return this.status === 401 || this.status === 403;
  }
}

const STORAGE_KEY = "processman.session";

/** The credential of the signed-in user, kept for the tab (or on the device when asked to remember). */
export class Session {
  constructor() {
    this.token = "";
    this.mode = "token";
    this.user = "";
    this.load();
  }

  load() {
    for (const store of [sessionStorage, localStorage]) {
      try {
        const saved = JSON.parse(store.getItem(STORAGE_KEY) || "null");
        if (saved && typeof saved.token === "string" && saved.token) {
          Object.assign(this, { token: saved.token, mode: saved.mode, user: saved.user || "" });
          return;
        }
      } catch {
        store.removeItem(STORAGE_KEY);
      }
    }
  }

  save({ token, mode, user = "" }, remember) {
    Object.assign(this, { token, mode, user });
    this.clearStorage();
    (remember ? localStorage : sessionStorage).setItem(STORAGE_KEY, JSON.stringify({ token, mode, user }));
  }

  clear() {
    this.token = "";
    this.user = "";
    this.clearStorage();
  }

  clearStorage() {
    sessionStorage.removeItem(STORAGE_KEY);
    localStorage.removeItem(STORAGE_KEY);
  }

  /** True when a PocketBase token has expired (its "exp" claim is in the past). */
  get expired() {
    if (this.mode !== "pocketbase") return false;
    try {
      const payload = JSON.parse(atob(this.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      return typeof payload.exp === "number" && payload.exp * 1000 < Date.now();
    } catch {
      return false;
    }
  }

  headers() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }
}

async function readError(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's HTML error page): fall back to the status line.
  }
  const message = typeof body.message === "string" && body.message ? body.message : response.statusText;
  return new ApiError(response.status, message || `HTTP ${response.status}`, body.data ?? {});
}

async function call(url, { method = "GET", headers = {}, body, signal } = {}) {
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: body === undefined ? headers : { "Content-Type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "The server cannot be reached.");
  }
  if (!response.ok) throw await readError(response);
  return response.status === 204 ? null : response.json();
}

export class Api {
  constructor(session) {
    this.session = session;
  }

  request(method, path, options = {}) {
    return call(apiUrl(path, options.params), {
      method,
      headers: this.session.headers(),
      signal: options.signal,
    });
  }

  list(signal) {
    return this.request("GET", "list", { signal });
  }

  /** Which containment keeps the process trees together: {"containment", "containmentDetail"}. */
  health() {
    return this.request("GET", "health");
  }

  /** Sends a signal by name to the main process, or with tree to every process of its tree. */
  signal(id, name, tree = false) {
    return call(apiUrl(`${encodeURIComponent(id)}/signal`), {
      method: "POST",
      headers: this.session.headers(),
      body: { signal: name, tree },
    });
  }

  action(id, verb) {
    return this.request("POST", `${encodeURIComponent(id)}/${verb}`);
  }

  /** The run history, newest first. */
  runs(id, limit = 50) {
    return this.request("GET", `${encodeURIComponent(id)}/runs`, { params: { limit } });
  }

  /** One run now of a job or task: the run begun or skipped, or {"queued": true}. */
  run(id) {
    return this.request("POST", `${encodeURIComponent(id)}/run`);
  }

  logs(id, lines = 100) {
    return this.request("GET", `${encodeURIComponent(id)}/logs`, { params: { lines } });
  }
}

/**
 * The session of PocketBase's own dashboard (/_/) on this origin, if a superuser is signed in there:
 * the page framed inside that dashboard asks its parent, the standalone /pm/ page reads the dashboard's
 * saved auth. Returns {token, email} or null.
 */
export function pocketbaseDashboardSession() {
  try {
    const store = window.parent !== window ? window.parent.app?.pb?.authStore : null;
    const superuser = store?.isSuperuser ?? store?.record?.collectionName === "_superusers";
    if (store?.isValid && superuser) return { token: store.token, email: store.record?.email ?? "" };
  } catch {
    // A parent from another origin: nothing to share.
  }
  try {
    const saved = JSON.parse(localStorage.getItem("__pb_superusers__/_") || "null");
    const record = saved?.record ?? saved?.model;
    if (saved?.token && record?.collectionName === "_superusers") return { token: saved.token, email: record.email ?? "" };
  } catch {
    // Not there, or not ours to read.
  }
  return null;
}

/** How this server wants the user to sign in: {"mode": "token" | "pocketbase"}. */
export async function authInfo() {
  return call(apiUrl("auth-info"));
}

/** Signs a PocketBase superuser in; returns {token, record}. A regular user gets a friendly refusal. */
export async function pocketbaseLogin(identity, password) {
  const body = { identity, password };
  try {
    return await call(new URL("/api/collections/_superusers/auth-with-password", location.origin), {
      method: "POST",
      body,
    });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 0 || error.status >= 500) throw error;
  }
  // Not a superuser. Say so plainly when the credentials belong to a regular user account.
  let regular = false;
  try {
    await call(new URL("/api/collections/users/auth-with-password", location.origin), { method: "POST", body });
    regular = true;
  } catch {
    regular = false;
  }
  if (regular) {
    throw new ApiError(
      403,
      "This account is a regular user, not a superuser. Only PocketBase superusers can manage processes.",
    );
  }
  throw new ApiError(400, "Wrong email or password. Sign in with a PocketBase superuser account.");
}
