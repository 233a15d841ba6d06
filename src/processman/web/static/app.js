// The dashboard: signs the user in, keeps one live stream of process states open, and wires the views.

import { Api, ApiError, Session, authInfo, pocketbaseDashboardSession, pocketbaseLogin } from "./api.js";
import { plural } from "./format.js";
import { ProcessList } from "./list.js";
import { DirectLive, PocketBaseLive } from "./live.js";
import { Panel } from "./panel.js";
import { ProcessStore, healthOf } from "./store.js";
import { followTheme, initTheme } from "./theme.js";

const $ = (selector) => document.querySelector(selector);
const BATCH_CONCURRENCY = 6;
const PAST = { start: "started", stop: "stopped", restart: "restarted" };
const ING = { start: "Starting", stop: "Stopping", restart: "Restarting" };

const session = new Session();
const api = new Api(session);
const store = new ProcessStore();
// Served through PocketBase's hooks (at /pm/): sign in as a PocketBase superuser, live data over realtime.
const hosted = location.pathname.startsWith("/pm/");
let mode = hosted ? "pocketbase" : "token";
// Framed as the "Processes" page of PocketBase's dashboard: that dashboard's session, theme and chrome.
const embedded = hosted && new URLSearchParams(location.search).has("embedded");
// Set when the user signs out here: do not sign straight back in with PocketBase's session.
const NO_SHARED_SESSION = "processman.noSharedSession";
let live = null;
let wasDown = false;

// ---- small UI services ---------------------------------------------------------------------------

function toast(message, kind = "info") {
  const item = document.createElement("div");
  item.className = `toast ${kind}`;
  item.setAttribute("role", kind === "error" ? "alert" : "status");
  item.textContent = message;
  $("#toasts").append(item);
  setTimeout(() => item.classList.add("leaving"), kind === "error" ? 6000 : 3000);
  setTimeout(() => item.remove(), kind === "error" ? 6400 : 3400);
}

function showView(name) {
  document.body.dataset.view = name;
  $("#login-view").hidden = name !== "login";
  $("#dashboard-view").hidden = name !== "dashboard";
  $("#sign-out").hidden = name !== "dashboard";
  $("#user").hidden = name !== "dashboard" || !session.user;
  $("#user").textContent = session.user;
}

const banner = {
  timer: 0,
  show(text, until) {
    $("#banner").hidden = false;
    document.body.toggleAttribute("data-offline", true);
    clearInterval(this.timer);
    const render = () => {
      const seconds = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      $(".banner-text").textContent = seconds > 0 ? `${text} Retrying in ${seconds} s…` : `${text} Retrying…`;
    };
    render();
    this.timer = setInterval(render, 250);
  },
  hide() {
    clearInterval(this.timer);
    $("#banner").hidden = true;
    document.body.toggleAttribute("data-offline", false);
  },
};

function setLive(state, text) {
  $("#live").dataset.state = state;
  $(".live-text").textContent = text;
}

// ---- overview, title and favicon -----------------------------------------------------------------

const HEALTH_TEXT = { ok: "All good", crashed: "Crashing", failed: "Failed", none: "No processes" };
const HEALTH_COLOUR = { ok: "#22c55e", crashed: "#f59e0b", failed: "#ef4444", none: "#9ca3af" };

function renderOverview() {
  const counts = store.counts();
  for (const element of document.querySelectorAll("[data-count]")) {
    const value = String(counts[element.dataset.count] ?? 0);
    if (element.textContent !== value) element.textContent = value;
  }
  const health = healthOf(counts);
  const pill = $("#health");
  if (pill.dataset.health !== health) {
    pill.dataset.health = health;
    $(".health-text").textContent = HEALTH_TEXT[health];
    setFavicon(HEALTH_COLOUR[health]);
  }
  const problems = counts.failed + counts.crashed;
  const title = problems ? `(${problems}) processman` : "processman";
  if (document.title !== title) document.title = title;
}

function setFavicon(colour) {
  const svg =
    `<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'><rect width='32' height='32' rx='7' fill='#111827'/>` +
    `<path d='M4 17h6l3-8 5 15 3-7h7' fill='none' stroke='${colour}' stroke-width='3' stroke-linecap='round' stroke-linejoin='round'/></svg>`;
  $("#favicon").href = `data:image/svg+xml,${encodeURIComponent(svg)}`;
}

// ---- the list ------------------------------------------------------------------------------------

const list = new ProcessList($("#rows"), $("#row-template"), store, {
  onAction: (id, verb) => runAction(id, verb),
  onOpen: (id) => openProcess(id),
  onSelectionChange: () => renderSelection(),
  onFilterApplied: (visible) => renderEmptyState(visible),
});

const panel = new Panel($("#panel"), store, {
  onAction: (id, verb) => runAction(id, verb),
  onSignal: (id, name, tree) => sendSignal(id, name, tree),
  onClose: () => closeProcess(),
  live: () => live,
  loadRuns: (id) => api.runs(id),
  onRunNow: (id) => runNow(id),
});

// A burst of status events (a batch restart of 500 processes) is drawn once per frame.
let pendingView = null;
store.subscribe(({ changed, structural }) => {
  if (!pendingView) {
    pendingView = { changed: new Set(), structural: false };
    requestAnimationFrame(renderView);
  }
  for (const id of changed) pendingView.changed.add(id);
  pendingView.structural ||= structural;
});

function renderView() {
  const change = pendingView;
  pendingView = null;
  syncGroups();
  list.sync(change);
  renderOverview();
  renderSelection();
  if (panel.open && (change.changed.has(panel.id) || change.structural)) panel.refresh();
}

// The group filter lists the groups the config names, and shows only when there is one.
function syncGroups() {
  const groups = [...new Set(store.all().map((entry) => entry.config?.group).filter(Boolean))].sort();
  const select = $("#group-filter");
  const shown = [...select.options].slice(1).map((option) => option.value);
  if (shown.join("\n") !== groups.join("\n")) {
    select.replaceChildren(select.options[0], ...groups.map((name) => new Option(name, name)));
  }
  $("#group-filter-field").hidden = groups.length === 0;
  const current = list.filter.group;
  if (current !== "all" && !groups.includes(current)) list.filter.group = "all";
  select.value = list.filter.group;
}

function renderEmptyState(visible) {
  const total = store.order.length;
  const empty = $("#empty");
  empty.hidden = visible > 0 || !store.loaded;
  $("#layout").toggleAttribute("data-empty", !empty.hidden);
  const { status, query, group } = list.filter;
  if (total === 0) {
    $("#empty-title").textContent = "No processes configured";
    $("#empty-text").textContent =
      "Add processes to pb_processes.json (see `processman check`) and they will appear here.";
    $("#clear-filters").hidden = true;
  } else {
    const parts = [];
    if (query) parts.push(`an id containing “${query}”`);
    if (status !== "all") parts.push(`status ${status}`);
    if (group !== "all") parts.push(`group ${group}`);
    $("#empty-title").textContent = "No processes match";
    $("#empty-text").textContent = `None of the ${plural(total, "process", "processes")} has ${parts.join(" and ")}.`;
    $("#clear-filters").hidden = false;
  }
  $("#list-summary").textContent =
    visible === total ? `${plural(total, "process", "processes")}` : `Showing ${visible} of ${plural(total, "process", "processes")}`;
}

function setStatusFilter(status) {
  list.setFilter({ status });
  $("#status-filter").value = status;
  for (const button of document.querySelectorAll("#overview [data-filter]")) {
    button.setAttribute("aria-pressed", String(button.dataset.filter === status));
  }
}

function renderSelection() {
  const count = [...list.selected].filter((id) => store.get(id)).length;
  $("#batch-count").textContent = count ? `${count} selected` : "None selected";
  for (const button of document.querySelectorAll("[data-batch]")) button.disabled = count === 0 || batchRunning;
  const visible = list.visibleIds();
  const selectedVisible = visible.filter((id) => list.selected.has(id)).length;
  const all = $("#select-all");
  all.checked = visible.length > 0 && selectedVisible === visible.length;
  all.indeterminate = selectedVisible > 0 && selectedVisible < visible.length;
}

// ---- actions -------------------------------------------------------------------------------------

// What each verb should lead to, judged from the state before it: the status events may arrive a
// moment after the HTTP answer (always so through PocketBase), so the outcome is read from the store.
const OUTCOME = {
  start: (entry, before) => entry !== before && !["stopped", "starting"].includes(entry.status),
  stop: (entry) => entry.status === "stopped",
  restart: (entry, before) =>
    entry.restartCount > (before?.restartCount ?? -1) && !["starting", "stopping"].includes(entry.status),
};

function waitForOutcome(id, verb, before, timeoutMs = 3000) {
  const settled = () => {
    const entry = store.get(id);
    return entry && OUTCOME[verb](entry, before) ? entry : null;
  };
  return new Promise((resolve) => {
    const now = settled();
    if (now) {
      resolve(now);
      return;
    }
    const timer = setTimeout(() => {
      unsubscribe();
      resolve(null);
    }, timeoutMs);
    const unsubscribe = store.subscribe(({ changed }) => {
      if (!changed.has(id)) return;
      const entry = settled();
      if (!entry) return;
      clearTimeout(timer);
      unsubscribe();
      resolve(entry);
    });
  });
}

function describeOutcome(id, verb, entry) {
  if (!entry) return [`${id}: ${verb} accepted; waiting for its new status`, "info"];
  if (entry.status === "running") {
    return [`${id} ${PAST[verb]}: running, pid ${entry.pid}`, "ok"];
  }
  if (entry.status === "stopped") return [`${id} stopped`, "ok"];
  const reason = entry.lastError ? `: ${entry.lastError}` : "";
  return [`${id} ${PAST[verb]} but is ${entry.status}${reason}`, "error"];
}

async function runAction(id, verb, { quiet = false } = {}) {
  if (document.body.hasAttribute("data-offline")) {
    const error = new ApiError(0, "not connected to the server");
    if (!quiet) toast(`Cannot ${verb} ${id}: not connected to the server.`, "error");
    return error;
  }
  const before = store.get(id);
  list.setBusy(id, verb);
  if (panel.id === id) panel.setBusy(verb);
  try {
    await api.action(id, verb);
    const entry = await waitForOutcome(id, verb, before);
    const [message, kind] = describeOutcome(id, verb, entry);
    list.flash(id, kind === "error" ? "error" : "ok");
    if (!quiet) toast(message, kind);
    return kind === "error" ? new Error(message) : null;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signOut(authMessage(error));
    list.flash(id, "error");
    if (!quiet) toast(`${ING[verb]} ${id} failed: ${error.message}`, "error");
    return error;
  } finally {
    list.setBusy(id, null);
    if (panel.id === id) panel.setBusy(null);
  }
}

/** One run now of a job or task: what became of it, in a toast (the Runs tab shows it live). */
async function runNow(id) {
  try {
    const run = await api.run(id);
    if (run.queued) toast(`${id}: run queued; it begins after the run in progress.`, "info");
    else if (run.outcome === "skipped") toast(`${id}: ${run.reason}`, "info");
    else if (run.outcome === "failed") toast(`Run ${run.number} of ${id} failed: ${run.reason}`, "error");
    else toast(`Run ${run.number} of ${id} started`, "ok");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signOut(authMessage(error));
    toast(`Running ${id} failed: ${error.message}`, "error");
  }
}

async function sendSignal(id, name, tree) {
  try {
    const answer = await api.signal(id, name, tree);
    toast(`${answer.signal} sent to ${id} (${answer.processes} process${answer.processes === 1 ? "" : "es"}).`, "ok");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signOut(authMessage(error));
    toast(`Sending ${name} to ${id} failed: ${error.message}`, "error");
  }
}

let batchRunning = false;

async function runBatch(verb) {
  const ids = store.order.filter((id) => list.selected.has(id));
  if (!ids.length) return;
  if (verb === "stop" && ids.length === store.order.length && ids.length > 1) {
    const ok = await confirmDialog(
      `Stop all ${ids.length} processes?`,
      "Every process will get SIGTERM (then SIGKILL after its stop timeout). They stay stopped until you start them again.",
      "Stop all",
    );
    if (!ok) return;
  }
  batchRunning = true;
  renderSelection();
  const progress = $("#batch-progress");
  const bar = progress.querySelector("progress");
  const text = progress.querySelector(".batch-progress-text");
  progress.hidden = false;
  bar.max = ids.length;
  let done = 0;
  const failures = [];
  const report = () => {
    bar.value = done;
    text.textContent = `${ING[verb]} ${done} of ${ids.length}…`;
  };
  report();
  const queue = [...ids];
  const worker = async () => {
    while (queue.length) {
      const id = queue.shift();
      const error = await runAction(id, verb, { quiet: true });
      if (error) failures.push(error.message.startsWith(id) ? error.message : `${id}: ${error.message}`);
      done += 1;
      report();
    }
  };
  await Promise.all(Array.from({ length: Math.min(BATCH_CONCURRENCY, ids.length) }, worker));
  progress.hidden = true;
  batchRunning = false;
  renderSelection();
  const ok = ids.length - failures.length;
  if (failures.length) {
    toast(`${PAST[verb]} ${ok} of ${ids.length}. Failed: ${failures.slice(0, 3).join("; ")}${failures.length > 3 ? " …" : ""}`, "error");
  } else {
    toast(`${capitalise(PAST[verb])} ${plural(ok, "process", "processes")}`, "ok");
  }
}

function confirmDialog(title, text, okLabel) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
  });
}

// ---- the panel and the URL -----------------------------------------------------------------------

let focusPanel = false;

function openProcess(id) {
  focusPanel = true;
  const hash = `#/process/${encodeURIComponent(id)}`;
  if (location.hash !== hash) location.hash = hash;
  else showPanelFromHash();
}

function closeProcess() {
  const previous = panel.id;
  if (location.hash) history.pushState(null, "", location.pathname + location.search);
  panel.close();
  list.setActive(null);
  $("#layout").removeAttribute("data-panel");
  // Give keyboard users their place back.
  if (previous) list.rows.get(previous)?.element.querySelector(".name")?.focus();
}

function showPanelFromHash() {
  const match = location.hash.match(/^#\/process\/(.+)$/);
  if (!match || document.body.dataset.view !== "dashboard") {
    if (panel.open) closeProcess();
    return;
  }
  const id = decodeURIComponent(match[1]);
  panel.show(id);
  list.setActive(id);
  $("#layout").setAttribute("data-panel", "");
  // Keyboard and screen reader users land in the panel they opened.
  if (focusPanel) $("#panel-title").focus({ preventScroll: true });
  focusPanel = false;
}

// ---- live state ----------------------------------------------------------------------------------

function connectLive() {
  live?.close();
  setLive("connecting", "connecting");
  const Source = hosted ? PocketBaseLive : DirectLive;
  live = new Source(session, api, {
    onUp: () => {
      banner.hide();
      setLive("live", "live");
      if (wasDown) toast("Connection restored", "ok");
      wasDown = false;
    },
    onSnapshot: (list) => {
      store.loaded = true;
      store.replace(list);
      panel.reloadRuns(); // runs may have gone by while the connection was down
    },
    onStatus: (state) => store.update(state),
    onRun: (run) => panel.addRun(run),
    onStatusPatch: (patch) => {
      const entry = store.get(patch.id);
      if (entry) {
        const { status, pid, restartCount, lastError } = patch;
        store.update({ ...entry, status, pid, restartCount, lastError });
      }
    },
    onDown: (error, delay) => {
      wasDown = true;
      setLive("down", "offline");
      banner.show("Connection lost.", Date.now() + delay);
    },
    onAuthError: (error) => signOut(authMessage(error)),
  });
  live.start();
}

// CPU and memory change without a status event: read them again while the dashboard is in view.
const USAGE_REFRESH_MS = 5000;
setInterval(async () => {
  if (!live || document.visibilityState !== "visible" || document.body.dataset.view !== "dashboard") return;
  try {
    store.refreshUsage(await api.list());
  } catch {
    // The live connection reports trouble itself.
  }
}, USAGE_REFRESH_MS);

// ---- sign in and out -----------------------------------------------------------------------------

function authMessage(error) {
  if (error.status === 403) {
    return mode === "pocketbase"
      ? "This account is not a PocketBase superuser. Only superusers can manage processes."
      : "This token is not allowed to manage processes.";
  }
  return hosted
    ? "Your session has ended. Sign in again."
    : "The server refused the token. Check PROCESSMAN_TOKEN and sign in again.";
}

function signOut(message = "") {
  // A refused token may just be an old copy: PocketBase's dashboard refreshes its own.
  if (message && adoptSharedSession()) {
    live?.close();
    live = null;
    boot();
    return;
  }
  if (!message) sessionStorage.setItem(NO_SHARED_SESSION, "1");
  live?.close();
  live = null;
  panel.close();
  banner.hide();
  session.clear();
  store.replace([]);
  store.loaded = false;
  list.clearSelection();
  setLive("idle", "offline");
  showLogin(message);
}

function showLogin(message = "") {
  const pocketbase = hosted;
  $("#field-token").hidden = pocketbase;
  $("#field-email").hidden = !pocketbase;
  $("#field-password").hidden = !pocketbase;
  $("#login-hint").textContent = pocketbase
    ? "Sign in with a PocketBase superuser account."
    : mode === "pocketbase"
      ? "Enter the admin token, or the token of a PocketBase superuser."
      : "Enter the admin token (the PROCESSMAN_TOKEN the server was started with).";
  setLoginError(message);
  showView("login");
  (pocketbase ? $("#email") : $("#token")).focus();
}

function setLoginError(message) {
  $("#login-error").hidden = !message;
  $("#login-error").textContent = message;
}

async function onLogin(event) {
  event.preventDefault();
  const submit = $("#login-submit");
  submit.disabled = true;
  submit.setAttribute("aria-busy", "true");
  setLoginError("");
  try {
    let credential;
    if (hosted) {
      const email = $("#email").value.trim();
      const password = $("#password").value;
      if (!email || !password) throw new ApiError(400, "Enter the email and password of a PocketBase superuser.");
      const auth = await pocketbaseLogin(email, password);
      credential = { token: auth.token, mode, user: auth.record?.email ?? email };
    } else {
      const token = $("#token").value.trim();
      if (!token) throw new ApiError(400, "Enter the admin token.");
      credential = { token, mode, user: "" };
    }
    session.save(credential, $("#remember").checked);
    sessionStorage.removeItem(NO_SHARED_SESSION);
    try {
      await enterDashboard();
    } catch (error) {
      throw error instanceof ApiError && error.isAuth ? new ApiError(error.status, authMessage(error)) : error;
    }
    $("#password").value = "";
    $("#token").value = "";
  } catch (error) {
    session.clear();
    setLoginError(error.message);
    showView("login");
  } finally {
    submit.disabled = false;
    submit.removeAttribute("aria-busy");
  }
}

/** Checks the credential with a first list, then shows the dashboard and goes live. */
async function enterDashboard() {
  const processes = await api.list();
  store.loaded = true;
  store.replace(processes);
  showView("dashboard");
  connectLive();
  showPanelFromHash();
  showContainment();
}

/** The containment in the top bar: "cgroup", or "tags" in amber (descendants can escape it). */
async function showContainment() {
  const pill = $("#containment");
  try {
    const health = await api.health();
    pill.textContent = `containment: ${health.containment}`;
    pill.title = health.containmentDetail;
    pill.dataset.containment = health.containment;
    pill.hidden = false;
  } catch {
    pill.hidden = true; // an older server: nothing to say
  }
}

// ---- start ---------------------------------------------------------------------------------------

/** Signs in with PocketBase's dashboard session when there is one (same origin, superuser). */
function adoptSharedSession() {
  if (!hosted || sessionStorage.getItem(NO_SHARED_SESSION)) return false;
  const shared = pocketbaseDashboardSession();
  if (!shared || shared.token === session.token) return false;
  session.save({ token: shared.token, mode: "pocketbase", user: shared.email }, false);
  return !session.expired;
}

async function boot() {
  // Through PocketBase the mode is known, and every /api/pm/ route wants a superuser already.
  if (!hosted) {
    try {
      mode = (await authInfo()).mode === "pocketbase" ? "pocketbase" : "token";
    } catch {
      banner.show("The server cannot be reached.", Date.now() + 3000);
      setTimeout(boot, 3000);
      return;
    }
  }
  banner.hide();
  document.body.dataset.mode = mode;
  if (!session.token || session.mode !== mode || session.expired) {
    session.clear();
    if (!adoptSharedSession()) {
      showLogin();
      return;
    }
  }
  try {
    await enterDashboard();
  } catch (error) {
    if (error instanceof ApiError && error.isAuth) {
      if (adoptSharedSession()) boot();
      else signOut(authMessage(error));
    } else {
      banner.show(`The server answered with an error (${error.message}).`, Date.now() + 3000);
      setTimeout(boot, 3000);
    }
  }
}

function wire() {
  if (embedded) {
    document.body.toggleAttribute("data-embedded", true);
    followTheme(() => window.parent.document.documentElement.dataset.colorScheme, window.parent.document.documentElement);
  } else {
    initTheme($("#theme-toggle"));
  }
  $("#login-form").addEventListener("submit", onLogin);
  // The skip link must not touch the URL's hash: that is where the open process lives.
  $(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    $("#rows").focus();
  });
  $("#sign-out").addEventListener("click", () => signOut());
  $("#retry-now").addEventListener("click", () => (live ? live.reconnectNow() : boot()));
  $("#search").addEventListener("input", (event) => list.setFilter({ query: event.target.value.trim() }));
  $("#status-filter").addEventListener("change", (event) => setStatusFilter(event.target.value));
  $("#group-filter").addEventListener("change", (event) => list.setFilter({ group: event.target.value }));
  for (const button of document.querySelectorAll("#overview [data-filter]")) {
    button.addEventListener("click", () => {
      const filter = button.dataset.filter;
      setStatusFilter(list.filter.status === filter ? "all" : filter);
    });
  }
  $("#clear-filters").addEventListener("click", () => {
    $("#search").value = "";
    list.setFilter({ query: "", group: "all" });
    $("#group-filter").value = "all";
    setStatusFilter("all");
    $("#search").focus();
  });
  $("#select-all").addEventListener("change", (event) => list.selectVisible(event.target.checked));
  for (const button of document.querySelectorAll("[data-batch]")) {
    button.addEventListener("click", () => runBatch(button.dataset.batch));
  }
  window.addEventListener("hashchange", showPanelFromHash);
  document.addEventListener("keydown", onKey);
  setInterval(() => {
    list.tick();
    panel.tick();
  }, 1000);
}

function onKey(event) {
  const typing = event.target.closest?.("input, textarea, select, [contenteditable]");
  if (event.key === "/" && !typing && document.body.dataset.view === "dashboard") {
    event.preventDefault();
    $("#search").focus();
    $("#search").select();
  } else if (event.key === "Escape" && !$("#confirm").open) {
    if (typing && event.target.value) return; // Esc in a search box clears it first (browser default)
    if (panel.open) closeProcess();
  } else if ((event.key === "ArrowDown" || event.key === "ArrowUp") && event.target.classList?.contains("name")) {
    event.preventDefault();
    const ids = list.visibleIds();
    const index = ids.indexOf(event.target.closest(".row").dataset.id);
    const next = ids[index + (event.key === "ArrowDown" ? 1 : -1)];
    if (next) list.rows.get(next).element.querySelector(".name").focus();
  }
}

function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

wire();
boot();
