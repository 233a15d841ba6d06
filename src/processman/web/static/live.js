// Live updates, two ways with one interface:
// - DirectLive: processman serves the page and streams Server-Sent Events itself (/api/pm/events and
//   /api/pm/{id}/logs?follow=1).
// - PocketBaseLive: the page is served through PocketBase (at /pm/), which cannot pass a stream through
//   its hooks; state changes and log lines arrive on PocketBase realtime topics instead (pm/events and
//   pm/logs/<id>), and the current state is read with an ordinary request after every (re)connect.
//
// Both report to the same handlers: onSnapshot(list), onStatus(state), onRun(run), onUp(),
// onDown(error, delayMs), onAuthError(error). followLogs(id, sink) feeds sink.onLines(lines), sink.onMarker(text) and
// sink.onState(text) and returns an object with close().

import { ApiError, apiUrl } from "./api.js";
import { plural } from "./format.js";
import { EventStream } from "./sse.js";

const HISTORY = 100;
const MAX_LINES = 1000; // what the server keeps per process

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export class DirectLive {
  constructor(session, api, handlers) {
    this.session = session;
    this.api = api;
    this.handlers = handlers;
    this.stream = null;
  }

  start() {
    const { handlers } = this;
    this.stream = new EventStream(apiUrl("events"), {
      headers: () => this.session.headers(),
      onOpen: () => handlers.onUp(),
      onEvent: (event) => {
        const data = parse(event.data);
        if (event.type === "snapshot" && Array.isArray(data)) handlers.onSnapshot(data);
        else if (event.type === "status" && data) handlers.onStatus(data);
        else if (event.type === "run" && data) handlers.onRun?.(data);
      },
      onDown: (error, delay) => handlers.onDown(error, delay),
      onAuthError: (error) => handlers.onAuthError(error),
    }).start();
  }

  close() {
    this.stream?.close();
  }

  reconnectNow() {
    this.stream?.reconnectNow();
  }

  followLogs(id, sink) {
    // Lines carry their sequence number. After a reconnect the stream is asked for the whole buffer and
    // only what is new is kept: a line seen before is dropped, older lines are skipped, and a line that
    // is numbered lower but written later means the server restarted and counts from 1 again (which
    // Last-Event-ID alone cannot tell: the new server may have reached the old number already).
    const seen = new Map();
    let lastSeq = 0;
    let lastTime = -Infinity;
    let resumed = false;
    let batch = [];
    let queued = false;
    const flush = () => {
      queued = false;
      if (batch.length) sink.onLines(batch);
      batch = [];
    };
    const accept = (line) => {
      const seq = Number(line.seq);
      const time = Date.parse(line.timestamp);
      if (!Number.isFinite(seq) || seq <= 0) return true;
      if (seen.get(seq) === line.timestamp) return false;
      if (seq > lastSeq) {
        if (resumed && lastSeq > 0 && seq > lastSeq + 1) {
          sink.onMarker(`… ${plural(seq - lastSeq - 1, "line")} went by while the connection was down`);
        }
      } else if (time > lastTime) {
        sink.onMarker("— the server restarted; its lines follow —");
        seen.clear();
      } else {
        return false;
      }
      resumed = false;
      lastSeq = seq;
      lastTime = Math.max(lastTime, time);
      seen.set(seq, line.timestamp);
      if (seen.size > 5000) seen.delete(seen.keys().next().value);
      return true;
    };
    sink.onState("Loading the last lines…");
    const path = `${encodeURIComponent(id)}/logs`;
    const url = (reconnecting) => apiUrl(path, { follow: 1, lines: reconnecting ? MAX_LINES : HISTORY });
    const stream = new EventStream(url, {
      resume: false,
      headers: () => this.session.headers(),
      onOpen: () => {
        resumed = lastSeq > 0;
        sink.onState("");
      },
      onEvent: (event) => {
        if (event.type === "dropped") {
          const count = parse(event.data)?.count ?? 0;
          sink.onMarker(`… ${plural(count, "line")} dropped: they went by before the page could read them`);
          return;
        }
        if (event.type === "partial") {
          // The latest state of a line being redrawn (a progress bar): after the lines before it.
          const line = parse(event.data);
          if (queued) flush();
          if (line) sink.onPartial?.(line);
          return;
        }
        if (event.type !== "log") return;
        const line = parse(event.data);
        if (!line || !accept({ ...line, seq: line.seq ?? event.id })) return;
        batch.push(line);
        if (!queued) {
          queued = true;
          queueMicrotask(flush);
        }
      },
      onDown: (error, delay) =>
        sink.onState(`Log stream interrupted (${error.message}); reconnecting in ${Math.ceil(delay / 1000)} s…`),
      onAuthError: (error) => this.handlers.onAuthError(error),
    }).start();
    return { close: () => stream.close() };
  }
}

const EVENTS_TOPIC = "pm/events";

export class PocketBaseLive {
  constructor(session, api, handlers) {
    this.session = session;
    this.api = api;
    this.handlers = handlers;
    this.topics = new Map([[EVENTS_TOPIC, (data) => this._onEvent(data)]]);
    this.reconnectHooks = new Set();
    this.clientId = "";
    this.stream = null;
  }

  start() {
    this.stream = new EventStream(new URL("/api/realtime", location.origin).toString(), {
      resume: false,
      onEvent: (event) => {
        if (event.type === "PB_CONNECT") {
          this.clientId = parse(event.data)?.clientId || event.id;
          this._connected();
          return;
        }
        const handler = this.topics.get(event.type);
        if (handler) handler(parse(event.data));
      },
      onDown: (error, delay) => {
        this.clientId = "";
        this.handlers.onDown(error, delay);
      },
      onAuthError: (error) => this.handlers.onAuthError(error),
    }).start();
  }

  close() {
    this.stream?.close();
  }

  reconnectNow() {
    this.stream?.reconnectNow();
  }

  async _connected() {
    try {
      await this._subscribe();
      this.handlers.onSnapshot(await this.api.list());
      this.handlers.onUp();
      for (const hook of this.reconnectHooks) hook();
    } catch (error) {
      if (error instanceof ApiError && error.isAuth) this.handlers.onAuthError(error);
      else this.stream.reconnectNow();
    }
  }

  /** Tell PocketBase every topic this page listens to (each call replaces the previous set). */
  async _subscribe() {
    if (!this.clientId) return;
    const response = await fetch(new URL("/api/realtime", location.origin), {
      method: "POST",
      headers: { "Content-Type": "application/json", ...this.session.headers() },
      body: JSON.stringify({ clientId: this.clientId, subscriptions: [...this.topics.keys()] }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new ApiError(response.status, body.message || response.statusText);
    }
  }

  _onEvent(data) {
    if (data?.type === "run") this.handlers.onRun?.(data);
    if (!data || data.type !== "status") return;
    if (data.state) this.handlers.onStatus(data.state);
    else this.handlers.onStatusPatch?.(data);
  }

  followLogs(id, sink) {
    const topic = `pm/logs/${id}`;
    const seen = new Set();
    const order = [];
    let early = [];
    let loaded = false;
    const key = (line) => `${line.timestamp}\u0000${line.stream}\u0000${line.content}`;
    const show = (lines) => {
      const fresh = [];
      for (const line of lines) {
        const k = key(line);
        if (seen.has(k)) continue;
        seen.add(k);
        order.push(k);
        fresh.push(line);
      }
      while (order.length > 5000) seen.delete(order.shift());
      if (fresh.length) sink.onLines(fresh);
    };
    // Lines that arrive while the history loads are held back, then merged without repeats.
    this.topics.set(topic, (data) => {
      const lines = Array.isArray(data) ? data : data ? [data] : [];
      if (!loaded) {
        early.push(...lines.filter((line) => !line.partial));
        return;
      }
      // A partial line (the latest state of a progress bar) comes after the finished lines before it.
      let finished = [];
      for (const line of lines) {
        if (!line.partial) {
          finished.push(line);
          continue;
        }
        show(finished);
        finished = [];
        sink.onPartial?.(line);
      }
      show(finished);
    });
    const loadHistory = async () => {
      sink.onState("Loading the last lines…");
      try {
        const history = await this.api.logs(id, HISTORY);
        loaded = true;
        show(history);
        show(early);
        early = [];
        sink.onState("");
      } catch (error) {
        if (error instanceof ApiError && error.isAuth) this.handlers.onAuthError(error);
        else sink.onState(`Could not load the log (${error.message}).`);
      }
    };
    this._subscribe().catch(() => {});
    loadHistory();
    // After a reconnect, whatever was printed meanwhile is in the server's buffer: read it again.
    const hook = () => loadHistory();
    this.reconnectHooks.add(hook);
    return {
      close: () => {
        this.topics.delete(topic);
        this.reconnectHooks.delete(hook);
        this._subscribe().catch(() => {});
      },
    };
  }
}
