// The side panel of one process: header with its live status, a Logs tab fed by a live stream, a
// Details tab and a Runs tab (its run history, live). Opening another process closes the previous stream first.

import { renderDetails } from "./details.js";
import { formatUptime, plural } from "./format.js";
import { allowedActions } from "./list.js";
import { LogView } from "./logs.js";
import { RunsView } from "./runs.js";
import { liveUptime } from "./store.js";

export class Panel {
  /** handlers: onAction(id, verb), onClose(), live() -> the live source that follows logs,
   * loadRuns(id) -> runs, onRunNow(id). */
  constructor(root, store, handlers) {
    this.root = root;
    this.store = store;
    this.handlers = handlers;
    this.id = null;
    this.follow = null;
    this.tab = "logs";
    this.busyVerb = "";
    this.title = root.querySelector("#panel-title");
    this.meta = root.querySelector("#panel-meta");
    this.dot = root.querySelector("#panel-dot");
    this.logState = root.querySelector("#log-state");
    this.details = root.querySelector("#details");
    this.logsRoot = root.querySelector("#logs");
    this.logs = new LogView(this.logsRoot);
    this.runsRoot = root.querySelector("#runs");
    this.runs = new RunsView(this.runsRoot, { load: (id) => handlers.loadRuns(id), runNow: (id) => handlers.onRunNow(id) });
    this.tabs = {
      logs: root.querySelector("#tab-logs"),
      details: root.querySelector("#tab-details"),
      runs: root.querySelector("#tab-runs"),
    };
    this.actionButtons = [...root.querySelectorAll("[data-panel-action]")];
    this._wire();
  }

  _wire() {
    this.root.querySelector("#panel-close").addEventListener("click", () => this.handlers.onClose());
    this.signalForm = this.root.querySelector("#panel-signal-form");
    this.signalForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const name = this.root.querySelector("#panel-signal").value;
      const tree = this.root.querySelector("#panel-signal-tree").checked;
      if (this.id) this.handlers.onSignal(this.id, name, tree);
    });
    for (const button of this.actionButtons) {
      button.addEventListener("click", () => {
        if (this.id) this.handlers.onAction(this.id, button.dataset.panelAction);
      });
    }
    for (const [name, tab] of Object.entries(this.tabs)) {
      tab.addEventListener("click", () => this.showTab(name));
      tab.addEventListener("keydown", (event) => {
        if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
        const names = Object.keys(this.tabs);
        const step = event.key === "ArrowRight" ? 1 : names.length - 1;
        const other = names[(names.indexOf(name) + step) % names.length];
        this.showTab(other);
        this.tabs[other].focus();
      });
    }
    const search = this.root.querySelector("#log-search");
    let timer = 0;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.logs.setQuery(search.value), 120);
    });
    for (const button of this.root.querySelectorAll("[data-stream]")) {
      button.addEventListener("click", () => {
        const on = button.getAttribute("aria-pressed") !== "true";
        button.setAttribute("aria-pressed", String(on));
        this.logsRoot.toggleAttribute(`data-hide-${button.dataset.stream}`, !on);
      });
    }
    const wrap = this.root.querySelector("#log-wrap");
    wrap.addEventListener("click", () => {
      const on = wrap.getAttribute("aria-pressed") !== "true";
      wrap.setAttribute("aria-pressed", String(on));
      this.logs.scroller.toggleAttribute("data-wrap", on);
    });
  }

  get open() {
    return this.id !== null;
  }

  show(id) {
    if (this.id === id) return;
    this.close();
    this.id = id;
    this.root.hidden = false;
    this.root.querySelector("#log-search").value = "";
    this.logs.reset();
    this.logs.setQuery("");
    this.title.textContent = id;
    this.refresh();
    this.showTab(this.tab);
    this._follow(id);
  }

  close() {
    this.follow?.close();
    this.follow = null;
    this.id = null;
    this.runs.clear();
    this.root.hidden = true;
    this.logs.setVisible(false);
  }

  showTab(name) {
    this.tab = name;
    for (const [tabName, tab] of Object.entries(this.tabs)) {
      const selected = tabName === name;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
    }
    this.logsRoot.hidden = name !== "logs";
    this.details.hidden = name !== "details";
    this.runsRoot.hidden = name !== "runs";
    this.logs.setVisible(name === "logs" && this.open);
    if (name === "details") this._renderDetails();
    if (name === "runs") this.reloadRuns();
  }

  /** Read the open process's runs again (the Runs tab opened, or the live connection came back). */
  reloadRuns() {
    if (!this.id || this.tab !== "runs") return;
    this.runs.setEntry(this.store.get(this.id));
    this.runs.show(this.id);
  }

  /** A `run` event of the live connection. */
  addRun(run) {
    if (this.tab === "runs") this.runs.add(run);
  }

  setBusy(verb) {
    this.busyVerb = verb || "";
    this.refresh();
  }

  /** Re-read the process from the store (after a status event). */
  refresh() {
    const entry = this.id && this.store.get(this.id);
    if (!entry) {
      if (this.id) {
        this.meta.textContent = "no longer configured";
        this.root.dataset.status = "stopped";
      }
      return;
    }
    this.root.dataset.status = entry.status;
    this.dot.title = entry.status;
    this._renderMeta(entry);
    const allowed = allowedActions(entry);
    this.root.querySelector("#panel-send-signal").disabled = !entry.pid;
    for (const button of this.actionButtons) {
      const verb = button.dataset.panelAction;
      button.disabled = Boolean(this.busyVerb) || !allowed[verb];
      button.setAttribute("aria-busy", String(this.busyVerb === verb));
    }
    if (this.tab === "details") this._renderDetails();
    if (this.tab === "runs") this.runs.setEntry(entry);
  }

  tick() {
    const entry = this.id && this.store.get(this.id);
    if (entry && entry.status === "running") this._renderMeta(entry);
  }

  _renderMeta(entry) {
    const parts = [entry.status];
    if (entry.pid) parts.push(`pid ${entry.pid}`);
    const uptime = liveUptime(entry);
    if (uptime !== null) parts.push(`up ${formatUptime(uptime)}`);
    parts.push(plural(entry.restartCount ?? 0, "restart"));
    const text = parts.join(" · ");
    if (this.meta.textContent !== text) this.meta.textContent = text;
  }

  _renderDetails() {
    const entry = this.id && this.store.get(this.id);
    if (!entry) return;
    // Keep the reader's scroll position: the details are rebuilt on every status change.
    const top = this.details.scrollTop;
    renderDetails(this.details, entry);
    this.details.scrollTop = top;
  }

  _follow(id) {
    const setState = (text) => {
      this.logState.hidden = !text;
      this.logState.textContent = text;
    };
    const live = this.handlers.live();
    if (!live) return;
    this.follow = live.followLogs(id, {
      onLines: (lines) => this.logs.add(lines),
      onPartial: (line) => this.logs.partial(line),
      onMarker: (text) => this.logs.marker(text),
      onState: setState,
    });
  }
}
