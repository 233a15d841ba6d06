// The log panel: lines arrive in bursts (a chatty child can print thousands a second), so they are queued
// and drawn at most once per animation frame, and the page never keeps more than `maxLines` of them.
// Auto-scroll follows the newest line until the user scrolls up; then the view holds still and a button
// offers to jump back to the latest lines. A line the process keeps redrawing (a progress bar) is shown
// below the others in its latest state, one per stream, until its finished form arrives.

import { formatClock, plural } from "./format.js";

// How each stream is drawn. "system" lines are processman's own notes about the process (a restart, a
// readiness change): information, never the child's errors.
const STREAMS = {
  stdout: { className: "out", label: "out" },
  stderr: { className: "err", label: "err" },
  system: { className: "system", label: "pm", title: "A note from processman, not the process's output" },
  note: { className: "note", label: "•" },
};

export class LogView {
  constructor(root, { maxLines = 2000 } = {}) {
    this.root = root;
    this.maxLines = maxLines;
    this.scroller = root.querySelector(".log-lines");
    this.jumpButton = root.querySelector(".log-jump");
    this.statusText = root.querySelector(".log-count");
    this.entries = []; // {line, element} drawn, oldest first
    this.pending = []; // lines received but not drawn yet
    this.partials = new Map(); // stream -> the latest state of the line it is redrawing
    this.partialElements = new Map(); // stream -> its element, kept below the finished lines
    this.skipped = 0; // lines that went by while the view held still and did not fit in `pending`
    this.received = 0;
    this.query = "";
    this.following = true;
    this.visible = false;
    this.frame = 0;
    this.scroller.addEventListener("scroll", () => this._onScroll(), { passive: true });
    this.jumpButton.addEventListener("click", () => this.jumpToLatest());
  }

  reset() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.entries = [];
    this.pending = [];
    this.skipped = 0;
    this.received = 0;
    this.following = true;
    this.partials.clear();
    this.partialElements.clear();
    this.scroller.replaceChildren();
    this._updateStatus();
  }

  /** Lines as the API sends them: {timestamp, stream, content, seq?}. */
  add(lines) {
    if (!lines.length) return;
    this.received += lines.length;
    for (const line of lines) {
      this.pending.push(line);
      this.partials.delete(line.stream); // finished: its final form is this line
    }
    if (this.pending.length > this.maxLines) {
      const excess = this.pending.length - this.maxLines;
      this.pending.splice(0, excess);
      this.skipped += excess;
    }
    this._schedule();
  }

  /** The latest state of a line being redrawn ({timestamp, stream, content, partial: true}). */
  partial(line) {
    this.partials.set(line.stream, line);
    this._schedule();
  }

  /** A line from the dashboard itself ("12 lines dropped", "stream restarted"). */
  marker(text) {
    this.pending.push({ marker: true, content: text, timestamp: new Date().toISOString(), stream: "note" });
    this._schedule();
  }

  setVisible(visible) {
    this.visible = visible;
    if (visible) this._schedule();
  }

  setQuery(query) {
    this.query = query.trim().toLowerCase();
    for (const entry of this.entries) this._renderText(entry);
    this._updateStatus();
    if (this.following) this._scrollToEnd();
  }

  jumpToLatest() {
    this.following = true;
    this._flush();
    this._scrollToEnd();
  }

  _schedule() {
    if (this.frame || !this.visible) {
      this._updateStatus();
      return;
    }
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (this.following) this._flush();
      this._drawPartials();
      this._updateStatus();
    });
  }

  _flush() {
    if (!this.pending.length && !this.skipped) return;
    let lines = this.pending;
    this.pending = [];
    const fragment = document.createDocumentFragment();
    if (lines.length + (this.skipped ? 1 : 0) >= this.maxLines) {
      // Everything on screen would scroll away anyway: start over with the newest lines.
      for (const entry of this.entries) entry.element.remove();
      this.entries = [];
      lines = lines.slice(-(this.maxLines - (this.skipped ? 1 : 0)));
    }
    if (this.skipped) {
      lines = [this._skipMarker(this.skipped), ...lines];
      this.skipped = 0;
    }
    const added = lines.map((line) => {
      const entry = { line, element: this._element(line) };
      fragment.append(entry.element);
      return entry;
    });
    this.scroller.append(fragment);
    if (this.partials.size) this._drawPartials(); // redrawn lines stay below the finished ones
    this.entries.push(...added);
    const excess = this.entries.length - this.maxLines;
    if (excess > 0) {
      for (const entry of this.entries.splice(0, excess)) entry.element.remove();
    }
    if (this.following) this._scrollToEnd();
  }

  _drawPartials() {
    for (const [stream, element] of this.partialElements) {
      if (!this.partials.has(stream)) {
        element.remove();
        this.partialElements.delete(stream);
      }
    }
    for (const [stream, line] of this.partials) {
      let element = this.partialElements.get(stream);
      if (element) {
        element.querySelector("time").textContent = formatClock(new Date(line.timestamp));
        this._renderText({ line, element });
      } else {
        element = this._element(line);
        element.classList.add("partial");
        element.title = "Being redrawn by the process (a progress bar): its latest state";
        this.partialElements.set(stream, element);
      }
      this.scroller.append(element); // stays below the finished lines
    }
    if (this.partials.size && this.following) this._scrollToEnd();
  }

  _skipMarker(count) {
    return {
      marker: true,
      stream: "note",
      timestamp: new Date().toISOString(),
      content: `… ${plural(count, "line")} went by faster than the page shows them (the full log is on the server)`,
    };
  }

  _element(line) {
    const element = document.createElement("div");
    const kind = line.marker ? STREAMS.note : STREAMS[line.stream] ?? STREAMS.stdout;
    element.className = `line ${kind.className}`;
    // The line's own level (uvicorn's INFO on stderr is no error); without one, stderr is an error.
    if (!line.marker) element.dataset.level = line.level ?? (line.stream === "stderr" ? "error" : "info");
    const time = document.createElement("time");
    const date = new Date(line.timestamp);
    time.textContent = formatClock(date);
    if (!Number.isNaN(date.getTime())) time.dateTime = date.toISOString();
    const stream = document.createElement("span");
    stream.className = "stream";
    stream.textContent = kind.label;
    if (kind.title) stream.title = kind.title;
    const text = document.createElement("span");
    text.className = "text";
    element.append(time, stream, text);
    const entry = { line, element };
    this._renderText(entry);
    return element;
  }

  _renderText(entry) {
    const { line, element } = entry;
    const text = element.lastElementChild;
    const content = line.content ?? "";
    if (!this.query) {
      if (text.firstElementChild || text.textContent !== content) text.textContent = content;
      element.hidden = false;
      return;
    }
    const lower = content.toLowerCase();
    let index = lower.indexOf(this.query);
    element.hidden = index < 0 && !line.marker;
    if (index < 0) {
      text.textContent = content;
      return;
    }
    const parts = [];
    let start = 0;
    while (index >= 0) {
      parts.push(content.slice(start, index));
      const mark = document.createElement("mark");
      mark.textContent = content.slice(index, index + this.query.length);
      parts.push(mark);
      start = index + this.query.length;
      index = lower.indexOf(this.query, start);
    }
    parts.push(content.slice(start));
    text.replaceChildren(...parts);
  }

  _onScroll() {
    const distance = this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight;
    const atEnd = distance < 24;
    if (atEnd === this.following) return;
    this.following = atEnd;
    if (atEnd) this._flush();
    this._updateStatus();
  }

  _scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  _updateStatus() {
    const waiting = this.pending.length + this.skipped;
    this.root.toggleAttribute("data-paused", !this.following);
    this.jumpButton.hidden = this.following;
    this.jumpButton.textContent = waiting ? `↓ ${plural(waiting, "new line")}` : "↓ Latest";
    let text = `${plural(this.entries.length, "line")} shown`;
    if (this.query) {
      const matching = this.entries.filter((entry) => !entry.element.hidden && !entry.line.marker).length;
      text = `${plural(matching, "match", "matches")} in ${plural(this.entries.length, "line")}`;
    }
    if (!this.following) text += " · paused";
    this.statusText.textContent = text;
  }
}
