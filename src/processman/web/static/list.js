// The process list: one row per process, built once and then patched cell by cell, so hundreds of
// processes and a steady stream of status events stay cheap. Filtering hides rows instead of rebuilding.

import { commandLine, formatMemory, formatNextRun, formatPercent, formatUptime } from "./format.js";
import { liveUptime } from "./store.js";

const ACTIONS = ["start", "stop", "restart"];

/** Which buttons make sense in a status: start a stopped one, stop a live one, restart any. */
export function allowedActions(entry) {
  const status = entry.status;
  return {
    start: ["stopped", "crashed", "failed", "completed"].includes(status),
    stop: !["stopped", "stopping", "completed"].includes(status),
    restart: status !== "stopping",
  };
}

export class ProcessList {
  /**
   * container: the element that holds the rows. template: a <template> with one row.
   * handlers: onAction(id, verb), onOpen(id), onSelectionChange().
   */
  constructor(container, template, store, handlers) {
    this.container = container;
    this.template = template;
    this.store = store;
    this.handlers = handlers;
    this.rows = new Map();
    this.selected = new Set();
    this.busy = new Map();
    this.filter = { status: "all", query: "", group: "all" };
    this.activeId = null;
    container.addEventListener("click", (event) => this._onClick(event));
    container.addEventListener("change", (event) => this._onChange(event));
  }

  /** Bring the rows in line with the store: rebuild order when the set changed, else patch rows. */
  sync({ changed, structural }) {
    if (structural) {
      const fragment = document.createDocumentFragment();
      const seen = new Set();
      for (const id of this.store.order) {
        seen.add(id);
        let row = this.rows.get(id);
        if (!row) {
          row = this._build(id);
          this.rows.set(id, row);
          changed.add(id);
        }
        fragment.append(row.element);
      }
      for (const [id, row] of this.rows) {
        if (!seen.has(id)) {
          row.element.remove();
          this.rows.delete(id);
          this.selected.delete(id);
        }
      }
      this.container.append(fragment);
    }
    for (const id of changed) {
      const row = this.rows.get(id);
      const entry = this.store.get(id);
      if (row && entry) this._patch(row, entry);
    }
    this._showUsageColumns();
    this.applyFilter();
  }

  // CPU and memory columns appear once the server reports either for any process.
  _showUsageColumns() {
    if (this.hasUsage) return;
    this.hasUsage = this.store.all().some((entry) => entry.cpu != null || entry.memory != null);
    this.container.closest(".list")?.toggleAttribute("data-usage", this.hasUsage);
  }

  _build(id) {
    const element = this.template.content.firstElementChild.cloneNode(true);
    element.dataset.id = id;
    const q = (selector) => element.querySelector(selector);
    const row = {
      element,
      checkbox: q(".select"),
      dot: q(".dot"),
      statusText: q(".status-text"),
      name: q(".name"),
      command: q(".command"),
      pid: q(".c-pid .value"),
      uptime: q(".c-uptime .value"),
      restarts: q(".c-restarts .value"),
      cpu: q(".c-cpu .value"),
      memory: q(".c-mem .value"),
      error: q(".c-error"),
      buttons: Object.fromEntries(ACTIONS.map((verb) => [verb, q(`[data-action="${verb}"]`)])),
      shown: {},
    };
    row.name.textContent = id;
    if (id === this.activeId) element.setAttribute("data-active", "");
    row.checkbox.setAttribute("aria-label", `Select ${id}`);
    for (const verb of ACTIONS) row.buttons[verb].setAttribute("aria-label", `${capitalise(verb)} ${id}`);
    return row;
  }

  // Only touch the DOM for values that differ from what the row shows.
  _set(row, key, value, apply) {
    if (row.shown[key] === value) return;
    row.shown[key] = value;
    apply(value);
  }

  _patch(row, entry) {
    const status = entry.status;
    this._set(row, "status", status, (value) => {
      row.element.dataset.status = value;
      row.statusText.textContent = value;
    });
    this._set(row, "command", commandLine(entry.config), (value) => {
      row.command.textContent = value;
      row.command.title = value;
    });
    this._set(row, "pid", entry.pid ? String(entry.pid) : "–", (value) => {
      row.pid.textContent = value;
    });
    this._set(row, "restarts", String(entry.restartCount ?? 0), (value) => {
      row.restarts.textContent = value;
    });
    this._set(row, "cpu", formatPercent(entry.cpu), (value) => {
      row.cpu.textContent = value;
    });
    this._set(row, "memory", formatMemory(entry.memory), (value) => {
      row.memory.textContent = value;
    });
    // The last error, or else what the process says it is doing (sd_notify STATUS=) or when a job runs
    // next, muted.
    const quiet = entry.statusText || formatNextRun(entry.nextRun);
    this._set(row, "error", entry.lastError || (quiet ? `\u0000${quiet}` : ""), (value) => {
      const text = value.startsWith("\u0000") ? value.slice(1) : value;
      row.error.textContent = text;
      row.error.title = text;
      row.error.classList.toggle("status-text", text !== value);
    });
    this._updateUptime(row, entry);
    this._updateButtons(row, entry);
  }

  _updateUptime(row, entry, now) {
    const seconds = liveUptime(entry, now);
    this._set(row, "uptime", seconds === null ? "–" : formatUptime(seconds), (value) => {
      row.uptime.textContent = value;
    });
  }

  _updateButtons(row, entry) {
    const allowed = allowedActions(entry);
    const busyVerb = this.busy.get(entry.id) ?? "";
    const key = `${busyVerb}|${allowed.start}|${allowed.stop}|${allowed.restart}`;
    this._set(row, "buttons", key, () => {
      row.element.toggleAttribute("data-busy", Boolean(busyVerb));
      for (const verb of ACTIONS) {
        const button = row.buttons[verb];
        button.disabled = Boolean(busyVerb) || !allowed[verb];
        button.setAttribute("aria-busy", String(busyVerb === verb));
      }
    });
  }

  /** Re-draw the uptime of running rows (called once a second). */
  tick() {
    const now = performance.now();
    for (const [id, row] of this.rows) {
      const entry = this.store.get(id);
      if (entry && entry.status === "running" && !row.element.hidden) this._updateUptime(row, entry, now);
    }
  }

  setBusy(id, verb) {
    if (verb) this.busy.set(id, verb);
    else this.busy.delete(id);
    const row = this.rows.get(id);
    const entry = this.store.get(id);
    if (row && entry) this._updateButtons(row, entry);
  }

  /** Show a short outcome on a row ("restarted", "failed: ...") that fades on its own. */
  flash(id, kind) {
    const row = this.rows.get(id);
    if (!row) return;
    row.element.dataset.flash = kind;
    clearTimeout(row.flashTimer);
    row.flashTimer = setTimeout(() => delete row.element.dataset.flash, 1500);
  }

  setFilter(filter) {
    Object.assign(this.filter, filter);
    this.applyFilter();
  }

  matches(entry) {
    const { status, query, group } = this.filter;
    if (status !== "all" && entry.status !== status) return false;
    if (group !== "all" && entry.config?.group !== group) return false;
    return !query || entry.id.toLowerCase().includes(query.toLowerCase());
  }

  applyFilter() {
    let visible = 0;
    for (const [id, row] of this.rows) {
      const entry = this.store.get(id);
      const show = Boolean(entry) && this.matches(entry);
      if (row.element.hidden === show) row.element.hidden = !show;
      if (show) visible += 1;
    }
    this.visibleCount = visible;
    this.handlers.onFilterApplied?.(visible);
    this._syncCheckboxes();
  }

  visibleIds() {
    return this.store.order.filter((id) => !this.rows.get(id)?.element.hidden);
  }

  selectVisible(checked) {
    for (const id of this.visibleIds()) {
      if (checked) this.selected.add(id);
      else this.selected.delete(id);
    }
    this._syncCheckboxes();
    this.handlers.onSelectionChange?.();
  }

  clearSelection() {
    this.selected.clear();
    this._syncCheckboxes();
    this.handlers.onSelectionChange?.();
  }

  _syncCheckboxes() {
    for (const [id, row] of this.rows) {
      const checked = this.selected.has(id);
      if (row.checkbox.checked !== checked) row.checkbox.checked = checked;
      row.element.toggleAttribute("data-selected", checked);
    }
  }

  setActive(id) {
    if (this.activeId) this.rows.get(this.activeId)?.element.removeAttribute("data-active");
    this.activeId = id;
    if (id) this.rows.get(id)?.element.setAttribute("data-active", "");
  }

  _onClick(event) {
    const row = event.target.closest(".row");
    if (!row) return;
    const id = row.dataset.id;
    const button = event.target.closest("button[data-action]");
    if (button) {
      this.handlers.onAction(id, button.dataset.action);
      return;
    }
    if (event.target.closest(".name")) {
      this.handlers.onOpen(id);
      return;
    }
    // A click on the row's free space opens it too, but not on the checkbox or a text selection.
    if (!event.target.closest("input, label, a, button") && !getSelection().toString()) this.handlers.onOpen(id);
  }

  _onChange(event) {
    if (!event.target.classList.contains("select")) return;
    const id = event.target.closest(".row").dataset.id;
    if (event.target.checked) this.selected.add(id);
    else this.selected.delete(id);
    event.target.closest(".row").toggleAttribute("data-selected", event.target.checked);
    this.handlers.onSelectionChange?.();
  }
}

function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
