/// <reference path="__TYPES__" />
// processman (version "__VERSION__"): `pocketbase serve` runs the sidecar processes of
// pb_processes.json, and superusers control them at /api/pm/* and /pm/.
// Written by `processman pocketbase install`: run it again to upgrade, `processman pocketbase uninstall`
// to remove it. Edits are lost on the next install. The code lives in processman_lib.js.

// Only `serve` starts the process manager: top-level code, onBootstrap and onTerminate also run for
// every other command (`pocketbase superuser ...`, `pocketbase migrate ...`).
$app.onServe().bindFunc((e) => {
  e.next()
  require(`${__hooks}/processman_lib.js`).startSupervisor(e)
})

onTerminate((e) => {
  require(`${__hooks}/processman_lib.js`).stopSupervisor()
  e.next()
})

// The process manager talks back with the shared secret it was started with.
routerAdd("POST", "/api/pm/register", (e) => require(`${__hooks}/processman_lib.js`).register(e),
  $apis.skipSuccessActivityLog())
routerAdd("POST", "/api/pm/ingest", (e) => require(`${__hooks}/processman_lib.js`).ingest(e),
  $apis.skipSuccessActivityLog())
routerAdd("POST", "/api/pm/broadcast", (e) => require(`${__hooks}/processman_lib.js`).broadcast(e),
  $apis.skipSuccessActivityLog())
routerAdd("POST", "/api/pm/notify-email", (e) => require(`${__hooks}/processman_lib.js`).notifyEmail(e),
  $apis.skipSuccessActivityLog())

// The control API, for superusers only (no token: 401, a regular user's token: 403).
routerAdd("GET", "/api/pm/bridge", (e) => require(`${__hooks}/processman_lib.js`).bridge(e),
  $apis.requireSuperuserAuth())
routerAdd("GET", "/api/pm/events", (e) => require(`${__hooks}/processman_lib.js`).events(e),
  $apis.requireSuperuserAuth())
routerAdd("GET", "/api/pm/list", (e) => require(`${__hooks}/processman_lib.js`).forward(e, "/api/pm/list", true),
  $apis.requireSuperuserAuth())
routerAdd("POST", "/api/pm/{id}/start", (e) => require(`${__hooks}/processman_lib.js`).forwardProcess(e, "start"),
  $apis.requireSuperuserAuth())
routerAdd("POST", "/api/pm/{id}/stop", (e) => require(`${__hooks}/processman_lib.js`).forwardProcess(e, "stop"),
  $apis.requireSuperuserAuth())
routerAdd("POST", "/api/pm/{id}/restart", (e) => require(`${__hooks}/processman_lib.js`).forwardProcess(e, "restart"),
  $apis.requireSuperuserAuth())
routerAdd("POST", "/api/pm/{id}/signal", (e) => require(`${__hooks}/processman_lib.js`).forwardProcess(e, "signal"),
  $apis.requireSuperuserAuth())
routerAdd("POST", "/api/pm/{id}/run", (e) => require(`${__hooks}/processman_lib.js`).forwardProcess(e, "run"),
  $apis.requireSuperuserAuth())
routerAdd("GET", "/api/pm/{id}/runs", (e) => require(`${__hooks}/processman_lib.js`).forwardProcess(e, "runs"),
  $apis.requireSuperuserAuth())
routerAdd("GET", "/api/pm/logs", (e) => require(`${__hooks}/processman_lib.js`).forwardAllLogs(e),
  $apis.requireSuperuserAuth())
routerAdd("GET", "/api/pm/{id}/logs", (e) => require(`${__hooks}/processman_lib.js`).forwardProcess(e, "logs"),
  $apis.requireSuperuserAuth())
// Every other route of the API. Each method is registered on its own: "*" matches nothing in 0.40, and
// an empty method conflicts with PocketBase's own catch-all route.
for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE"]) {
  routerAdd(method, "/api/pm/{path...}", (e) => require(`${__hooks}/processman_lib.js`).forwardApi(e),
    $apis.requireSuperuserAuth())
}

// The dashboard: static files, which log in with PocketBase's superuser login themselves.
routerAdd("GET", "/pm", (e) => e.redirect(302, "/pm/"))
routerAdd("GET", "/pm/{path...}", (e) => require(`${__hooks}/processman_lib.js`).forwardDashboard(e))
