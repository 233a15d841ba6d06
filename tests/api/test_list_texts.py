"""``GET /api/pm/list`` keeps each process's encoded JSON between requests: the body must be, byte for
byte, what encoding every state anew gives, whatever field of a state changed since the last list."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from processman import Desired, Status
from processman.api.wire import StateTexts, state_to_json, states_to_body
from processman.engine.process import ExitRecord, ProcessState
from processman.interpreter import VenvLookup
from tests.api.conftest import Served, running
from tests.api.test_wire import state_of
from tests.conftest import config, wait_until

IDLE = "import time; time.sleep(3600)"

# For every field of a state, a value other than state_of()'s (several where a change of one kind can
# leave another unseen). A field added to ProcessState without a value here fails the first test.
OTHER_VALUES: dict[str, list[Any]] = {
    "id": ["y"],
    "pid": [4242],
    "status": [Status.RUNNING, Status.CRASHED],
    "desired": [Desired.RUNNING],
    "start_time": [1_700_000_000.5, 1_700_000_001.5],
    "uptime": [0.4, 1.0, 1.9, 61.2, 3600.0],
    "restart_count": [1, 2],
    "last_error": ["boom", 'caf\u00e9 "quoted"'],
    "config": [
        config("x", IDLE, env={"API_TOKEN": "hunter2"}),
        config("x", IDLE),  # equal to state_of()'s, another object
        config("x", IDLE, interpreter="python3"),
    ],
    "interpreter": ["/usr/bin/python3", "/opt/venv/bin/python"],
    "exits": [
        (ExitRecord(1_700_000_000.25, 1, None, 2.5, "exited with code 1", ("a", "b")),),
        (ExitRecord(1_700_000_000.25, None, 9, 2.5, "killed", ()),),
        (
            ExitRecord(1_700_000_000.25, 1, None, 2.5, "exited with code 1", ("a", "b")),
            ExitRecord(1_700_000_003.0, 0, None, 0.5, "exited with code 0", ()),
        ),
    ],
    "cpu": [0.0, 12.5, 12.6],
    "memory": [0, 2048, 4096],
    "ready": [True],
    "log_error": ["cannot write x.log: No space left on device"],
    "log_dropped_bytes": [1, 4096],
    "env_from_files": [
        {"A": "1"},
        {"A": "2"},
        {"A": "1", "DB_PASSWORD": "x"},
        {"DB_PASSWORD": "x", "A": "1"},
    ],
    "venv": [VenvLookup(Path("/srv/.venv")), VenvLookup(None, (Path("/srv"), Path("/")))],
    "status_text": ["warming up"],
    "main_pid": [77, 78],
    "next_run": [1_700_000_100.0, 1_700_000_160.0],
}


def reference(states: list[ProcessState]) -> bytes:
    """The body as encoding every state anew gives it (as Starlette's JSONResponse encodes)."""
    shown = [state_to_json(state) for state in states]
    return json.dumps(shown, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def test_every_field_of_a_state_has_other_values_here() -> None:
    assert set(OTHER_VALUES) == {field.name for field in dataclasses.fields(ProcessState)}


def test_a_change_of_any_field_shows_in_the_next_body() -> None:
    base = state_of("x", interpreter="/usr/bin/python3")
    other = state_of("other", status=Status.RUNNING, pid=10, uptime=5.0)
    for name, values in OTHER_VALUES.items():
        texts = StateTexts()
        assert texts.render([base, other]) == reference([base, other])
        for value in values:
            changed = dataclasses.replace(base, **{name: value})
            assert texts.render([changed, other]) == reference([changed, other]), (name, value)
            # Again, from the texts kept.
            assert texts.render([changed, other]) == reference([changed, other]), (name, value)
        # And back: the first state again, after the last change.
        assert texts.render([base, other]) == reference([base, other]), name


def test_the_same_state_twice_and_a_filtered_list_give_the_uncached_body() -> None:
    states = [state_of(f"p{n}", status=Status.RUNNING, pid=100 + n, uptime=n * 7.5) for n in range(5)]
    texts = StateTexts()
    assert texts.render(states) == reference(states) == states_to_body(states)
    assert texts.render(states) == reference(states)
    assert texts.render(states[1:3], complete=False) == reference(states[1:3])
    assert texts.render(states) == reference(states)
    assert texts.render([]) == b"[]"
    assert texts.render(states) == reference(states)


def test_a_full_list_forgets_the_processes_it_no_longer_has() -> None:
    texts = StateTexts()
    texts.render([state_of("a"), state_of("b")])
    texts.render([state_of("a")], complete=False)
    assert texts.known() == {"a", "b"}
    texts.render([state_of("a")])
    assert texts.known() == {"a"}


def test_values_that_cannot_be_json_are_refused_as_before() -> None:
    texts = StateTexts()
    nan = state_of("x", cpu=float("nan"))
    for _ in range(2):
        try:
            texts.render([nan])
        except ValueError:
            continue
        raise AssertionError("a NaN was encoded")


def _listed(served: Served, body: list[dict[str, Any]], process_id: str) -> dict[str, Any]:
    """The entry of ``process_id``, checked against the manager's state now (the figures that change on
    their own aside)."""
    entry = next(item for item in body if item["id"] == process_id)
    volatile = {"uptime": entry["uptime"], "cpu": entry["cpu"], "memory": entry["memory"]}
    assert entry == state_to_json(served.manager.state(process_id)) | volatile
    return entry


async def test_a_change_made_through_the_api_shows_in_the_next_list(served: Served) -> None:
    client = served.client

    async def listed(process_id: str = "idle") -> dict[str, Any]:
        response = await client.get("/api/pm/list")
        assert response.status_code == 200
        return _listed(served, response.json(), process_id)

    before = await listed()
    assert before["status"] == "running" and before["pid"] > 0 and before["desired"] == "running"
    await listed()  # a second list, from the kept texts

    assert (await client.post("/api/pm/idle/stop")).status_code == 200
    stopped = await listed()
    assert stopped["status"] == "stopped" and stopped["desired"] == "stopped"
    assert stopped["pid"] == 0 and stopped["startTime"] is None and stopped["uptime"] == "0s"
    assert len(stopped["recentExits"]) == len(before["recentExits"]) + 1

    assert (await client.post("/api/pm/idle/start")).status_code == 200
    await running(served.manager, "idle")
    started = await listed()
    assert started["status"] == "running" and started["desired"] == "running"
    assert started["pid"] not in (0, before["pid"]) and started["startTime"] is not None
    assert started["restartCount"] == stopped["restartCount"]

    assert (await client.post("/api/pm/idle/restart")).status_code == 200
    await wait_until(
        served.manager,
        lambda: (
            served.manager.state("idle").pid not in (0, started["pid"])
            and served.manager.state("idle").status is Status.RUNNING
        ),
        what="the restarted idle",
    )
    restarted = await listed()
    assert restarted["restartCount"] == started["restartCount"] + 1
    assert restarted["pid"] not in (0, started["pid"])
    assert len(restarted["recentExits"]) == len(started["recentExits"]) + 1
    # The others are listed as they are.
    for process_id in ("ticker", "echo"):
        response = await client.get("/api/pm/list")
        _listed(served, response.json(), process_id)
