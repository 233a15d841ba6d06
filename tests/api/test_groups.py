"""Groups over the real HTTP API: ``group:NAME`` wherever an id is taken, ``?group=`` on the list and
the merged logs, with real children."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from processman import ManagerOptions, ProcessManager
from processman.api import AdminToken
from processman.config import expand_instances
from processman.engine.states import Status
from tests.api.conftest import TOKEN, running, serving
from tests.conftest import config, tagged_processes, wait_until

TALKER = """
import itertools, os, sys, time
name = os.environ["NAME"]
for i in itertools.count():
    print(f"{name} says {i}", flush=True)
    time.sleep(0.1)
"""


@pytest.fixture
async def grouped(tmp_path: Path) -> AsyncIterator[tuple[ProcessManager, httpx.AsyncClient]]:
    manager = ProcessManager(
        [
            config("agent", TALKER, env={"NAME": "agent"}, group="ai"),
            *expand_instances(config("embedder", TALKER, env={"NAME": "embedder"}, group="ai", instances=2)),
            config("web", TALKER, env={"NAME": "web"}),
        ],
        ManagerOptions(state_dir=tmp_path / "state", log_output=False),
    )
    try:
        await manager.start()
        await running(manager, "agent", "embedder:0", "embedder:1", "web")
        async with serving(manager, AdminToken(TOKEN)) as service:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=15) as client:
                yield manager, client
    finally:
        await manager.close()
    assert tagged_processes(f"{manager.run_id}:") == []


AI = ["agent", "embedder:0", "embedder:1"]


async def test_the_list_filters_by_group(grouped: tuple[ProcessManager, httpx.AsyncClient]) -> None:
    _, client = grouped
    everything = (await client.get("/api/pm/list")).json()
    assert [state["config"].get("group") for state in everything] == ["ai", "ai", "ai", None]
    ai = (await client.get("/api/pm/list", params={"group": "ai"})).json()
    assert [state["id"] for state in ai] == AI
    assert (await client.get("/api/pm/list", params={"group": "nobody"})).json() == []


async def test_actions_take_group_name_as_the_id(grouped: tuple[ProcessManager, httpx.AsyncClient]) -> None:
    manager, client = grouped
    pids = {i: manager.state(i).pid for i in [*AI, "web"]}
    reply = await client.post("/api/pm/group:ai/restart")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"message": "Group restart initiated", "id": "group:ai", "ids": AI}
    await running(manager, *AI)
    assert all(manager.state(i).pid != pids[i] for i in AI)
    assert manager.state("web").pid == pids["web"], "a process outside the group is left alone"

    reply = await client.post("/api/pm/group:ai/stop")
    assert reply.json()["message"] == "Group stopped"
    assert all(manager.state(i).status is Status.STOPPED for i in AI)
    assert manager.state("web").status is Status.RUNNING
    await manager.start_process("agent")
    reply = await client.post("/api/pm/group:ai/start")
    assert reply.json()["ids"] == ["embedder:0", "embedder:1"], "a running member is not started again"
    await running(manager, *AI)

    # An instance id "<entry>:<n>" still means the instance, and an unknown group is a 404.
    assert (await client.post("/api/pm/embedder:1/restart")).json()["id"] == "embedder:1"
    missing = await client.post("/api/pm/group:nobody/restart")
    assert missing.status_code == 404 and missing.json()["message"] == "Process not found."


async def test_logs_of_a_group_and_of_everything_are_interleaved(
    grouped: tuple[ProcessManager, httpx.AsyncClient],
) -> None:
    manager, client = grouped
    await wait_until(manager, lambda: all(manager.last_log_seq(i) >= 12 for i in AI), what="some lines")
    lines = (await client.get("/api/pm/group:ai/logs", params={"lines": 30})).json()
    assert len(lines) == 30
    assert {line["processId"] for line in lines} == set(AI)
    assert [line["timestamp"] for line in lines] == sorted(line["timestamp"] for line in lines)
    everything = (await client.get("/api/pm/logs", params={"lines": 50})).json()
    assert {line["processId"] for line in everything} == {*AI, "web"}
    only_ai = (await client.get("/api/pm/logs", params={"group": "ai", "lines": 5})).json()
    assert {line["processId"] for line in only_ai} <= set(AI)

    # Followed: new lines of every member, and of no one else.
    seen: set[str] = set()
    params: dict[str, str | int] = {"follow": 1, "lines": 0, "group": "ai"}
    async with asyncio.timeout(10), client.stream("GET", "/api/pm/logs", params=params) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        async for text in reply.aiter_lines():
            if text.startswith("data: "):
                line = json.loads(text.removeprefix("data: "))
                seen.add(line["processId"])
                assert line["content"].startswith(line["processId"].partition(":")[0] + " says")
                if seen == set(AI):
                    break
    assert seen == set(AI)


async def test_a_signal_reaches_every_running_process_of_a_group(
    grouped: tuple[ProcessManager, httpx.AsyncClient],
) -> None:
    manager, client = grouped
    await manager.stop_process("embedder:1")  # a stopped member is passed over, not an error
    untouched = {i: manager.state(i).exits for i in ("embedder:1", "web")}
    answer = await client.post("/api/pm/group:ai/signal", json={"signal": "USR1"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["ids"] == ["agent", "embedder:0"] and answer.json()["signal"] == "SIGUSR1"
    # USR1's default action ends a process: each signalled member exits by it, the others do not.
    signalled = ("agent", "embedder:0")
    await wait_until(manager, lambda: all(manager.state(i).exits for i in signalled), what="the signal")
    exits = {process_id: manager.state(process_id).exits for process_id in (*AI, "web")}
    assert [record.signal for record in exits["agent"] + exits["embedder:0"]] == [10, 10]
    assert {i: exits[i] for i in untouched} == untouched
    refused = await client.post("/api/pm/group:ai/signal", json={"signal": "KILL"})
    assert refused.status_code == 400
