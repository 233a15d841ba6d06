// The processes as last reported by the server, in config order, plus what the views derive from them.

import { parseDuration } from "./format.js";

export const STATUSES = ["running", "starting", "stopping", "stopped", "crashed", "failed", "completed", "scheduled"];

/** Overall health: red when something gave up, amber when something is crashing, green otherwise. */
export function healthOf(counts) {
  if (counts.total === 0) return "none";
  if (counts.failed > 0) return "failed";
  if (counts.crashed > 0) return "crashed";
  return "ok";
}

export class ProcessStore {
  constructor() {
    this.byId = new Map();
    this.order = [];
    this.listeners = new Set();
  }

  /** Calls listener({changed: Set<id>, structural: bool}) after every change. */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  _emit(changed, structural) {
    for (const listener of this.listeners) listener({ changed, structural });
  }

  /** Replace everything with a full list (a snapshot): adds, removes and reorders. */
  replace(list) {
    const changed = new Set();
    const next = new Map();
    for (const state of list) {
      const previous = this.byId.get(state.id);
      const entry = prepare(state);
      next.set(state.id, entry);
      if (!previous || fingerprint(previous) !== fingerprint(entry)) changed.add(state.id);
    }
    const order = list.map((state) => state.id);
    const structural = order.length !== this.order.length || order.some((id, i) => id !== this.order[i]);
    this.byId = next;
    this.order = order;
    this._emit(changed, structural);
  }

  /** One process's new state (a status event). Unknown ids are appended. */
  update(state) {
    if (!state || typeof state.id !== "string") return;
    const structural = !this.byId.has(state.id);
    if (structural) this.order.push(state.id);
    this.byId.set(state.id, prepare(state));
    this._emit(new Set([state.id]), structural);
  }

  /** CPU and memory from a fresh list, for the runs already shown (an answer about an earlier run of a
   * process, overtaken by a status event, changes nothing). */
  refreshUsage(list) {
    const changed = new Set();
    for (const state of list) {
      const entry = this.byId.get(state.id);
      if (!entry || entry.pid !== state.pid) continue;
      if (entry.cpu === state.cpu && entry.memory === state.memory) continue;
      this.byId.set(state.id, { ...entry, cpu: state.cpu, memory: state.memory });
      changed.add(state.id);
    }
    if (changed.size) this._emit(changed, false);
  }

  get(id) {
    return this.byId.get(id);
  }

  all() {
    return this.order.map((id) => this.byId.get(id));
  }

  counts() {
    const counts = { total: this.order.length, ...Object.fromEntries(STATUSES.map((status) => [status, 0])) };
    for (const entry of this.byId.values()) {
      if (entry.status in counts) counts[entry.status] += 1;
    }
    return counts;
  }
}

// Uptime keeps counting on the page between events: remember the server's value and when it came,
// which does not depend on the browser's clock agreeing with the server's.
function prepare(state) {
  const uptime = parseDuration(state.uptime);
  return { ...state, uptimeSeconds: Number.isFinite(uptime) ? uptime : 0, receivedAt: performance.now() };
}

export function liveUptime(entry, now = performance.now()) {
  if (entry.status !== "running" || !entry.pid) return null;
  return entry.uptimeSeconds + (now - entry.receivedAt) / 1000;
}

function fingerprint(entry) {
  const { receivedAt, uptimeSeconds, uptime, ...rest } = entry;
  return JSON.stringify(rest);
}
