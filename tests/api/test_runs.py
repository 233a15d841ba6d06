"""``POST /api/pm/{id}/run`` and ``GET /api/pm/{id}/runs``: runs of real processes, the ``run`` event of
the event stream, a job's ``nextRun``, and the documented shapes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from processman import ProcessConfig, ProcessManager
from processman.api import AdminToken
from processman.api.openapi import openapi_document
from processman.api.wire import run_to_json
from processman.config.schedule import Schedule
from processman.engine.runs import Run, RunOutcome, Trigger
from processman.engine.states import Status
from tests.api.conftest import IDLE, TOKEN, EventReader, assert_error, serving
from tests.conftest import config, wait_until

Factory = Callable[..., ProcessManager]
TASK = "print('migrated', flush=True)"
# Runs until told: a file appears.
WAIT_FOR_FILE = "import os, time\nwhile not os.path.exists({path!r}): time.sleep(0.02)\nprint('done')"


@asynccontextmanager
async def api(manager: ProcessManager) -> AsyncIterator[httpx.AsyncClient]:
    await manager.start()
    async with serving(manager, AdminToken(TOKEN)) as service:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=15) as client:
            yield client


def ended(manager: ProcessManager, process_id: str, count: int) -> Callable[[], bool]:
    return lambda: len(runs := manager.runs(process_id)) >= count and runs[0].outcome is not None


async def test_run_starts_a_task_that_does_not_start_with_the_manager(manager_factory: Factory) -> None:
    manager = manager_factory(
        config("migrate", TASK, restart="never", autostart=False, keep_runs=3),
        config("web", IDLE, group="site"),
    )
    async with api(manager) as client:
        assert manager.state("migrate").status is Status.STOPPED
        answer = await client.post("/api/pm/migrate/run")
        assert answer.status_code == 200
        run = answer.json()
        assert (run["id"], run["number"], run["trigger"], run["outcome"]) == ("migrate", 1, "manual", None)
        assert run["pid"] > 0
        await wait_until(manager, ended(manager, "migrate", 1), what="the run ends")
        for _ in range(3):
            assert (await client.post("/api/pm/migrate/run")).status_code == 200
            await wait_until(manager, ended(manager, "migrate", 1), what="the run ends")

        listed = (await client.get("/api/pm/migrate/runs")).json()
        assert [run["number"] for run in listed] == [4, 3, 2], "newest first, at most keepRuns"
        assert listed[0]["outcome"] == "succeeded" and listed[0]["exitCode"] == 0
        assert "migrated" in listed[0]["lastLines"]
        assert listed[0]["durationSeconds"] >= 0 and listed[0]["ended"] >= listed[0]["started"]
        assert [run["number"] for run in (await client.get("/api/pm/migrate/runs?limit=1")).json()] == [4]
        assert len((await client.get("/api/pm/migrate/runs?limit=1000")).json()) == 3
        bad = await client.get("/api/pm/migrate/runs?limit=many")
        assert bad.status_code == 400
        assert_error(bad.json(), 400)
        assert manager.state("migrate").status is Status.COMPLETED

        refused = await client.post("/api/pm/web/run")
        assert refused.status_code == 409
        assert_error(refused.json(), 409)
        assert "kept alive" in refused.json()["message"]
        assert (await client.post("/api/pm/group:site/run")).status_code == 409
        manager.register(config("report", TASK, restart="never", autostart=False, group="site"))
        mixed = (await client.post("/api/pm/group:site/run")).json()
        assert (mixed["ids"], mixed["passedOver"]) == (["report"], ["web"])
        assert (await client.post("/api/pm/nothing/run")).status_code == 404
        assert (await client.get("/api/pm/nothing/runs")).status_code == 404
        await manager.apply([config("web", IDLE, group="site")])  # migrate removed: its runs are kept
        kept = (await client.get("/api/pm/migrate/runs?limit=2")).json()
        assert [run["number"] for run in kept] == [4, 3]
        # A service has its runs too: each start to its exit.
        services = (await client.get("/api/pm/web/runs")).json()
        assert [(run["number"], run["trigger"], run["outcome"]) for run in services] == [(1, "start", None)]


async def test_a_run_while_one_runs_is_skipped_or_queued(manager_factory: Factory, tmp_path: Path) -> None:
    release = tmp_path / "release"
    manager = manager_factory(
        _waiting("slow", release, restart="never", autostart=False),
        _waiting("job", release, schedule=Schedule(every=3600.0, overlap="queue"), group="jobs"),
    )
    async with api(manager) as client:
        first = await client.post("/api/pm/slow/run")
        assert first.status_code == 200 and first.json()["number"] == 1
        skipped = (await client.post("/api/pm/slow/run")).json()
        assert (skipped["number"], skipped["outcome"]) == (2, "skipped")
        assert "run 1 was still running" in skipped["reason"]
        assert (skipped["duration"], skipped["durationSeconds"]) == (None, None)  # it never ran

        await wait_until(manager, lambda: manager.state("job").status is Status.SCHEDULED, what="armed")
        assert manager.state("job").next_run is not None
        state = (await client.get("/api/pm/list")).json()[1]
        assert state["status"] == "scheduled" and state["nextRun"].endswith("Z")
        assert (await client.post("/api/pm/group:jobs/run")).json()["runs"][0]["trigger"] == "manual"
        queued = await client.post("/api/pm/job/run")
        assert queued.status_code == 202
        assert queued.json()["queued"] is True

        runs = (await client.get("/api/pm/job/runs")).json()
        assert [(run["number"], run["outcome"]) for run in runs] == [(1, None)]
        await client.post("/api/pm/job/stop")
        runs = (await client.get("/api/pm/job/runs")).json()
        assert [(run["number"], run["outcome"]) for run in runs] == [(1, "stopped")]


async def test_a_queued_run_follows_the_one_in_progress(manager_factory: Factory, tmp_path: Path) -> None:
    release = tmp_path / "release"
    manager = manager_factory(_waiting("job", release, schedule=Schedule(every=3600.0, overlap="queue")))
    async with api(manager) as client:
        await wait_until(manager, lambda: manager.state("job").status is Status.SCHEDULED, what="armed")
        assert (await client.post("/api/pm/job/run")).status_code == 200
        assert (await client.post("/api/pm/job/run")).status_code == 202
        release.write_text("go")
        await wait_until(manager, ended(manager, "job", 2), timeout=5, what="the queued run ends")
        runs = (await client.get("/api/pm/job/runs")).json()
        assert [(run["number"], run["outcome"]) for run in runs] == [(2, "succeeded"), (1, "succeeded")]


def _waiting(process_id: str, release: Path, **fields: Any) -> ProcessConfig:
    return config(process_id, WAIT_FOR_FILE.format(path=str(release)), **fields)


async def test_runs_come_on_the_event_stream(manager_factory: Factory) -> None:
    manager = manager_factory(config("migrate", TASK, restart="never", autostart=False))
    async with api(manager) as client, client.stream("GET", "/api/pm/events") as response:
        reader = EventReader(response)
        assert (await reader.until(lambda event: event.event == "snapshot")).event == "snapshot"
        await client.post("/api/pm/migrate/run")
        began = json.loads((await reader.until(lambda event: event.event == "run")).data)
        assert (began["type"], began["id"], began["number"], began["outcome"]) == ("run", "migrate", 1, None)
        done = json.loads((await reader.until(lambda event: event.event == "run")).data)
        assert (done["number"], done["outcome"], done["exitCode"]) == (1, "succeeded", 0)


def test_a_run_has_the_documented_shape() -> None:
    import jsonschema

    schemas = openapi_document()["components"]["schemas"]
    running = Run("backup", 12, Trigger.SCHEDULE, 1_700_000_000.0, pid=4242)
    killed = Run(
        "backup",
        13,
        Trigger.MANUAL,
        1_700_000_000.0,
        ended=1_700_000_041.25,
        outcome=RunOutcome.TIMED_OUT,
        signal=15,
        reason="ran longer than its timeout",
        last_lines=("half done",),
    )
    for run in (running, killed):
        sent = run_to_json(run)
        assert set(sent) == set(schemas["Run"]["properties"])
        jsonschema.validate(sent, {"components": {"schemas": schemas}, **schemas["Run"]})
    sent = run_to_json(killed)
    assert (sent["signal"], sent["duration"], sent["durationSeconds"]) == ("SIGTERM", "41s", 41.25)
    assert sent["started"] == "2023-11-14T22:13:20.000Z"


async def test_a_start_or_run_while_the_manager_shuts_down_is_503_not_500(manager_factory: Factory) -> None:
    # A SIGTERM-deaf process keeps the shutdown going while the requests come.
    stubborn = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up')\ntime.sleep(60)"
    )
    manager = manager_factory(
        config("slow", stubborn, stop_timeout=5.0), config("task", TASK, restart="never")
    )
    async with api(manager) as client:
        await wait_until(manager, lambda: manager.state("slow").status is Status.RUNNING, what="running")
        closing = asyncio.ensure_future(manager.close())
        await wait_until(manager, lambda: manager.state("slow").status is Status.STOPPING, what="stopping")
        for path in ("/api/pm/task/start", "/api/pm/task/run"):
            answer = await client.post(path)
            assert answer.status_code == 503, (path, answer.text)
            assert "shutting down" in answer.json()["message"]
        await closing
