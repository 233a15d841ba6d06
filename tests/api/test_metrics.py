"""``GET /api/pm/metrics`` (Prometheus text, read by prometheus_client's own parser) and the usage
fields of the list, from a real server with real children."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from processman import Desired, ProcessManager, Status
from processman.api import AdminToken
from processman.api.prometheus import render_metrics
from processman.engine.process import ExitRecord, ProcessState
from processman.engine.resources import ManagerUsage
from tests.api.conftest import IDLE, TICKER, TOKEN, running, serving
from tests.conftest import config, wait_until

SPINNER = "while True: pass"
CRASHER = "import sys\nprint('giving up', flush=True)\nsys.exit(3)"
Samples = dict[str, list[Sample]]


@pytest.fixture
async def client(manager_factory: Callable[..., ProcessManager]) -> AsyncIterator[httpx.AsyncClient]:
    manager = manager_factory(
        config("ticker", TICKER),
        config("spinner", SPINNER),
        config("idle", IDLE, max_memory=512 * 1024 * 1024),
        config("crasher", CRASHER, backoff=60),
        metrics_interval=0.1,
    )
    await manager.start()
    await running(manager, "ticker", "spinner", "idle")
    await wait_until(manager, lambda: manager.state("crasher").status is Status.CRASHED, what="a crash")
    samples = manager.resources.samples
    await wait_until(manager, lambda: manager.resources.samples >= samples + 2, what="two samples")
    # The event-loop lag is known from the probe's first tick (a quarter second in).
    await wait_until(manager, lambda: manager.manager_usage().loop_lag is not None, what="a lag tick")
    async with serving(manager, AdminToken(TOKEN)) as service:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=15) as http:
            yield http


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/api/pm/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        assert family.documentation, family.name
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    found = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name} {labels}: {found}"
    return found[0]


async def test_metrics_parse_and_describe_every_process(client: httpx.AsyncClient) -> None:
    samples = await scrape(client)
    for process_id in ("ticker", "spinner", "idle"):
        assert value(samples, "processman_process_up", id=process_id) == 1
        assert value(samples, "processman_process_status", id=process_id, status="running") == 1
        assert value(samples, "processman_process_memory_bytes", id=process_id) > 1024 * 1024
        assert value(samples, "processman_process_uptime_seconds", id=process_id) > 0
        assert value(samples, "processman_process_tree_processes", id=process_id) == 1
        assert value(samples, "processman_process_restarts_total", id=process_id) == 0
    assert value(samples, "processman_process_up", id="crasher") == 0
    assert value(samples, "processman_process_status", id="crasher", status="crashed") == 1
    assert value(samples, "processman_process_status", id="crasher", status="running") == 0
    assert value(samples, "processman_process_last_exit_code", id="crasher") == 3
    assert "crasher" not in {s.labels["id"] for s in samples["processman_process_memory_bytes"]}
    assert value(samples, "processman_process_max_memory_bytes", id="idle") == 512 * 1024 * 1024
    assert value(samples, "processman_process_cpu_percent", id="spinner") > value(
        samples, "processman_process_cpu_percent", id="idle"
    )
    # prometheus_client names a counter's samples with the _total suffix.
    assert value(samples, "processman_process_cpu_seconds_total", id="spinner") > 0

    assert value(samples, "processman_manager_memory_bytes") > 5 * 1024 * 1024
    assert value(samples, "processman_manager_cpu_seconds_total") > 0
    assert value(samples, "processman_manager_open_fds") >= 9  # three per running child
    assert 0 <= value(samples, "processman_manager_event_loop_lag_seconds") < 5
    assert 0 < value(samples, "processman_manager_sample_duration_seconds") < 5
    assert value(samples, "processman_log_lines_dropped_total", consumer="logging") == 0
    assert value(samples, "processman_log_lines_dropped_total", consumer="subscribers") >= 0


async def test_counters_grow_between_scrapes(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    response = await client.post("/api/pm/ticker/restart")
    assert response.status_code == 200
    after = await scrape(client)
    assert value(after, "processman_process_restarts_total", id="ticker") == 1
    assert value(after, "processman_manager_cpu_seconds_total") >= value(
        before, "processman_manager_cpu_seconds_total"
    )


async def test_metrics_need_a_credential(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/pm/metrics", headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.json()["status"] == 401


async def test_the_list_reports_cpu_and_memory(client: httpx.AsyncClient) -> None:
    states = {state["id"]: state for state in (await client.get("/api/pm/list")).json()}
    assert isinstance(states["spinner"]["cpu"], float) and states["spinner"]["cpu"] > 0
    assert isinstance(states["idle"]["memory"], int) and states["idle"]["memory"] > 1024 * 1024
    assert states["crasher"]["cpu"] is None and states["crasher"]["memory"] is None
    exit = states["crasher"]["recentExits"][-1]
    assert exit["exitCode"] == 3 and exit["lastLines"] == ["giving up"]


def test_labels_are_escaped_and_signals_are_negative_codes() -> None:
    base = config("x", IDLE)
    # Ids cannot hold quotes, but labels are escaped whatever they hold.
    state = ProcessState(
        id='we"ird\\id',
        pid=0,
        status=Status.CRASHED,
        desired=Desired.RUNNING,
        start_time=None,
        uptime=0.0,
        restart_count=2,
        last_error="",
        config=base,
        interpreter=None,
        exits=(ExitRecord(0.0, None, 9, 1.5, "killed by signal 9 (SIGKILL)"),),
    )
    usage = ManagerUsage(1, 0.5, 3, None, None, {"logging": 7})
    text = render_metrics([state], usage, {}, {})
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    assert value(samples, "processman_process_last_exit_code", id='we"ird\\id') == -9
    assert value(samples, "processman_process_restarts_total", id='we"ird\\id') == 2
    assert value(samples, "processman_log_lines_dropped_total", consumer="logging") == 7
    assert "processman_manager_event_loop_lag_seconds" not in samples  # not measured: left out
    assert not any(math.isnan(s.value) for found in samples.values() for s in found)


def parsed(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation, family.name
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def test_a_log_that_cannot_be_written_shows_in_the_metrics() -> None:
    def state(process_id: str, log_error: str, dropped: int) -> ProcessState:
        made = ProcessState(
            id=process_id,
            pid=0,
            status=Status.RUNNING,
            desired=Desired.RUNNING,
            start_time=None,
            uptime=0.0,
            restart_count=0,
            last_error="",
            config=config(process_id, IDLE),
            interpreter=None,
        )
        # The engine's fields for it (read with getattr until every state has them).
        object.__setattr__(made, "log_error", log_error)
        object.__setattr__(made, "log_dropped_bytes", dropped)
        return made

    full = "cannot write web.log: [Errno 28] No space left on device"
    states = [state("web", full, 123_456), state("worker", "", 0)]
    samples = parsed(render_metrics(states, ManagerUsage(1, 0.5, 3, None, None, {}), {}, {}))
    assert value(samples, "processman_process_log_dropped_bytes_total", id="web") == 123_456
    assert value(samples, "processman_process_log_dropped_bytes_total", id="worker") == 0
    assert value(samples, "processman_process_log_error", id="web", error=full) == 1
    assert value(samples, "processman_process_log_error", id="worker", error="") == 0
