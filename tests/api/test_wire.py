"""The wire format: one JSON shape for an exit wherever it is sent (the list's ``recentExits``, the
``exit`` event of ``/api/pm/events``, PocketBase's ``pm/events`` topic), the new state fields, the
``system`` stream, and the manager's errors turned into HTTP errors in one place."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from processman import Desired, ProcessManager, Status
from processman.api import AdminToken
from processman.api.errors import EXCEPTION_HANDLERS
from processman.api.wire import state_to_json, states_to_body
from processman.engine.events import ProcessExited
from processman.engine.process import ExitRecord, ProcessState
from processman.errors import ProcessAlreadyRunning, ProcessNotFound
from processman.pocketbase.bridge import event_message
from tests.api.conftest import IDLE, TOKEN, EventReader, serving
from tests.conftest import config, wait_until

# Kills itself with SIGKILL: an exit by signal.
SUICIDE = "import os, signal\nprint('about to go', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n"
EXIT_KEYS = {"time", "exitCode", "signal", "uptime", "uptimeSeconds"}


def state_of(process_id: str = "x", **fields: Any) -> ProcessState:
    values: dict[str, Any] = {
        "id": process_id,
        "pid": 0,
        "status": Status.STOPPED,
        "desired": Desired.STOPPED,
        "start_time": None,
        "uptime": 0.0,
        "restart_count": 0,
        "last_error": "",
        "config": config(process_id, IDLE),
        "interpreter": None,
    }
    values.update(fields)
    return ProcessState(**values)


async def test_an_exit_has_one_shape_in_the_list_the_event_stream_and_pocketbase(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    manager = manager_factory(config("doomed", SUICIDE, backoff=60))
    exits: list[ProcessExited] = []
    manager.events.add_listener(
        lambda event: exits.append(event) if isinstance(event, ProcessExited) else None
    )
    async with serving(manager, AdminToken(TOKEN)) as service:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            httpx.AsyncClient(base_url=service.url, headers=headers, timeout=15) as client,
            client.stream("GET", "/api/pm/events") as response,
        ):
            events = EventReader(response)
            assert (await events.next()).event == "snapshot"
            await manager.start()
            streamed = json.loads((await events.until(lambda event: event.event == "exit")).data)
            await wait_until(manager, lambda: bool(manager.state("doomed").exits), what="the exit")
            listed = (await client.get("/api/pm/list")).json()[0]["recentExits"][-1]
    pushed = event_message(exits[0], manager)

    assert all(set(shown) >= EXIT_KEYS for shown in (listed, streamed, pushed))
    for key in EXIT_KEYS - {"time"}:  # the record and the event are made a moment apart
        assert listed[key] == streamed[key] == pushed[key], key
    assert listed["signal"] == "SIGKILL" and listed["exitCode"] is None
    assert isinstance(listed["uptime"], str) and isinstance(listed["uptimeSeconds"], float | int)
    assert streamed == pushed, "the SSE exit event and the pm/events message are the same JSON"
    assert streamed["type"] == "exit" and streamed["id"] == "doomed" and streamed["expected"] is False


def test_an_exit_record_and_an_exit_event_serialise_alike() -> None:
    from processman.api.wire import exit_event_to_json, exit_to_json

    record = exit_to_json(ExitRecord(1_700_000_000.25, None, 9, 14.5, "killed by signal 9 (SIGKILL)", ("a",)))
    event = exit_event_to_json(ProcessExited("web", 42, None, 9, 14.5, 1_700_000_000.25, False))
    assert record == {
        "time": "2023-11-14T22:13:20.250Z",
        "exitCode": None,
        "signal": "SIGKILL",
        "uptime": "14s",
        "uptimeSeconds": 14.5,
        "reason": "killed by signal 9 (SIGKILL)",
        "lastLines": ["a"],
    }
    assert {key: event[key] for key in EXIT_KEYS} == {key: record[key] for key in EXIT_KEYS}
    assert event["type"] == "exit" and event["id"] == "web" and event["pid"] == 42


def test_a_state_carries_its_log_error_and_dropped_bytes() -> None:
    from processman.api.wire import state_to_json

    state = state_of()
    # The engine adds these fields; set them on the real object as it will.
    object.__setattr__(state, "log_error", "cannot write x.log: No space left on device")
    object.__setattr__(state, "log_dropped_bytes", 4096)
    shown = state_to_json(state)
    assert shown["logError"] == "cannot write x.log: No space left on device"
    assert shown["logDroppedBytes"] == 4096
    fine = state_to_json(state_of())
    assert fine["logError"] == "" and fine["logDroppedBytes"] == 0
    json.dumps(shown)


def test_the_config_inside_a_state_names_the_resolved_interpreter() -> None:
    from processman.api.wire import state_to_json

    shown = state_to_json(state_of(interpreter="/opt/venv/bin/python"))
    assert shown["config"]["interpreter"] == "/opt/venv/bin/python"


def test_system_lines_keep_their_stream() -> None:
    from processman.api.wire import line_to_json
    from processman.logs import LogLine

    line = LogLine(7, 1_700_000_000.0, "web", "system", "restarting: restart requested")
    assert line_to_json(line) == {
        "timestamp": "2023-11-14T22:13:20.000Z",
        "processId": "web",
        "stream": "system",
        "content": "restarting: restart requested",
        "level": "info",
    }


async def _raises(request: Request) -> Response:
    error = request.path_params["error"]
    raise ProcessNotFound("web") if error == "missing" else ProcessAlreadyRunning("web")


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [("missing", 404, "Process not found."), ("running", 400, "Process is already running.")],
)
async def test_the_managers_errors_become_http_errors_in_one_place(
    error: str, status: int, message: str
) -> None:
    app = Starlette(routes=[Route("/{error}", _raises)], exception_handlers=EXCEPTION_HANDLERS)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get(f"/{error}")
    assert response.status_code == status
    assert response.json() == {"status": status, "message": message, "data": {}}


def test_a_status_event_that_changes_no_status_is_sent_as_it_is() -> None:
    from processman.api.wire import status_event_to_json
    from processman.engine.events import StatusChanged

    event = StatusChanged("web", Status.RUNNING, Status.RUNNING, 42, 1_700_000_000.0, 1, "probe failed")
    sent = status_event_to_json(event)
    assert sent["type"] == "status" and sent["status"] == sent["previous"] == "running"
    assert sent["lastError"] == "probe failed" and isinstance(sent["ready"], bool)


def test_live_lines_carry_their_stream_and_sequence_numbers() -> None:
    from processman.api.wire import lines_event_to_json
    from processman.engine.events import LogLines

    sent = lines_event_to_json(LogLines("web", "system", 10, 1_700_000_000.0, ("ready after 2s", "x")))
    assert [(line["seq"], line["stream"]) for line in sent] == [(10, "system"), (11, "system")]
    assert sent[0]["content"] == "ready after 2s" and sent[0]["processId"] == "web"


def test_the_list_body_is_the_states_json_with_each_config_encoded_once() -> None:
    secret = config("b", IDLE, env={"API_TOKEN": "hunter2", "MODE": "fast"})
    states = [
        state_of("a"),
        state_of("b", config=secret, interpreter="/usr/bin/python3", cpu=1.5, memory=10),
        state_of("b", config=secret, status=Status.RUNNING, uptime=61.2),  # the same config, shown twice
        state_of("c", env_from_files={"DB_PASSWORD": "x"}, last_error='caf\u00e9 "quoted"'),
    ]
    body = states_to_body(states)
    assert json.loads(body) == [state_to_json(state) for state in states]
    assert b"hunter2" not in body and b'"DB_PASSWORD":"x"' not in body
    assert json.loads(states_to_body(states)) == json.loads(body)  # from the cached texts
