// Small pure formatting helpers shared by the views.

const UNIT_SECONDS = { ms: 0.001, s: 1, m: 60, h: 3600 };

/** Seconds in a Go-style duration string ("2h30m15s", "500ms"); NaN when it is not one. */
export function parseDuration(text) {
  if (typeof text === "number") return text;
  if (typeof text !== "string" || text === "") return NaN;
  const parts = text.match(/(\d+(?:\.\d+)?)(ms|s|m|h)/g);
  if (!parts || parts.join("") !== text) return NaN;
  let total = 0;
  for (const part of parts) {
    const [, value, unit] = part.match(/(\d+(?:\.\d+)?)(ms|s|m|h)/);
    total += Number(value) * UNIT_SECONDS[unit];
  }
  return total;
}

/** A compact uptime: "45s", "5m 12s", "2h 30m", "3d 4h". */
export function formatUptime(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.floor(seconds);
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const secs = s % 60;
  if (days) return `${days}d ${hours}h`;
  if (hours) return `${hours}h ${minutes}m`;
  if (minutes) return `${minutes}m ${secs}s`;
  return `${secs}s`;
}

const BYTE_UNITS = ["B", "KB", "MB", "GB", "TB"];

export function formatBytes(bytes) {
  if (typeof bytes !== "number" || !Number.isFinite(bytes) || bytes < 0) return "–";
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

export function formatPercent(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return `${value >= 10 ? Math.round(value) : value.toFixed(1)}%`;
}

/** Memory may come as bytes (a number) or as an object {rss}: show what we can. */
export function formatMemory(value) {
  if (value && typeof value === "object") return formatBytes(value.rss ?? value.bytes);
  return formatBytes(value);
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** Local wall-clock time with milliseconds, for log lines. */
export function formatClock(date) {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) return "";
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** A local date and time: "2026-01-30 10:00:00". */
export function formatDateTime(value) {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return "–";
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

/** "just now", "5m ago", "3h ago", "2d ago". */
export function formatAgo(value, now = Date.now()) {
  const time = value instanceof Date ? value.getTime() : new Date(value).getTime();
  if (Number.isNaN(time)) return "";
  const seconds = Math.max(0, (now - time) / 1000);
  if (seconds < 5) return "just now";
  return `${formatUptime(seconds).split(" ")[0]} ago`;
}

/** The command line a process runs, as one readable string; with `withInterpreter`, a script is
 * shown after the interpreter that runs it. */
export function commandLine(config, { withInterpreter = false } = {}) {
  if (!config) return "";
  const head = config.script ?? config.command ?? "";
  const args = Array.isArray(config.args) ? config.args : [];
  const parts = [head, ...args];
  if (withInterpreter && config.script !== undefined && config.interpreter && config.interpreter !== "auto") {
    parts.unshift(config.interpreter);
  }
  return parts.map(quoteArg).join(" ");
}

function quoteArg(arg) {
  const text = String(arg);
  return text === "" || /[\s"'\\]/.test(text) ? JSON.stringify(text) : text;
}

export function plural(count, word, many = `${word}s`) {
  return `${count.toLocaleString()} ${count === 1 ? word : many}`;
}

/** When a job runs next, for the list: "next run 14:03:05" today, else with its date. */
export function formatNextRun(value, now = new Date()) {
  const date = new Date(value);
  if (!value || Number.isNaN(date.getTime())) return "";
  const sameDay = date.toDateString() === now.toDateString();
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return `next run ${sameDay ? time : formatDateTime(date)}`;
}

/** "in 4m", "in 2h 30m" (or "now" once due). */
export function formatIn(value, now = Date.now()) {
  const time = new Date(value).getTime();
  if (Number.isNaN(time)) return "";
  const seconds = (time - now) / 1000;
  return seconds < 1 ? "now" : `in ${formatUptime(seconds)}`;
}
