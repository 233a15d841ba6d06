// The details tab: the resolved config, the environment (secrets arrive masked from the server), the
// current run and the recent exits. Built with DOM nodes and textContent only: nothing from the server
// is ever parsed as HTML.

import {
  commandLine,
  formatAgo,
  formatBytes,
  formatDateTime,
  formatIn,
  formatMemory,
  formatPercent,
  formatUptime,
} from "./format.js";
import { liveUptime } from "./store.js";

function el(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) element.append(child);
  }
  return element;
}

function section(title, ...content) {
  return el("section", { class: "detail-section" }, el("h3", {}, title), ...content);
}

function pairs(rows) {
  const list = el("dl", { class: "pairs" });
  for (const [label, value, options = {}] of rows) {
    const dd = el("dd", options.mono ? { class: "mono" } : {});
    if (value instanceof Node) dd.append(value);
    else dd.textContent = value === undefined || value === null || value === "" ? "–" : String(value);
    list.append(el("dt", {}, label), dd);
  }
  return list;
}

function chips(values) {
  if (!values || values.length === 0) return "–";
  return el("span", { class: "chips" }, ...values.map((value) => el("code", { class: "chip" }, String(value))));
}

function isMasked(value) {
  return typeof value === "string" && /^\*{3,}$/.test(value);
}

function envTable(env) {
  const names = Object.keys(env ?? {}).sort();
  if (names.length === 0) return el("p", { class: "muted" }, "No extra variables: the process inherits the manager's environment.");
  const table = el("table", { class: "env" });
  const body = el("tbody");
  for (const name of names) {
    const value = env[name];
    const cell = isMasked(value)
      ? el("td", { class: "masked", title: "Hidden: the name looks like a secret" }, "•••••• hidden")
      : el("td", { class: "mono" }, String(value));
    body.append(el("tr", {}, el("th", { scope: "row", class: "mono" }, name), cell));
  }
  table.append(body);
  return table;
}

function describeExit(exit) {
  if (exit.signal) return `signal ${exit.signal}`;
  if (exit.exitCode !== null && exit.exitCode !== undefined) return `code ${exit.exitCode}`;
  return "–";
}

// The last lines the run wrote before it exited, under its reason.
function lastLines(lines) {
  if (!lines || lines.length === 0) return null;
  return el("pre", { class: "last-lines mono" }, lines.join("\n"));
}

function exitsTable(exits) {
  if (!exits || exits.length === 0) return el("p", { class: "muted" }, "No exits since the manager started.");
  const head = el("tr", {}, ...["When", "Exit", "Ran for", "Reason"].map((title) => el("th", { scope: "col" }, title)));
  const body = el("tbody");
  for (const exit of [...exits].reverse()) {
    const failed = exit.signal || exit.exitCode;
    body.append(
      el(
        "tr",
        {},
        el("td", { title: formatDateTime(exit.time) }, formatAgo(exit.time)),
        el("td", { class: failed ? "exit bad mono" : "exit mono" }, describeExit(exit)),
        el("td", { class: "mono" }, exit.uptime ?? "–"),
        el("td", {}, exit.reason ?? "", lastLines(exit.lastLines)),
      ),
    );
  }
  return el("table", { class: "exits" }, el("thead", {}, head), body);
}

function interpreterText(config) {
  // A command runs directly; "auto" only means something for a script.
  if (config.command !== undefined && (!config.interpreter || config.interpreter === "auto")) {
    return "none (the command runs directly)";
  }
  return config.interpreter || "–";
}

// The virtualenv the process runs in; without one, where processman looked for .venv and venv.
function virtualenvText(entry) {
  if (entry.virtualenv) return entry.virtualenv;
  const looked = entry.virtualenvLookedIn ?? [];
  return looked.length ? `none (looked for .venv and venv in ${looked.join(", ")})` : "–";
}

// Whether the process's output reaches its log files (a full disk stops that); the server keeps running it.
function logFiles(entry) {
  if (!entry.logError) return "written";
  return el("span", { class: "log-error", role: "alert" }, entry.logError);
}

function droppedOutput(entry) {
  const bytes = entry.logDroppedBytes ?? 0;
  return bytes > 0 ? `${formatBytes(bytes)} not written to the log files` : "none";
}

export function renderDetails(container, entry) {
  const config = entry.config ?? {};
  const uptime = liveUptime(entry);
  const run = pairs([
    ["Status", entry.status],
    ["Desired", entry.desired],
    ["PID", entry.pid || "–", { mono: true }],
    ["Started", entry.startTime ? `${formatDateTime(entry.startTime)} (${formatAgo(entry.startTime)})` : "–"],
    ["Uptime", uptime === null ? "–" : formatUptime(uptime)],
    ["Restarts", entry.restartCount ?? 0],
    ["CPU", formatPercent(entry.cpu)],
    ["Memory", formatMemory(entry.memory)],
    ["Last error", entry.lastError || "–"],
    ...(entry.statusText ? [["Status text", entry.statusText]] : []),
    ...(config.schedule != null
      ? [["Next run", entry.nextRun ? `${formatDateTime(entry.nextRun)} (${formatIn(entry.nextRun)})` : "– (not scheduled)"]]
      : []),
    ...(entry.mainPid && entry.mainPid !== entry.pid ? [["Main PID", entry.mainPid, { mono: true }]] : []),
    ["Log files", logFiles(entry)],
    ["Dropped output", droppedOutput(entry)],
  ]);
  const kind = config.script !== undefined ? "Script" : "Command";
  const maxRetries = config.maxRetries === -1 ? "-1 (never give up)" : config.maxRetries;
  const configList = pairs([
    [kind, config.script ?? config.command, { mono: true }],
    ["Group", config.group ?? "–"],
    ["Command line", commandLine(config, { withInterpreter: true }), { mono: true }],
    ["Interpreter", interpreterText(config), { mono: true }],
    ["Virtualenv", virtualenvText(entry), { mono: true }],
    ["Working dir", config.cwd, { mono: true }],
    ["Arguments", chips(config.args)],
    ["Backoff", config.backoff, { mono: true }],
    ["Max retries", maxRetries],
    ...(config.schedule != null ? [["Schedule", typeof config.schedule === "string" ? config.schedule : JSON.stringify(config.schedule), { mono: true }]] : []),
    ["Stop timeout", config.stopTimeout, { mono: true }],
    ["Min uptime", config.minUptime, { mono: true }],
    ["Dev mode", config.devMode ? "on: restarts on file changes" : "off"],
    ["Watch paths", config.devMode ? chips(config.watchPaths) : "–"],
  ]);
  container.replaceChildren(
    section("Current run", run),
    section("Configuration", configList),
    section("Environment", envTable(config.env)),
    ...(config.envFile?.length ? [section(`From ${config.envFile.join(", ")} (at the last start)`, envTable(entry.envFromFiles))] : []),
    section("Recent exits", exitsTable(entry.recentExits)),
  );
}
