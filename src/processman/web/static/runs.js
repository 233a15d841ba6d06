// The Runs tab: a process's run history, newest first (every start to its exit; a job's scheduled, caught
// up and manual runs), kept up to date by the `run` events of the live connection. A job shows when it
// runs next, and a job or task can be run once now. DOM nodes and textContent only.

import { formatAgo, formatDateTime, formatIn } from "./format.js";

const LIMIT = 50;
const OUTCOMES = ["succeeded", "failed", "timed out", "skipped", "stopped"];

function el(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") element.className = value;
    else element.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) element.append(child);
  }
  return element;
}

/** A job or a one-shot task: it has single runs to start (a service kept alive has not). */
export function isRunnable(entry) {
  const config = entry?.config ?? {};
  return config.schedule != null || (config.restart ?? "always") !== "always";
}

function exitText(run) {
  if (run.signal) return run.signal;
  return run.exitCode === null || run.exitCode === undefined ? "–" : `code ${run.exitCode}`;
}

export class RunsView {
  /** root: the tab panel. handlers: load(id) -> runs, runNow(id). */
  constructor(root, handlers) {
    this.root = root;
    this.handlers = handlers;
    this.id = null;
    this.runs = [];
    this.loading = null;
    this.next = el("p", { class: "next-run", id: "next-run" });
    this.runButton = el("button", { type: "button", class: "small", id: "run-now" }, "Run now");
    this.runButton.addEventListener("click", () => this.id && this.handlers.runNow(this.id));
    this.state = el("p", { class: "muted runs-state", role: "status" });
    this.body = el("tbody");
    const head = el(
      "tr",
      {},
      ...["Run", "Trigger", "Started", "Duration", "Outcome", "Exit", "Reason"].map((title) => el("th", { scope: "col" }, title)),
    );
    this.table = el("table", { class: "runs" }, el("thead", {}, head), this.body);
    root.replaceChildren(el("div", { class: "runs-tools" }, this.next, this.runButton), this.state, this.table);
  }

  /** Show a process's runs: read them once, then follow the live events. */
  async show(id) {
    if (this.id !== id) {
      this.id = id;
      this.runs = [];
      this.render();
    }
    const asked = (this.loading = Symbol(id));
    this.state.textContent = "Loading the runs…";
    this.state.hidden = false;
    try {
      const runs = await this.handlers.load(id);
      if (this.loading !== asked || this.id !== id) return;
      // Runs that came as events while the list loaded are kept.
      const known = new Map(runs.map((run) => [run.number, run]));
      for (const run of this.runs) {
        if (!known.has(run.number) || (run.outcome && !known.get(run.number).outcome)) known.set(run.number, run);
      }
      this.runs = [...known.values()].sort((a, b) => b.number - a.number).slice(0, LIMIT);
      this.state.hidden = true;
      this.render();
    } catch (error) {
      if (this.loading === asked) this.state.textContent = `Could not load the runs (${error.message}).`;
    }
  }

  /** A `run` event: a run began, ended or was skipped. */
  add(run) {
    if (!this.id || run.id !== this.id) return;
    const index = this.runs.findIndex((known) => known.number === run.number);
    if (index >= 0) this.runs[index] = run;
    else this.runs.unshift(run);
    this.runs.sort((a, b) => b.number - a.number);
    this.runs.length = Math.min(this.runs.length, LIMIT);
    this.render();
  }

  clear() {
    this.id = null;
    this.runs = [];
    this.loading = null;
  }

  /** The job's next run and the Run now button, from the process's state. */
  setEntry(entry) {
    const runnable = isRunnable(entry);
    this.runButton.hidden = !runnable;
    const nextRun = entry?.nextRun;
    this.next.hidden = !entry?.config?.schedule;
    this.next.textContent = nextRun
      ? `Next run: ${formatDateTime(nextRun)} (${formatIn(nextRun)})`
      : "Next run: – (the job is not scheduled; start it to arm it)";
  }

  render() {
    const rows = this.runs.map((run) => {
      const outcome = run.outcome ?? "running";
      const reason = el("td", {}, run.reason ?? "");
      if (run.lastLines?.length) reason.append(el("pre", { class: "last-lines mono" }, run.lastLines.join("\n")));
      const row = el(
        "tr",
        { "data-outcome": OUTCOMES.includes(outcome) ? outcome : "running", "data-number": String(run.number) },
        el("td", { class: "mono" }, String(run.number)),
        el("td", {}, run.trigger ?? "–"),
        el("td", { title: formatAgo(run.started) }, formatDateTime(run.started)),
        el("td", { class: "mono" }, run.duration ?? "–"),
        el("td", { class: "outcome" }, outcome),
        el("td", { class: "mono" }, exitText(run)),
        reason,
      );
      return row;
    });
    this.body.replaceChildren(...rows);
    this.table.hidden = rows.length === 0;
    if (rows.length === 0 && this.state.hidden) {
      this.state.textContent = "No runs yet.";
      this.state.hidden = false;
    } else if (rows.length) {
      this.state.hidden = true;
    }
  }
}
