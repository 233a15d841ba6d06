"""Notifications: real processes crash, give up, recover, storm and outgrow their memory; a real HTTP
server on 127.0.0.1 receives the webhooks (json, slack, discord) and a real command reads the JSON."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from processman import ProcessManager
from processman.api.prometheus import render_notify_metrics
from processman.config import NotifyTarget, load_config
from processman.notify import NotifierOptions
from tests.conftest import config

Factory = Callable[..., ProcessManager]
FAST = NotifierOptions(coalesce=0.2, attempts=3, first_retry=0.1, timeout=5)

CRASH = "import sys; print('about to fail', flush=True); sys.exit(3)"


class Hooks:
    """A webhook receiver: records every POST (path, JSON body); the first ``fail`` requests get 503."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        self.fail = 0
        self.arrived = threading.Condition()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hooks.arrived:
                    failing = hooks.fail > 0
                    if failing:
                        hooks.fail -= 1
                    else:
                        hooks.received.append((self.path, body))
                    hooks.arrived.notify_all()
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self, path: str) -> list[Any]:
        with self.arrived:
            return [body for where, body in self.received if where == path]

    async def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
        def block() -> bool:
            with self.arrived:
                return self.arrived.wait_for(predicate, timeout)

        if not await asyncio.to_thread(block):
            raise AssertionError(f"timed out waiting for {what}; received {self.received}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    receiver = Hooks()
    yield receiver
    receiver.close()


def events_in(bodies: list[Any]) -> list[tuple[str, str]]:
    return [(event["process"], event["event"]) for body in bodies for event in body["events"]]


def webhook(url: str, **fields: Any) -> NotifyTarget:
    return NotifyTarget(kind="webhook", target=url, **fields)


async def test_a_crash_and_the_give_up_reach_json_slack_and_discord_webhooks(
    manager_factory: Factory, hooks: Hooks
) -> None:
    targets = (
        webhook(hooks.url + "/json"),
        webhook(hooks.url + "/slack", format="slack"),
        webhook(hooks.url + "/discord", format="discord"),
    )
    manager = manager_factory(
        config("flaky", CRASH, max_retries=1, backoff=0.1), notify=targets, notifier=FAST
    )
    await manager.start()
    await hooks.wait(lambda: ("flaky", "failed") in events_in(hooks.bodies("/json")), "failed on /json")
    events = events_in(hooks.bodies("/json"))
    assert events.count(("flaky", "crashed")) >= 1 and events.count(("flaky", "failed")) == 1
    crashed = next(e for body in hooks.bodies("/json") for e in body["events"] if e["event"] == "crashed")
    assert crashed["exitCode"] == 3 and crashed["lastLines"][-1] == "about to fail"
    assert crashed["time"].endswith("Z") and "crashed" in crashed["message"]
    await hooks.wait(lambda: any("gave up" in b["text"] for b in hooks.bodies("/slack")), "slack gave up")
    await hooks.wait(lambda: any("gave up" in b["content"] for b in hooks.bodies("/discord")), "discord")
    assert all(set(body) == {"text"} for body in hooks.bodies("/slack"))
    assert all(set(body) == {"content"} and len(body["content"]) <= 2000 for body in hooks.bodies("/discord"))
    assert "flaky crashed" in hooks.bodies("/slack")[0]["text"]
    assert manager.notifier.stats.failed == {}


async def test_events_that_happen_together_go_out_as_one_message(
    manager_factory: Factory, hooks: Hooks
) -> None:
    crashers = [config(f"c{n}", CRASH, max_retries=0) for n in range(5)]
    options = NotifierOptions(coalesce=1.0, attempts=2, first_retry=0.1)
    manager = manager_factory(
        *crashers, notify=(webhook(hooks.url + "/all", events=("failed",)),), notifier=options
    )
    await manager.start()
    await hooks.wait(lambda: len(events_in(hooks.bodies("/all"))) == 5, "five give-ups")
    assert len(hooks.bodies("/all")) < 5, "five processes failing together make fewer than five messages"
    assert sorted(events_in(hooks.bodies("/all"))) == [(f"c{n}", "failed") for n in range(5)]


async def test_a_failing_webhook_is_retried_then_counted(manager_factory: Factory, hooks: Hooks) -> None:
    hooks.fail = 2  # the first two tries get 503
    manager = manager_factory(
        config("once", CRASH, max_retries=0),
        notify=(webhook(hooks.url + "/retry", events=("failed",)), webhook("http://127.0.0.1:9/refused")),
        notifier=FAST,
    )
    await manager.start()
    await hooks.wait(lambda: bool(hooks.bodies("/retry")), "the delivery after two 503s")
    await wait_idle(manager)  # and the refused target has used up its tries
    stats = manager.notifier.stats
    assert stats.sent == {f"{hooks.url}/****": 1}
    assert stats.retried == {f"{hooks.url}/****": 2, "http://127.0.0.1:9/****": 2}
    assert stats.failed == {"http://127.0.0.1:9/****": 1}
    text = render_notify_metrics(stats)
    assert 'processman_notifications_failed_total{target="http://127.0.0.1:9/****"} 1' in text
    assert f'processman_notifications_sent_total{{target="{hooks.url}/****"}} 1' in text


async def test_a_command_gets_the_event_as_json_on_stdin(manager_factory: Factory, tmp_path: Path) -> None:
    out = tmp_path / "event.json"
    script = f"import sys, pathlib; pathlib.Path({str(out)!r}).write_text(sys.stdin.read())"
    target = NotifyTarget(kind="command", command=(sys.executable, "-c", script), events=("failed",))
    manager = manager_factory(config("once", CRASH, max_retries=0, notify=(target,)), notifier=FAST)
    await manager.start()
    for _ in range(400):
        if out.exists() and out.read_text():
            break
        await asyncio.sleep(0.05)
    body = json.loads(out.read_text())
    assert body["source"] == "processman" and [e["event"] for e in body["events"]] == ["failed"]
    assert body["events"][0]["process"] == "once"


RECOVERS = """
import pathlib, sys, time
marker = pathlib.Path({marker!r})
if not marker.exists():
    marker.write_text("crashed once")
    sys.exit(1)
print("up", flush=True)
time.sleep(3600)
"""


async def test_recovered_after_staying_up_for_min_uptime(
    manager_factory: Factory, hooks: Hooks, tmp_path: Path
) -> None:
    entry = config("phoenix", RECOVERS.format(marker=str(tmp_path / "marker")), backoff=0.1, min_uptime=0.5)
    manager = manager_factory(entry, notify=(webhook(hooks.url + "/r"),), notifier=FAST)
    await manager.start()
    await hooks.wait(lambda: ("phoenix", "recovered") in events_in(hooks.bodies("/r")), "recovered")
    assert events_in(hooks.bodies("/r")) == [("phoenix", "crashed"), ("phoenix", "recovered")]


async def test_a_restart_storm_is_told_once(manager_factory: Factory, hooks: Hooks) -> None:
    target = webhook(hooks.url + "/storm", events=("restartStorm",), storm_restarts=3, storm_window=60.0)
    failed = webhook(hooks.url + "/failed", events=("failed",))
    manager = manager_factory(
        config("loop", CRASH, backoff=0.05, max_retries=6), notify=(target, failed), notifier=FAST
    )
    await manager.start()
    await hooks.wait(lambda: bool(hooks.bodies("/storm")), "a restart storm")
    # Let the loop run to its give-up: the storm is told once, not at every exit after the third.
    await hooks.wait(lambda: bool(hooks.bodies("/failed")), "the give-up")
    await wait_idle(manager)  # everything queued before the give-up is delivered
    assert events_in(hooks.bodies("/storm")) == [("loop", "restartStorm")]
    event = hooks.bodies("/storm")[0]["events"][0]
    assert event["exits"] >= 3 and event["window"] == 60.0


async def test_a_memory_restart_is_told(manager_factory: Factory, hooks: Hooks) -> None:
    hog = "import time\nblob = bytearray(64 * 1024 * 1024)\nprint('holding', flush=True)\ntime.sleep(3600)"
    target = webhook(hooks.url + "/mem", events=("memoryRestart",))
    manager = manager_factory(
        config("hog", hog, max_memory=32 * 1024 * 1024), notify=(target,), notifier=FAST, metrics_interval=0.2
    )
    await manager.start()
    await hooks.wait(lambda: bool(hooks.bodies("/mem")), "a memoryRestart", timeout=30)
    event = hooks.bodies("/mem")[0]["events"][0]
    assert event["event"] == "memoryRestart" and "above maxMemory" in event["reason"]


async def test_a_webhook_that_never_answers_never_holds_the_engine(manager_factory: Factory) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(100)  # accepts connections, never reads: every POST hangs until its timeout
    port = silent.getsockname()[1]
    try:
        options = NotifierOptions(coalesce=0.05, attempts=1, timeout=30)
        manager = manager_factory(
            config("spin", CRASH, backoff=0.01, min_uptime=0.0),
            notify=(webhook(f"http://127.0.0.1:{port}/hang"),),
            notifier=options,
        )
        await manager.start()
        # Restarts go on at their own pace while the notification hangs.
        await wait_for_restarts(manager, "spin", 10)
    finally:
        silent.close()


def test_top_level_and_per_process_notify_are_read_from_the_object_form(tmp_path: Path) -> None:
    path = tmp_path / "pb_processes.json"
    path.write_text(
        json.dumps(
            {
                "processes": [
                    {"id": "web", "command": "true", "notify": [{"email": "web-team@example.com"}]},
                ],
                "notify": [
                    {"webhook": "https://hooks.slack.com/services/T0/B0/secret", "format": "slack"},
                    {"command": ["logger", "-t", "processman"], "events": ["failed"]},
                    {"webhook": "https://x.example/hook", "format": "teams"},
                ],
            }
        )
    )
    loaded = load_config(path)
    assert [t.kind for t in loaded.notify] == ["webhook", "command"]
    assert len(loaded.errors) == 1
    assert "notify[2].format" in str(loaded.errors[0]) and "target skipped" in str(loaded.errors[0])
    assert loaded.processes[0].notify[0].target == "web-team@example.com"
    assert repr(loaded.notify[0]) == "NotifyTarget(webhook='https://hooks.slack.com/****')"


async def wait_idle(manager: ProcessManager) -> None:
    async with asyncio.timeout(20):
        while manager.notifier.busy:
            await asyncio.sleep(0.05)


async def wait_for_restarts(manager: ProcessManager, process_id: str, count: int) -> None:
    from tests.conftest import wait_until

    await wait_until(
        manager, lambda: manager.state(process_id).restart_count >= count, 20, f"{count} restarts"
    )


async def test_metrics_count_notifications(manager_factory: Factory, hooks: Hooks) -> None:
    import httpx

    from processman.api import AdminToken
    from tests.api.conftest import TOKEN, serving

    manager = manager_factory(
        config("once", CRASH, max_retries=0),
        notify=(webhook(hooks.url + "/m", events=("failed",)),),
        notifier=FAST,
    )
    await manager.start()
    await hooks.wait(lambda: bool(hooks.bodies("/m")), "the give-up")
    await wait_idle(manager)
    async with (
        serving(manager, AdminToken(TOKEN)) as service,
        httpx.AsyncClient(base_url=service.url, headers={"Authorization": TOKEN}) as client,
    ):
        text = (await client.get("/api/pm/metrics")).text
    assert f'processman_notifications_sent_total{{target="{hooks.url}/****"}} 1' in text
    assert "processman_notifications_dropped_total 0" in text


async def test_changing_a_processs_targets_applies_without_a_restart(
    manager_factory: Factory, hooks: Hooks
) -> None:
    quiet = config("svc", "import time; time.sleep(3600)")
    manager = manager_factory(quiet, notifier=FAST)
    await manager.start()
    pid = manager.state("svc").pid
    target = webhook(hooks.url + "/new", events=("crashed",))
    plan = await manager.apply([dataclasses.replace(quiet, notify=(target,))])
    assert plan.unchanged == ("svc",) and manager.state("svc").pid == pid
    assert manager.state("svc").config.notify == (target,)


class SilentServer:
    """Accepts connections on 127.0.0.1 and never reads them: every POST hangs until its timeout."""

    def __init__(self) -> None:
        import socket

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(100)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/dead"

    def close(self) -> None:
        self.socket.close()


async def test_a_dead_webhook_never_holds_back_another_targets_notifications(
    manager_factory: Factory, tmp_path: Path
) -> None:
    out = tmp_path / "events.jsonl"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read().replace(chr(10), ' ') + chr(10))"
    command = NotifyTarget(kind="command", command=(sys.executable, "-c", script))
    dead = SilentServer()
    try:
        # The dead target holds each try for 30 s, twice: a minute in all.
        options = NotifierOptions(coalesce=0.2, attempts=2, first_retry=1.0, timeout=30, flush=0.5)
        # The crash goes out at once; the give-up comes a second later, while the dead target still hangs.
        manager = manager_factory(
            config("flaky", CRASH, max_retries=1, backoff=1.0),
            notify=(webhook(dead.url), command),
            notifier=options,
        )
        await manager.start()

        def told() -> list[tuple[str, str]]:
            lines = out.read_text().splitlines() if out.exists() else []
            return events_in([json.loads(line) for line in lines])

        for _ in range(200):  # 10 s, far less than the dead target's minute
            if ("flaky", "failed") in told():
                break
            await asyncio.sleep(0.05)
        assert ("flaky", "failed") in told(), f"the command heard only {told()}"
        assert manager.notifier.busy, "the dead target still tries"
    finally:
        dead.close()


async def test_a_crash_right_before_shutdown_is_still_delivered(
    manager_factory: Factory, hooks: Hooks
) -> None:
    from processman.engine.states import Status
    from tests.conftest import wait_until

    hooks.fail = 1  # the first try fails: the delivery is retried during the shutdown
    options = NotifierOptions(coalesce=1.0, attempts=3, first_retry=0.2, timeout=5)
    manager = manager_factory(
        config("once", CRASH, max_retries=0),
        notify=(webhook(hooks.url + "/bye", events=("failed",)),),
        notifier=options,
    )
    await manager.start()
    await wait_until(manager, lambda: manager.state("once").status is Status.FAILED, 10, "the give-up")
    await manager.close()  # inside the coalescing window: nothing has been sent yet
    assert events_in(hooks.bodies("/bye")) == [("once", "failed")]


async def test_a_dead_target_drops_and_counts_instead_of_piling_up(manager_factory: Factory) -> None:
    from tests.conftest import wait_until

    dead = SilentServer()
    try:
        options = NotifierOptions(coalesce=0.05, attempts=1, timeout=30, max_pending=3, flush=0.2)
        manager = manager_factory(
            config("spin", CRASH, backoff=0.01, min_uptime=0.0),
            notify=(webhook(dead.url, events=("crashed",)),),
            notifier=options,
        )
        await manager.start()
        await wait_until(manager, lambda: manager.notifier.stats.dropped >= 5, 20, "crashes dropped")
        lanes = [task for task in asyncio.all_tasks() if task.get_name().startswith("notify ")]
        assert len(lanes) == 1, "one delivery task for the one target, however many crashes wait"
    finally:
        dead.close()


async def test_a_failed_or_timed_out_run_of_a_job_is_told_as_run_failed(
    manager_factory: Factory, hooks: Hooks
) -> None:
    from processman.config import Schedule

    first = Schedule(every=3600.0, run_on_start=True)
    manager = manager_factory(
        config("nightly", CRASH, schedule=first, max_retries=1, backoff=0.1),
        config("stuck", "import time; time.sleep(60)", schedule=first, timeout=0.2),
        notify=(webhook(hooks.url + "/jobs"),),
        notifier=FAST,
    )
    await manager.start()

    def told() -> list[tuple[str, str]]:
        return events_in(hooks.bodies("/jobs"))

    await hooks.wait(lambda: told().count(("nightly", "runFailed")) == 2, "both attempts of nightly")
    await hooks.wait(lambda: ("stuck", "runFailed") in told(), "the timed out run")
    events = [event for body in hooks.bodies("/jobs") for event in body["events"]]
    nightly = [event for event in events if event["process"] == "nightly"]
    assert [event["run"] for event in nightly] == [1, 2] and nightly[1]["trigger"] == "crash"
    assert nightly[0]["exitCode"] == 3 and nightly[0]["lastLines"][-1] == "about to fail"
    assert nightly[0]["message"].startswith("nightly: run 1 failed: exited with code 3")
    stuck = next(event for event in events if event["process"] == "stuck")
    assert stuck["outcome"] == "timed out" and "timed out after 200ms" in stuck["message"]
    # A job waiting to retry a run is not a crashed service: no "crashed" besides runFailed.
    assert ("nightly", "crashed") not in told()
