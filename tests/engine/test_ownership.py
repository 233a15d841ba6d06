"""The per-process core: one owner of each process's state, all-or-nothing spawns, stops that finish
whoever stops waiting for them, backoff on an injected clock, and faults that surface at once."""

from __future__ import annotations

import ast
import asyncio
import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from processman import ProcessConfig, ProcessManager, Status
from processman.config import Probe
from processman.engine import backend, policy
from processman.engine.events import Event, LogLines, StatusChanged
from processman.engine.states import Desired
from tests.conftest import alive, config, tagged_processes, wait_until
from tests.engine.clock import ManualClock, settle

Factory = Callable[..., ProcessManager]
SLEEPER = "import time\nwhile True: time.sleep(1)"
CRASHER = "import sys\nsys.exit(3)"
STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("up", flush=True)
while True:
    time.sleep(1)
"""
ENGINE = Path(__file__).resolve().parents[2] / "src" / "processman" / "engine"


# ---- A3: all-or-nothing spawn ----------------------------------------------------------------------


async def test_a_spawn_that_fails_after_the_fork_leaves_nothing_running(
    manager_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    chosen = backend.current()

    class OutOfDescriptors:
        """The backend as spawn sees it, but the first child's exit watch fails as if the descriptor
        table were full (no pidfd left; the guardian's own watch, made elsewhere, is not affected)."""

        def __getattr__(self, name: str) -> object:
            return getattr(chosen, name)

        @staticmethod
        def watch(pid: int, callback: Callable[[], None], *, child: bool = False) -> backend.Watch:
            calls.append(pid)
            if len(calls) == 1:
                raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
            return chosen.watch(pid, callback, child=child)

    class Backends:
        @staticmethod
        def current() -> object:
            return OutOfDescriptors()

    monkeypatch.setattr("processman.engine.spawn.backend", Backends())
    manager = manager_factory(config("web", SLEEPER, backoff=60))
    await manager.start()
    first = calls[0]
    await wait_until(manager, lambda: manager.state("web").status is Status.CRASHED, what="the failure")
    state = manager.state("web")
    assert "Too many open files" in state.last_error and state.pid == 0
    assert not alive(first), "the half-made child was left running"
    await manager.close()  # no stale OSError
    assert tagged_processes(f"{manager.run_id}:") == []


# ---- A4: a stop that finishes ----------------------------------------------------------------------


async def test_a_cancelled_close_still_stops_the_tree_and_a_second_close_completes(
    manager_factory: Factory,
) -> None:
    manager = manager_factory(config("stubborn", STUBBORN, stop_timeout=1.0))
    await manager.start()
    await wait_until(manager, lambda: len(manager.logs("stubborn")) >= 1, what="the child's first line")
    pid = manager.state("stubborn").pid
    closing = asyncio.create_task(manager.close())
    await wait_until(manager, lambda: manager.state("stubborn").status is Status.STOPPING, what="stopping")
    closing.cancel()  # part-way through the ladder: SIGTERM was ignored, SIGKILL not sent yet
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert alive(pid)
    await manager.close()
    assert not alive(pid)
    assert manager.state("stubborn").status is Status.STOPPED
    assert tagged_processes(f"{manager.run_id}:") == []


async def test_a_cancelled_stop_is_finished_by_the_process_itself(manager_factory: Factory) -> None:
    manager = manager_factory(config("stubborn", STUBBORN, stop_timeout=0.5))
    await manager.start()
    await wait_until(manager, lambda: len(manager.logs("stubborn")) >= 1, what="the child's first line")
    pid = manager.state("stubborn").pid
    stopping = asyncio.create_task(manager.stop_process("stubborn"))
    await wait_until(manager, lambda: manager.state("stubborn").status is Status.STOPPING, what="stopping")
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    await wait_until(manager, lambda: manager.state("stubborn").status is Status.STOPPED, what="stopped")
    assert not alive(pid)


# ---- A5: the supervise loop on an injected clock ---------------------------------------------------


async def test_backoff_doubles_on_the_injected_clock_without_real_waiting(manager_factory: Factory) -> None:
    clock = ManualClock()
    # No resource sampler: its pause would be among the clock's deadlines.
    manager = manager_factory(
        config("crash", CRASHER, backoff=10.0, max_retries=2), clock=clock, metrics_interval=0
    )
    starts: list[float] = []
    manager.add_listener(
        lambda e: (
            starts.append(clock.now)
            if isinstance(e, StatusChanged) and e.status is Status.STARTING and e.previous is not e.status
            else None
        )
    )
    await manager.start()
    for delay in (10.0, 20.0):
        await wait_until(manager, lambda: clock.deadlines() != [], what="a backoff wait")
        assert clock.deadlines() == [delay]
        assert manager.state("crash").status is Status.CRASHED
        clock.advance(delay - 0.001)
        await settle()
        assert len(starts) == (1 if delay == 10.0 else 2), "restarted before its backoff was over"
        clock.advance(0.001)
        await wait_until(manager, lambda: manager.state("crash").status is not Status.CRASHED, what="start")
    await wait_until(manager, lambda: manager.state("crash").status is Status.FAILED, what="give up")
    assert starts == [1000.0, 1010.0, 1030.0]
    assert "gave up after 3 consecutive failed starts" in manager.state("crash").last_error


async def test_nothing_restarts_a_process_stopped_during_its_backoff(manager_factory: Factory) -> None:
    clock = ManualClock()
    # No resource sampler: its pause would be among the clock's deadlines.
    manager = manager_factory(config("crash", CRASHER, backoff=5.0), clock=clock, metrics_interval=0)
    await manager.start()
    await wait_until(manager, lambda: clock.deadlines() != [], what="a backoff wait")
    await manager.stop_process("crash")
    clock.advance(3600)
    await settle()
    state = manager.state("crash")
    assert state.status is Status.STOPPED and state.pid == 0 and state.restart_count == 0


def test_the_decision_after_a_run_follows_the_restart_policy() -> None:
    run = policy.Outcome(spawned=True, reason="exited with code 0", code=0, uptime=1.0)
    one_shot = ProcessConfig(id="migrate", command="true", restart="on-failure")
    assert policy.decide(one_shot, run, 0).action is policy.Action.FINISH
    keep_alive = ProcessConfig(id="web", command="true", backoff=2.0, max_retries=1, min_uptime=5.0)
    assert policy.decide(keep_alive, run, 0) == policy.Decision(policy.Action.RESTART, 1, 2.0)
    assert policy.decide(keep_alive, run, 1).action is policy.Action.GIVE_UP
    healthy = policy.Outcome(spawned=True, reason="exited with code 1", code=1, uptime=60.0)
    assert policy.decide(keep_alive, healthy, 1) == policy.Decision(policy.Action.RESTART, 0, 0.0)
    unstartable = policy.Outcome(spawned=False, reason="cannot start")
    assert policy.decide(one_shot, unstartable, 0).action is policy.Action.RESTART


# ---- A1: one owner, every change an event, no import cycle -----------------------------------------


async def test_every_change_of_the_last_error_is_published(manager_factory: Factory, free_tcp: Probe) -> None:
    manager = manager_factory(
        config("db", SLEEPER, readiness=free_tcp),
        config("app", SLEEPER, depends_on={"db": "healthy"}),
    )
    published: list[tuple[str, str]] = []

    def record(event: Event) -> None:
        if isinstance(event, StatusChanged):
            published.append((event.process_id, event.last_error))

    manager.add_listener(record)
    await manager.start()
    await wait_until(
        manager, lambda: manager.state("db").last_error.startswith("not ready yet"), what="db waiting"
    )
    for process_id in ("db", "app"):
        shown = manager.state(process_id).last_error
        assert shown and (process_id, shown) in published, (process_id, shown, published)


@pytest.fixture
def free_tcp() -> Probe:
    from tests.conftest import free_port

    return Probe("tcp", f"127.0.0.1:{free_port()}", interval=0.05)


def test_health_and_dependencies_do_not_import_the_process_module() -> None:
    for name in ("health.py", "dependencies.py", "policy.py", "spawn.py"):
        tree = ast.parse((ENGINE / name).read_text())
        imported = {
            node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        }
        assert "processman.engine.process" not in imported, name


# ---- A2: a task that dies surfaces at once ----------------------------------------------------------


async def test_a_failing_health_task_shows_in_last_error_at_once(
    manager_factory: Factory, free_tcp: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = manager_factory(config("web", SLEEPER, readiness=free_tcp))

    async def broken(*args: object) -> str | None:
        raise RuntimeError("probe machinery broke")

    monkeypatch.setattr(manager._context.prober, "run", broken)
    await manager.start()
    await wait_until(
        manager, lambda: "probe machinery broke" in manager.state("web").last_error, what="the fault"
    )
    assert alive(manager.state("web").pid)


async def test_a_fault_of_the_supervise_loop_stops_the_tree_and_says_so(
    manager_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> policy.Decision:
        raise RuntimeError("decision machinery broke")

    monkeypatch.setattr("processman.engine.process.decide", broken)
    grandchild = "import subprocess, sys, time\nsubprocess.Popen(['sleep', '600'])\nsys.exit(1)"
    manager = manager_factory(config("web", grandchild))
    await manager.start()
    await wait_until(manager, lambda: manager.state("web").status is Status.FAILED, what="the fault")
    assert "decision machinery broke" in manager.state("web").last_error
    assert tagged_processes(f"{manager.run_id}:") == []
    # The process is not lost: a start runs it again.
    monkeypatch.undo()
    await manager.start_process("web")
    await wait_until(manager, lambda: manager.state("web").restart_count >= 1, what="a restart")


# ---- B8: a full disk is visible --------------------------------------------------------------------


async def test_a_log_file_that_cannot_be_written_shows_in_the_state(
    manager_factory: Factory, tmp_path: Path
) -> None:
    logs = tmp_path / "state" / "logs"
    logs.mkdir(parents=True)
    (logs / "chatty.out.log").symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    manager = manager_factory(
        config("chatty", "import time\nwhile True:\n print('x' * 100)\n time.sleep(0.05)")
    )
    await manager.start()
    await wait_until(manager, lambda: manager.state("chatty").log_dropped_bytes > 0, what="dropped bytes")
    state = manager.state("chatty")
    assert "No space left on device" in state.log_error and str(logs / "chatty.out.log") in state.log_error
    assert state.last_error == state.log_error
    assert any(line.stream == "system" and "No space left" in line.content for line in manager.logs("chatty"))


# ---- B9: processman's own notes are not the child's errors -----------------------------------------


async def test_notes_of_the_manager_are_the_system_stream(manager_factory: Factory) -> None:
    manager = manager_factory(config("web", SLEEPER))
    seen: list[LogLines] = []
    manager.add_listener(lambda e: seen.append(e) if isinstance(e, LogLines) else None)
    await manager.start()
    await manager.restart_process("web")
    notes = [line for line in manager.logs("web") if "restarting: restart requested" in line.content]
    assert [line.stream for line in notes] == ["system"]
    assert notes[0].content == "restarting: restart requested"
    assert not [e for e in seen if e.stream == "stderr"]


# ---- B7: probe credentials are not shown -----------------------------------------------------------


async def test_a_failing_probe_command_is_shown_with_its_secrets_masked(manager_factory: Factory) -> None:
    liveness = Probe(
        "command", command=("false", "--password", "hunter2"), interval=0.05, failure_threshold=1
    )
    readiness = Probe("http", "http://admin:hunter2@127.0.0.1:9/health", interval=0.05)
    manager = manager_factory(
        config("live", SLEEPER, liveness=liveness, backoff=60), config("ready", SLEEPER, readiness=readiness)
    )
    await manager.start()
    await wait_until(manager, lambda: bool(manager.state("live").exits), what="the liveness restart")
    await wait_until(manager, lambda: manager.state("ready").last_error != "", what="not ready")
    shown = [manager.state(p).last_error for p in ("live", "ready")]
    shown += [record.reason for record in manager.state("live").exits]
    shown += [line.content for p in ("live", "ready") for line in manager.logs(p)]
    assert any("--password ****" in text for text in shown), shown
    assert not [text for text in shown if "hunter2" in text]


# ---- intents that must never be lost or hang a caller -----------------------------------------------


async def test_a_restart_while_waiting_for_dependencies_does_not_hold_up_close(
    manager_factory: Factory, free_tcp: Probe
) -> None:
    manager = manager_factory(
        config("db", SLEEPER, readiness=free_tcp), config("web", SLEEPER, depends_on={"db": "healthy"})
    )
    await manager.start()
    async with asyncio.timeout(10):
        await manager.restart_process("web")  # returns: the new start waits for db again
        await wait_until(
            manager, lambda: manager.state("web").last_error == "waiting for db (healthy)", what="waiting"
        )
        await manager.close()
    assert tagged_processes(f"{manager.run_id}:") == []


async def test_a_failing_event_listener_touches_no_other_process(manager_factory: Factory) -> None:
    manager = manager_factory(config("a", SLEEPER), config("b", SLEEPER))
    broken = False

    def listener(event: Event) -> None:
        if broken and isinstance(event, StatusChanged) and event.process_id == "a":
            raise RuntimeError("listener bug")

    manager.add_listener(listener)
    await manager.start()
    b = manager.state("b").pid
    broken = True
    await manager.stop_process("a")
    broken = False
    await manager.restart_process("a")  # the manager still runs
    assert manager.state("b").pid == b and alive(b) and not manager.state("b").exits


STUBBORN_GRANDCHILD = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('held', flush=True)\ntime.sleep(60)"
)
ONE_SHOT_WITH_STUBBORN_GRANDCHILD = f"""
import subprocess, sys
held = subprocess.Popen([sys.executable, "-c", {STUBBORN_GRANDCHILD!r}], stdout=subprocess.PIPE)
held.stdout.readline()  # it ignores SIGTERM from now on
print("done", flush=True)
"""


async def test_a_restart_during_the_clean_up_of_a_finished_run_is_not_lost(manager_factory: Factory) -> None:
    job = config("job", ONE_SHOT_WITH_STUBBORN_GRANDCHILD, restart="on-failure", stop_timeout=1.0)
    manager = manager_factory(job)
    await manager.start()
    await wait_until(manager, lambda: manager.state("job").status is Status.STOPPING, what="the clean-up")
    await manager.restart_process("job")
    await wait_until(manager, lambda: manager.state("job").restart_count == 1, what="the restart")
    await wait_until(manager, lambda: len(manager.state("job").exits) == 2, what="the second run", timeout=15)
    # Each run left its grandchild running: the reason says so (and that it was stopped).
    reasons = [record.reason for record in manager.state("job").exits]
    assert len(reasons) == 2
    assert all(
        reason.startswith("exited with code 0; its descendants were still running") for reason in reasons
    )


async def test_a_start_after_a_cancelled_stop_leaves_no_start_behind(manager_factory: Factory) -> None:
    crasher = f"""
import subprocess, sys
held = subprocess.Popen([sys.executable, "-c", {STUBBORN_GRANDCHILD!r}], stdout=subprocess.PIPE)
held.stdout.readline()  # it ignores SIGTERM from now on
sys.exit(1)
"""
    flaky = config("flaky", crasher, stop_timeout=1.0, max_retries=1, backoff=0.2)
    manager = manager_factory(flaky)
    process = manager._processes["flaky"]
    failed: list[StatusChanged] = []
    manager.add_listener(
        lambda e: (
            failed.append(e)
            if isinstance(e, StatusChanged) and e.status is Status.FAILED and e.previous is not e.status
            else None
        )
    )
    await manager.start()
    # Crashed, and its grandchild (deaf to SIGTERM) is being cleared: a stop comes, and is cancelled.
    await wait_until(manager, lambda: manager.state("flaky").status is Status.CRASHED, what="the crash")
    stopping = asyncio.create_task(manager.stop_process("flaky"))
    await wait_until(manager, lambda: process.desired is Desired.STOPPED, what="the stop posted")
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    await manager.start_process("flaky")
    await wait_until(
        manager, lambda: manager.state("flaky").status is Status.FAILED, what="give up", timeout=20
    )
    # A start left over would begin at once and give up again: nothing may move for a while.
    with pytest.raises(AssertionError, match="timed out"):
        await wait_until(manager, lambda: len(failed) > 1, timeout=2.0)


async def test_a_process_registered_on_a_running_manager_starts_at_once(manager_factory: Factory) -> None:
    manager = manager_factory()
    await manager.start()
    manager.register(config("late", SLEEPER))
    await manager.start_process("late")
    assert manager.state("late").status is Status.RUNNING


async def test_a_start_after_a_cancelled_close_waits_for_the_close_then_runs(
    manager_factory: Factory,
) -> None:
    manager = manager_factory(config("stubborn", STUBBORN, stop_timeout=0.5))
    await manager.start()

    # Only once it ignores SIGTERM does the close wait in "stopping" (a loaded machine may be slower).
    def up() -> bool:
        return any(line.content == "up" for line in manager.logs("stubborn"))

    await wait_until(manager, up, what="up")
    closing = asyncio.create_task(manager.close())
    await wait_until(manager, lambda: manager.state("stubborn").status is Status.STOPPING, what="stopping")
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await manager.start()
    assert manager.state("stubborn").status is Status.RUNNING
    await manager.restart_process("stubborn")
