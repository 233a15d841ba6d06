"""The OpenAPI 3.1 description of the control API, served at ``<mount>/openapi.json``.

Paths are relative to the mount point, which is given as the server URL, so the document is right
wherever the API is mounted.
"""

from __future__ import annotations

from typing import Any

from processman import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The process id from the config, or `group:NAME` for every process of a group.",
    "schema": {"type": "string"},
}
_AUTH_ERRORS = {
    "401": _error("No credential, or a wrong one."),
    "403": _error("A valid PocketBase token that is not a superuser's."),
}
_SSE = {"description": "A stream of Server-Sent Events.", "content": {"text/event-stream": {"schema": {}}}}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "PocketBase's error shape.",
        "required": ["status", "message", "data"],
        "properties": {
            "status": {"type": "integer", "example": 404},
            "message": {"type": "string", "example": "Process not found."},
            "data": {"type": "object", "description": "Field errors: {name: {code, message}}."},
        },
    },
    "Message": {
        "type": "object",
        "required": ["message", "id"],
        "properties": {
            "message": {"type": "string"},
            "id": {"type": "string"},
            "ids": {
                "type": "array",
                "items": {"type": "string"},
                "description": "With group:NAME: the processes of the group acted on.",
            },
        },
    },
    "ProcessState": {
        "type": "object",
        "required": ["id", "pid", "status", "startTime", "uptime", "restartCount", "lastError", "config"],
        "properties": {
            "id": {"type": "string"},
            "pid": {"type": "integer", "description": "0 when not running."},
            "status": {
                "type": "string",
                "enum": [
                    "starting",
                    "running",
                    "stopping",
                    "stopped",
                    "crashed",
                    "failed",
                    "completed",
                    "scheduled",
                ],
                "description": "completed: a one-shot task that exited successfully; scheduled: a job "
                "between runs (see nextRun).",
            },
            "ready": {"type": "boolean", "description": "The current run passed its readiness probe."},
            "desired": {"type": "string", "enum": ["running", "stopped"]},
            "startTime": {"type": ["string", "null"], "format": "date-time"},
            "uptime": {"type": "string", "example": "2h30m15s"},
            "restartCount": {"type": "integer"},
            "lastError": {"type": "string"},
            "recentExits": {
                "type": "array",
                "description": "The last 20 exits, oldest first.",
                "items": _ref("ExitRecord"),
            },
            "cpu": {
                "type": ["number", "null"],
                "description": "CPU of the whole process tree, percent of one core; null when not running.",
            },
            "memory": {
                "type": ["integer", "null"],
                "description": "Resident memory of the whole process tree in bytes; null when not running.",
            },
            "logError": {
                "type": "string",
                "description": "Why the log files cannot be written (a full disk, say); empty when fine.",
            },
            "logDroppedBytes": {
                "type": "integer",
                "description": "Bytes of output that could not be written to the log files.",
            },
            "virtualenv": {
                "type": ["string", "null"],
                "description": "The virtualenv it runs in (VIRTUAL_ENV, its bin first on PATH).",
            },
            "virtualenvLookedIn": {
                "type": "array",
                "items": {"type": "string"},
                "description": "A Python program without a virtualenv: the folders looked in for one.",
            },
            "envFromFiles": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "What its envFile files held at the last start; secrets shown as ****.",
            },
            "statusText": {
                "type": "string",
                "description": "What the process says it is doing (sd_notify STATUS=); empty when nothing.",
            },
            "mainPid": {
                "type": ["integer", "null"],
                "description": "The pid the process named as its main one (sd_notify MAINPID=).",
            },
            "nextRun": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "A job's next due time while it is armed; null otherwise.",
            },
            "config": {
                "type": "object",
                "description": "The process's config; env values of secrets are shown as ****.",
            },
        },
    },
    "Run": {
        "type": "object",
        "description": "One run of a process, from its start to its end (or a skipped one).",
        "required": [
            "id",
            "number",
            "trigger",
            "started",
            "ended",
            "duration",
            "durationSeconds",
            "exitCode",
            "signal",
            "outcome",
            "reason",
            "lastLines",
            "pid",
        ],
        "properties": {
            "id": {"type": "string", "description": "The process id."},
            "number": {"type": "integer", "description": "1, 2, ... per process, across restarts."},
            "trigger": {
                "type": "string",
                "enum": [
                    "start",
                    "schedule",
                    "catch-up",
                    "manual",
                    "restart",
                    "crash",
                    "file-change",
                    "dependency",
                ],
            },
            "started": {"type": "string", "format": "date-time"},
            "ended": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "null while running.",
            },
            "duration": {"type": ["string", "null"], "example": "41s"},
            "durationSeconds": {"type": ["number", "null"], "example": 41.306},
            "exitCode": {"type": ["integer", "null"]},
            "signal": {"type": ["string", "null"], "example": "SIGTERM", "description": "By name."},
            "outcome": {
                "type": ["string", "null"],
                "enum": ["succeeded", "failed", "timed out", "skipped", "stopped", None],
                "description": "null while running.",
            },
            "reason": {"type": "string", "example": "exited with code 0"},
            "lastLines": {"type": "array", "items": {"type": "string"}, "description": "Its last output."},
            "pid": {"type": ["integer", "null"]},
        },
    },
    "ExitRecord": {
        "type": "object",
        "required": ["time", "exitCode", "signal", "uptime", "uptimeSeconds", "reason", "lastLines"],
        "properties": {
            "time": {"type": "string", "format": "date-time"},
            "exitCode": {"type": ["integer", "null"], "description": "null when killed by a signal."},
            "signal": {"type": ["string", "null"], "example": "SIGKILL", "description": "By name."},
            "uptime": {"type": "string", "example": "14s", "description": "How long the run lasted."},
            "uptimeSeconds": {"type": "number", "example": 14.52},
            "reason": {"type": "string", "example": "memory 612MB above maxMemory 512MB"},
            "lastLines": {"type": "array", "items": {"type": "string"}, "description": "Last output."},
        },
    },
    "LogLine": {
        "type": "object",
        "required": ["timestamp", "processId", "stream", "content"],
        "properties": {
            "timestamp": {"type": "string", "format": "date-time"},
            "processId": {"type": "string"},
            "stream": {
                "type": "string",
                "enum": ["stdout", "stderr", "system"],
                "description": "system: processman's own notes about the process (a restart, readiness).",
            },
            "content": {"type": "string"},
            "level": {
                "type": "string",
                "enum": ["debug", "info", "warn", "error"],
                "description": 'The line\'s own level (INFO:, [INFO], level=info, JSON "level"), else '
                "stderr's error or info.",
            },
        },
    },
}


def _operation(summary: str, description: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "description": description, "responses": responses, **extra}


def _action(verb: str, message: str, errors: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": _operation(
            f"{verb.capitalize()} a process",
            f'Answers {{"message": "{message}", "id": ...}}.',
            {"200": _json(_ref("Message"), message), **errors, **_AUTH_ERRORS},
            parameters=[_ID],
        )
    }


def openapi_document(mount: str = "/api/pm") -> dict[str, Any]:
    not_found = {"404": _error("No process has this id.")}
    running = _error("Already running.")
    auth = _AUTH_ERRORS
    logs_parameters = [
        _ID,
        {
            "name": "lines",
            "in": "query",
            "description": "How many of the last lines (default 100; more than 1000 means 1000).",
            "schema": {"type": "integer", "minimum": 0, "default": 100},
        },
        {
            "name": "follow",
            "in": "query",
            "description": "1: answer with a Server-Sent Events stream (event `log`, id = sequence number).",
            "schema": {"type": "integer", "enum": [0, 1], "default": 0},
        },
        {
            "name": "after",
            "in": "query",
            "description": "With follow=1: resume after this sequence number instead of sending `lines`.",
            "schema": {"type": "integer", "minimum": 0},
        },
        {
            "name": "Last-Event-ID",
            "in": "header",
            "description": "With follow=1: as `after`; sent by EventSource when it reconnects; wins over it.",
            "schema": {"type": "integer", "minimum": 0},
        },
    ]
    group_parameter = {
        "name": "group",
        "in": "query",
        "description": "Only the processes of this group.",
        "schema": {"type": "string", "minLength": 1},
    }
    paths = {
        "/list": {
            "get": _operation(
                "List processes",
                "Every configured process, in config order.",
                {
                    "200": _json({"type": "array", "items": _ref("ProcessState")}, "The states."),
                    "400": _error("An empty group."),
                    **auth,
                },
                parameters=[group_parameter],
            )
        },
        "/logs": {
            "get": _operation(
                "Read or follow every process's output, interleaved",
                "The last lines of every process (or of a group), oldest first; with follow=1 a live stream "
                "that first sends them. Stream events: `log` (a LogLine plus `seq`, which counts one "
                "process's lines: no event ids, no resuming), `dropped` ({count, processId}).",
                {
                    "200": {
                        "description": "The lines, or a stream of them.",
                        "content": {
                            "application/json": {"schema": {"type": "array", "items": _ref("LogLine")}},
                            "text/event-stream": {"schema": {}},
                        },
                    },
                    "400": _error("Bad lines, follow or group."),
                    **_AUTH_ERRORS,
                },
                parameters=[group_parameter, *logs_parameters[1:3]],
            )
        },
        "/reload": {
            "post": _operation(
                "Apply the config file",
                "Re-reads the config file: adds new processes, stops removed ones, restarts changed ones and "
                "leaves the others alone. A file with errors changes nothing (400 lists the problems).",
                {
                    "200": _json({"type": "object"}, "The plan: added, removed, changed, unchanged."),
                    "400": _error("The config has errors."),
                    **auth,
                },
                parameters=[
                    {"name": "dryRun", "in": "query", "schema": {"type": "string", "enum": ["0", "1"]}}
                ],
            )
        },
        "/metrics": {
            "get": _operation(
                "Metrics for Prometheus",
                "Per process (label `id`): CPU and resident memory of the whole process tree, restarts, "
                "uptime, status, last exit code; the manager's own memory, CPU, open files, event-loop "
                "lag and dropped log lines. Prometheus text format 0.0.4.",
                {
                    "200": {
                        "description": "The metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **auth,
                },
            )
        },
        "/{id}/start": _action("start", "Process start initiated", {**not_found, "400": running}),
        "/{id}/stop": _action("stop", "Process stopped", not_found),
        "/{id}/restart": _action("restart", "Process restart initiated", not_found),
        "/{id}/signal": {
            "post": _operation(
                "Send a process a signal",
                'Body {"signal": "HUP", "tree": false, "force": false}: the signal by name (with or without '
                '"SIG", any case) to the main process (a forking process: its daemon), or with tree to every '
                "process of its tree. SIGKILL and SIGSTOP bypass the stop ladder, so: 400 without force."
                ' Answers {"message": "SIGHUP sent", "id", "signal": "SIGHUP", "processes": count}; for'
                ' group:NAME, each running member gets it and "ids" lists them.',
                {
                    "200": _json({"type": "object"}, "Sent."),
                    "400": _error("Unknown or refused signal, bad body, or the process is not running."),
                    **not_found,
                    **_AUTH_ERRORS,
                },
                parameters=[_ID],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["signal"],
                                "properties": {
                                    "signal": {"type": "string", "minLength": 1},
                                    "tree": {"type": "boolean", "default": False},
                                    "force": {"type": "boolean", "default": False},
                                },
                            }
                        }
                    },
                },
            )
        },
        "/{id}/run": {
            "post": _operation(
                "Run a job or one-shot task now",
                "One run now (trigger manual), following the job's overlap policy: the run begun, or the "
                'run recorded as skipped when one is still running. 202 {"queued": true} when it waits '
                "for the run in progress (overlap queue) or its dependencies. A service kept alive "
                "(restart always, no schedule) has no single run: 409. For group:NAME, a run of each job "
                'and task of the group: {"message", "id", "ids", "runs": [...]}.',
                {
                    "200": _json(_ref("Run"), "The run begun or skipped."),
                    "202": _json({"type": "object"}, 'Queued: {"id", "queued": true, "message"}.'),
                    "409": _error("A service kept alive: use start or restart."),
                    **not_found,
                    **_AUTH_ERRORS,
                },
                parameters=[_ID],
            )
        },
        "/{id}/runs": {
            "get": _operation(
                "A process's run history",
                "Its runs, newest first: every run of a service, job or task, with its trigger and outcome "
                "(kept across restarts of the manager, keepRuns per process). For group:NAME, the runs of "
                "its processes together, newest first.",
                {
                    "200": _json({"type": "array", "items": _ref("Run")}, "The runs."),
                    "400": _error("Bad limit."),
                    **not_found,
                    **_AUTH_ERRORS,
                },
                parameters=[
                    _ID,
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "How many runs (default 20; more than keepRuns means keepRuns).",
                        "schema": {"type": "integer", "minimum": 0, "default": 20},
                    },
                ],
            )
        },
        "/{id}/logs": {
            "get": _operation(
                "Read or follow a process's output",
                "The last lines, oldest first; with follow=1 a live stream that first sends them. Stream "
                "events: `log` (a LogLine plus `seq`), `dropped` ({count}: lines no longer in the buffer), "
                "`partial` (a LogLine plus `partial: true`: the latest state of a line being redrawn).",
                {
                    "200": {
                        "description": "The lines, or a stream of them.",
                        "content": {
                            "application/json": {"schema": {"type": "array", "items": _ref("LogLine")}},
                            "text/event-stream": {"schema": {}},
                        },
                    },
                    "400": _error("Bad lines, follow or after."),
                    **not_found,
                    **_AUTH_ERRORS,
                },
                parameters=logs_parameters,
            )
        },
        "/events": {
            "get": _operation(
                "Follow state changes",
                "Server-Sent Events: `snapshot` (every state) first and after any gap, then `status` "
                "(one ProcessState) at each change, and after an exit's `status` an `exit` (type, id, pid, "
                "expected, and the fields of an ExitRecord but reason and lastLines), `run` (type and a Run) "
                "when a run begins, ends or is skipped; a comment every 15 s keeps the connection open.",
                {"200": _SSE, **_AUTH_ERRORS},
            )
        },
        "/health": {
            "get": _operation(
                "Which containment keeps process trees together, and which process backend watches them",
                '{"containment": "cgroup", "containmentDetail": "cgroup v2 /sys/fs/cgroup/processman-...", '
                '"backend": "linux", "backendDetail": "pidfds, prctl and /proc"}; containment "tags" where '
                'cgroups cannot be used, "portable" with the portable backend (see docs/reliability.md).',
                {"200": _json({"type": "object"}, "The containment and the backend."), **auth},
            )
        },
        "/auth-info": {
            "get": _operation(
                "Which login applies",
                'No credential needed. {"mode": "token"} (admin token) or {"mode": "pocketbase"}.',
                {"200": _json({"type": "object"}, "The mode.")},
                security=[],
            )
        },
        "/openapi.json": {
            "get": _operation(
                "This document", "No credential needed.", {"200": _json({"type": "object"}, "")}, security=[]
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "processman control API",
            "version": __version__,
            "description": "List, start, stop and restart supervised processes and read their output. "
            "Errors use PocketBase's shape. Every route needs a superuser credential unless stated.",
        },
        "servers": [{"url": mount or "/"}],
        "security": [{"bearer": []}, {"pocketbase": []}],
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "The admin token."},
                "pocketbase": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "A PocketBase superuser token, bare as PocketBase's SDK sends it.",
                },
            },
        },
    }
