// Server-Sent Events over fetch(): unlike EventSource it can send an Authorization header, so the token
// never goes into a URL (where it would end up in access logs). Reconnects with backoff and resumes with
// Last-Event-ID, as EventSource does.

/** Parses the text/event-stream format (WHATWG HTML, "Server-sent events") chunk by chunk. */
export class EventStreamParser {
  constructor(onEvent, onComment = () => {}) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.buffer = "";
    this.lastEventId = "";
    this.retry = null;
    this._reset();
  }

  _reset() {
    this.type = "";
    this.data = [];
    this.hasData = false;
    this.id = null;
  }

  feed(text) {
    this.buffer += text;
    let start = 0;
    for (;;) {
      const match = /\r\n|\r|\n/g;
      match.lastIndex = start;
      const found = match.exec(this.buffer);
      if (!found) break;
      // A lone "\r" at the very end may be the first half of "\r\n": wait for more.
      if (found[0] === "\r" && found.index === this.buffer.length - 1) break;
      this._line(this.buffer.slice(start, found.index));
      start = found.index + found[0].length;
    }
    this.buffer = this.buffer.slice(start);
  }

  _line(line) {
    if (line === "") {
      if (this.id !== null) this.lastEventId = this.id;
      if (this.hasData) {
        this.onEvent({ type: this.type || "message", data: this.data.join("\n"), id: this.lastEventId });
      }
      this._reset();
      return;
    }
    if (line.startsWith(":")) {
      this.onComment(line.slice(1));
      return;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") {
      this.data.push(value);
      this.hasData = true;
    } else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }
}

export class AuthError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * A self-reconnecting event stream. `url` is a string, or a function of `reconnecting` (true after the
 * first attempt) that returns one.
 * options: headers() -> object, onOpen(), onEvent({type, data, id}), onDown(error, retryInMs, failures),
 * onAuthError(AuthError), lastEventId (initial), resume (send Last-Event-ID, default true),
 * minDelay/maxDelay in ms, silenceLimit in ms.
 */
export class EventStream {
  constructor(url, options) {
    this.url = url;
    this.options = options;
    this.lastEventId = options.lastEventId ?? "";
    this.closed = false;
    this.failures = 0;
    this.serverRetry = null;
    this.controller = null;
    this.timer = null;
    this.watchdog = null;
    this.heartbeats = false;
    this.connections = 0;
  }

  start() {
    this._connect();
    return this;
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    this.controller?.abort();
  }

  /** Drop the current connection and connect again at once (for example after a fresh login). */
  reconnectNow() {
    clearTimeout(this.timer);
    this.controller?.abort();
    this.failures = 0;
    if (!this.closed) this._connect();
  }

  async _connect() {
    if (this.closed) return;
    const controller = new AbortController();
    this.controller = controller;
    const headers = { Accept: "text/event-stream", ...(this.options.headers?.() ?? {}) };
    if (this.lastEventId && this.options.resume !== false) headers["Last-Event-ID"] = this.lastEventId;
    let openedAt = 0;
    try {
      const url = typeof this.url === "function" ? this.url(this.connections > 0) : this.url;
      this.connections += 1;
      const response = await fetch(url, { headers, signal: controller.signal, cache: "no-store" });
      if (response.status === 401 || response.status === 403) {
        const body = await response.json().catch(() => ({}));
        throw new AuthError(response.status, body.message || response.statusText);
      }
      if (!response.ok || !response.body) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body.message || `HTTP ${response.status}`);
      }
      const parser = new EventStreamParser(
        (event) => {
          this.lastEventId = event.id;
          this.options.onEvent(event);
        },
        () => {
          this.heartbeats = true;
        },
      );
      parser.lastEventId = this.lastEventId;
      this.failures = 0;
      openedAt = performance.now();
      this.options.onOpen?.();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        this._armWatchdog(controller);
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
        if (parser.retry !== null) this.serverRetry = parser.retry;
      }
      throw new Error("the server closed the stream");
    } catch (error) {
      clearTimeout(this.watchdog);
      if (this.closed || (controller.signal.aborted && this.controller !== controller)) return;
      if (error instanceof AuthError) {
        this.closed = true;
        this.options.onAuthError?.(error);
        return;
      }
      // A stream that ran for a while and then ended (a proxy's or PocketBase's idle limit) is simply
      // opened again; only a connection that cannot be made is reported as down.
      if (openedAt && performance.now() - openedAt > 2000) {
        this._connect();
        return;
      }
      this.failures += 1;
      const delay = this._delay();
      this.options.onDown?.(error, delay, this.failures);
      this.timer = setTimeout(() => this._connect(), delay);
    }
  }

  // Once the server has shown that it sends heartbeats, silence means the connection is dead even when
  // no error reaches us (a suspended server, a dropped network): give up on it and reconnect.
  _armWatchdog(controller) {
    clearTimeout(this.watchdog);
    if (!this.heartbeats) return;
    const limit = this.options.silenceLimit ?? 45_000;
    this.watchdog = setTimeout(() => controller.abort(new Error("no data from the server")), limit);
  }

  _delay() {
    const min = this.options.minDelay ?? 500;
    const max = this.options.maxDelay ?? 5000;
    const base = Math.min(max, min * 2 ** Math.min(this.failures - 1, 8));
    const wanted = Math.min(max, Math.max(base, this.serverRetry ?? 0));
    // A little jitter so many open tabs do not come back in lockstep.
    return Math.round(wanted * (0.85 + Math.random() * 0.3));
  }
}
