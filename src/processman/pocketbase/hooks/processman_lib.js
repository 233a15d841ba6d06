// processman: the code behind processman.pb.js (processman "__VERSION__").
// Written by `processman pocketbase install`: run it again to upgrade, `processman pocketbase uninstall`
// to remove it. Edits are lost on the next install.
//
// PocketBase compiles every hook handler on its own, so handlers cannot see the variables of the file
// that declared them: each one loads this module with require() and keeps shared state in $app.store(),
// which lives on the Go side and is shared by every JS VM.

const PYTHON = "__PYTHON__" // the interpreter processman was installed in
const VERSION = "__VERSION__"

const KEY_SECRET = "processman.secret"
const KEY_CMD = "processman.cmd"
const KEY_STDIN = "processman.stdin"
const KEY_PORT = "processman.port"
const KEY_STATS = "processman.stats"
const KEY_FLUSHED = "processman.logsFlushed"
const FLUSH_EVERY_MS = 1000

// $http.send takes whole seconds. A restart waits for the process's stop ladder (stopTimeout, 10s by
// default), so leave room for that.
const FORWARD_TIMEOUT = 60

// Request headers a client may pass to the supervisor, and response headers passed back.
const REQUEST_HEADERS = ["Content-Type", "Accept", "If-None-Match", "If-Modified-Since", "Last-Event-ID"]
const RESPONSE_HEADERS = ["Cache-Control", "Etag", "Last-Modified", "Location", "Content-Disposition"]

function dataDir() {
  let dir = $app.dataDir()
  if (!$filepath.isAbs(dir)) dir = $filepath.join($os.getwd(), dir)
  return dir
}

function supervisorLog() {
  return $filepath.join(dataDir(), "processman", "supervisor.log")
}

function logger() {
  return $app.logger().with("pm", true)
}

// ---- lifecycle -----------------------------------------------------------------------------------

// Called from $app.onServe() after e.next(): the router is built and the listener is bound.
function startSupervisor(e) {
  const store = $app.store()
  if (store.has(KEY_CMD)) return
  const secret = $security.randomString(40)
  const cmd = $os.cmd(PYTHON, "-m", "processman", "pocketbase", "supervise")
  // cmd.env replaces the environment: start from PocketBase's own.
  cmd.env = cmd.environ().concat(["PB_HTTP=" + e.server.addr, "PB_DATA_DIR=" + dataDir(), "PM_SECRET=" + secret])
  // Its own process group keeps a terminal's Ctrl+C away from it (the hook stops it); the parent-death
  // signal and the stdin pipe (end of file when PocketBase dies, however it dies) stop it if PocketBase
  // is killed outright.
  cmd.sysProcAttr = { setpgid: true, pdeathsig: 15 }
  store.set(KEY_SECRET, secret) // before the start: the supervisor may register at once
  let stdin
  try {
    stdin = cmd.stdinPipe()
    cmd.start()
  } catch (err) {
    store.remove(KEY_SECRET)
    logger().error(
      "processman: cannot start the process manager; the sidecars are not running",
      "python", PYTHON, "error", String(err),
      "hint", "run `processman pocketbase install` again with the Python environment processman is installed in"
    )
    return
  }
  store.set(KEY_CMD, cmd)
  store.set(KEY_STDIN, stdin)
  logger().info("processman: process manager starting", "pid", cmd.process.pid, "version", VERSION,
    "log", supervisorLog())
}

// Called from onTerminate (also on a hooks-watch restart). Blocks until the supervisor has stopped every
// sidecar; the supervisor bounds that time itself, so PocketBase is never stuck here.
function stopSupervisor() {
  const store = $app.store()
  const cmd = store.get(KEY_CMD)
  if (!cmd) return
  const stdin = store.get(KEY_STDIN)
  store.remove(KEY_CMD)
  store.remove(KEY_STDIN)
  store.remove(KEY_PORT)
  store.remove(KEY_STATS)
  let asked = false
  try {
    stdin.write(toBytes("stop\n")) // "stop" then end of file: PocketBase is shutting down on purpose
    stdin.close()
    asked = true
  } catch (_) {}
  if (!asked) {
    try { $os.cmd("kill", "-TERM", String(cmd.process.pid)).run() } catch (_) {}
  }
  try { cmd.wait() } catch (_) {} // reaps it, so no zombie is left
}

// ---- supervisor -> PocketBase (shared secret) ----------------------------------------------------

function checkSecret(e) {
  const secret = $app.store().get(KEY_SECRET)
  if (!secret || !$security.equal(e.request.header.get("X-PM-Secret"), secret)) {
    throw new UnauthorizedError("Invalid X-PM-Secret.")
  }
}

function register(e) {
  checkSecret(e)
  const port = Number(e.requestInfo().body.port)
  if (!(port > 0 && port < 65536 && Math.floor(port) === port)) {
    throw new BadRequestError("port: expected a TCP port number.")
  }
  $app.store().set(KEY_PORT, port)
  logger().info("processman: process manager ready", "port", port)
  return e.noContent(204)
}

// Body: {"lines": [{"level": "info"|"warn"|"error", "message": "...", "attrs": {...}}], "stats": {...}}.
// Sidecar output carries attrs.process and attrs.stream; it also goes to superusers following that
// process on the realtime topic pm/logs/<id>. A line marked "partial" (the latest state of a progress
// bar, replaced by the next line of its stream) goes to the topic only: the log gets the finished line.
function ingest(e) {
  checkSecret(e)
  const body = JSON.parse(toString(e.request.body))
  keepStats(body)
  const lines = body.lines || []
  const log = logger()
  const followed = {}
  for (const line of lines) {
    const attrs = line.attrs || {}
    const message = String(line.message)
    if (!line.partial) {
      const args = []
      for (const name in attrs) args.push(name, attrs[name])
      if (line.level === "error") log.error(message, ...args)
      else if (line.level === "warn") log.warn(message, ...args)
      else log.info(message, ...args)
    }
    if (attrs.process && (attrs.stream === "stdout" || attrs.stream === "stderr")) {
      const entry = {
        timestamp: attrs.time, processId: attrs.process, stream: attrs.stream, content: message, level: line.level,
      }
      if (line.partial) entry.partial = true
      if (!followed[attrs.process]) followed[attrs.process] = []
      followed[attrs.process].push(entry)
    }
  }
  flushLogs(e)
  let sent = 0
  for (const id in followed) sent += sendToSuperusers("pm/logs/" + id, JSON.stringify(followed[id]))
  return e.json(200, { accepted: lines.length, sent: sent })
}

// PocketBase keeps log entries in memory and writes them 200 at a time, or 3 s after the last entry; every
// new entry pushes that back, so a sidecar printing a line a second would show nothing for minutes. Write
// what waits at most once a second (processman already bounds the rate of lines).
function flushLogs(e) {
  const store = $app.store()
  const now = Date.now()
  if (now - (store.get(KEY_FLUSHED) || 0) < FLUSH_EVERY_MS) return
  store.set(KEY_FLUSHED, now)
  try {
    $app.logger().handler().writeAll(e.request.context())
  } catch (err) {
    // Not a batching handler (a PocketBase that writes at once): nothing to flush.
  }
}

// Body: {"messages": [{"topic": "pm/events", "data": {...}}], "stats": {...}}.
function broadcast(e) {
  checkSecret(e)
  const body = JSON.parse(toString(e.request.body))
  keepStats(body)
  let sent = 0
  for (const message of body.messages || []) {
    const topic = String(message.topic)
    if (topic.indexOf("pm/") !== 0) throw new BadRequestError("topic: expected a name starting with pm/.")
    sent += sendToSuperusers(topic, JSON.stringify(message.data))
  }
  return e.json(200, { sent: sent })
}

// Body: {"to": "ops@example.com", "subject": "...", "text": "..."}: an email notification, sent with
// PocketBase's own mail settings (Settings > Mail: SMTP, sender name and address).
function notifyEmail(e) {
  checkSecret(e)
  const body = e.requestInfo().body
  const to = String(body.to || "")
  if (!to || to.indexOf("@") < 0) throw new BadRequestError("to: expected an email address.")
  const meta = $app.settings().meta
  const message = new MailerMessage({
    from: { address: meta.senderAddress, name: meta.senderName },
    to: [{ address: to }],
    subject: String(body.subject || "processman"),
    text: String(body.text || ""),
  })
  try {
    $app.newMailClient().send(message)
  } catch (err) {
    logger().error("processman: cannot send a notification email", "to", to, "error", String(err))
    return e.json(502, { status: 502, message: "The email could not be sent: " + String(err), data: {} })
  }
  return e.noContent(204)
}

// The bridge's counters (lines mirrored and not mirrored, events sent) come with every delivery.
function keepStats(body) {
  if (body.stats) $app.store().set(KEY_STATS, JSON.stringify(body.stats))
}

// GET /api/pm/bridge: is the process manager registered, and what reached PocketBase so far.
function bridge(e) {
  const store = $app.store()
  const stats = store.get(KEY_STATS)
  const port = store.get(KEY_PORT)
  return e.json(200, Object.assign({ registered: !!port, version: VERSION }, stats ? JSON.parse(stats) : {}))
}

// Anyone may subscribe to a custom topic: only superusers receive. A subscription may carry options
// ("pm/events?options=..."); the message goes out under the name the client subscribed with.
function sendToSuperusers(topic, data) {
  const clients = $app.subscriptionsBroker().clients()
  let sent = 0
  for (const clientId in clients) {
    const client = clients[clientId]
    const names = client.subscriptions(topic)
    for (const name in names) {
      if (name !== topic && name.indexOf(topic + "?") !== 0) continue
      const auth = client.get("auth")
      if (!auth || !auth.isSuperuser()) break
      client.send(new SubscriptionMessage({ name: name, data: data }))
      sent++
    }
  }
  return sent
}

// ---- clients -> PocketBase -> supervisor ---------------------------------------------------------

function starting(e) {
  return e.json(503, { status: 503, message: "The process manager is starting; try again in a moment.", data: {} })
}

// Forwards the request to the supervisor's ``path`` (already URL-encoded). With ``withSecret`` the
// supervisor's API trusts it: only call it that way from routes behind requireSuperuserAuth().
function forward(e, path, withSecret) {
  const store = $app.store()
  const port = store.get(KEY_PORT)
  if (!port) return starting(e)
  let url = "http://127.0.0.1:" + port + path
  if (e.request.url.rawQuery) url += "?" + e.request.url.rawQuery
  const headers = {}
  for (const name of REQUEST_HEADERS) {
    const value = e.request.header.get(name)
    if (value) headers[name] = value
  }
  if (withSecret) {
    headers["X-PM-Secret"] = store.get(KEY_SECRET)
    if (e.auth) headers["X-PM-User"] = e.auth.collection().name + ":" + e.auth.id
  }
  let res
  try {
    res = $http.send({
      method: e.request.method, url: url, headers: headers, timeout: FORWARD_TIMEOUT,
      body: toString(e.request.body),
    })
  } catch (err) {
    logger().error("processman: the process manager did not answer", "url", url, "error", String(err))
    return e.json(502, {
      status: 502,
      message: "The process manager is not reachable; see " + supervisorLog() + ".",
      data: {},
    })
  }
  for (const name of RESPONSE_HEADERS) {
    const values = res.headers[name]
    if (values && values.length) e.response.header().set(name, values[0])
  }
  const type = (res.headers["Content-Type"] || ["application/octet-stream"])[0]
  return e.blob(res.statusCode, type, res.body)
}

// $http.send returns only once the whole answer is in, so a stream would hang until the timeout: say
// where live data is instead.
function noStreams(e, topic) {
  return e.json(400, {
    status: 400,
    message: "Live streams cannot pass through PocketBase; subscribe to the realtime topic " + topic + " instead.",
    data: {},
  })
}

function streamAsked(e) {
  const follow = (e.request.url.query().get("follow") || "").toLowerCase()
  return follow !== "" && follow !== "0" && follow !== "false" && follow !== "no"
}

// The routes of the API, each with its process id re-encoded: pathValue() returns it decoded. The id
// may be "group:NAME": every process of the group.
function forwardProcess(e, action) {
  const id = e.request.pathValue("id")
  if (action === "logs" && streamAsked(e)) {
    return noStreams(e, id.indexOf("group:") === 0 ? "pm/logs/<id> of each of its processes" : "pm/logs/" + id)
  }
  return forward(e, "/api/pm/" + encodeURIComponent(id) + "/" + action, true)
}

// Every process's lines (or a group's, ?group=), interleaved.
function forwardAllLogs(e) {
  if (streamAsked(e)) return noStreams(e, "pm/logs/<id> of each process")
  return forward(e, "/api/pm/logs", true)
}

function events(e) {
  return noStreams(e, "pm/events")
}

// Any other /api/pm/ route the supervisor offers (health, metrics, ...), path kept as the client sent it.
function forwardApi(e) {
  return forward(e, e.request.url.escapedPath(), true)
}

// The dashboard's static files: no credentials needed and none sent, so this can never reach the API.
function forwardDashboard(e) {
  const path = e.request.url.escapedPath().substring("/pm".length) || "/"
  if (path.indexOf("/api/") === 0) throw new NotFoundError()
  return forward(e, path, false)
}

module.exports = {
  startSupervisor, stopSupervisor, register, ingest, broadcast, notifyEmail, bridge, events, forward, forwardProcess,
  forwardApi, forwardAllLogs, forwardDashboard,
}
