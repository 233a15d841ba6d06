"""Seed User Stories 1 and 2, SPEC 2 lifecycle rules, and the SPEC 11 regressions, with real children."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from processman import ProcessAlreadyRunning, ProcessConfig, ProcessManager, ProcessNotFound, Status
from processman.api.wire import state_to_json
from processman.engine.events import StatusChanged
from processman.engine.policy import backoff_delay
from processman.environment import PocketBaseInfo
from tests.conftest import alive, config, tagged_processes, wait_for_path, wait_until

Factory = Callable[..., ProcessManager]
SLEEPER = "import time\nwhile True: time.sleep(1)"
CRASHER = "import sys\nsys.exit(3)"


def test_backoff_sequence_matches_spec() -> None:
    # US2 scenarios 2 and 3: 1s, 2s, 4s, 8s, 16s, then capped at 30s; 0 after a healthy run.
    assert [backoff_delay(1.0, n) for n in range(0, 9)] == [0, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff_delay(0.5, 3) == 2.0
    assert backoff_delay(1.0, 10_000) == 30.0


async def test_processes_start_with_the_manager_and_pids_are_recorded(manager_factory: Factory) -> None:
    # US1 scenario 1.
    manager = manager_factory(config("a", SLEEPER), config("b", SLEEPER))
    await manager.start()
    states = manager.states()
    assert [s.id for s in states] == ["a", "b"]  # config order
    assert all(s.status is Status.RUNNING and alive(s.pid) for s in states)
    assert state_to_json(states[0])["startTime"].endswith("Z")


async def test_stopping_the_manager_stops_every_process(manager_factory: Factory) -> None:
    # US1 scenario 2.
    manager = manager_factory(config("a", SLEEPER), config("b", SLEEPER))
    await manager.start()
    pids = [s.pid for s in manager.states()]
    await manager.close()
    assert not any(alive(pid) for pid in pids)
    assert all(s.status is Status.STOPPED and s.pid == 0 for s in manager.states())


async def test_a_process_that_exits_is_started_again(manager_factory: Factory) -> None:
    # US1 scenario 3: keep-alive, whatever the exit code (0 included).
    manager = manager_factory(config("once", "print('bye')", backoff=0.05))
    await manager.start()
    await wait_until(manager, lambda: manager.state("once").restart_count >= 2, what="two restarts")
    assert manager.state("once").last_error.startswith("exited with code 0")


async def test_backoff_grows_between_consecutive_failures(manager_factory: Factory) -> None:
    # US2 scenario 2 with a short base: starts are spaced 0 (first), 50, 100, 200 ms.
    manager = manager_factory(config("crash", CRASHER, backoff=0.05, max_retries=3))
    starts: list[float] = []
    manager.add_listener(
        lambda e: (
            starts.append(time.monotonic())
            if isinstance(e, StatusChanged) and e.status is Status.STARTING and e.previous is not e.status
            else None
        )
    )
    await manager.start()
    await wait_until(manager, lambda: manager.state("crash").status is Status.FAILED, what="failed")
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(gaps) == 3
    # Each wait is at least backoff * 2^(n-1); the child's own run time adds to it, so no upper bound.
    for gap, delay in zip(gaps, (0.05, 0.1, 0.2), strict=True):
        assert gap >= delay


async def test_a_healthy_run_resets_the_failure_count(manager_factory: Factory) -> None:
    # US2 scenario 1, with minUptime shortened from 10s: a run longer than it is healthy, so the next
    # restart is immediate and maxRetries=0 never gives up.
    code = "import time, sys\ntime.sleep(0.3)\nsys.exit(1)"
    manager = manager_factory(config("steady", code, backoff=5.0, min_uptime=0.2, max_retries=0))
    await manager.start()
    await wait_until(manager, lambda: manager.state("steady").restart_count >= 2, timeout=5, what="restarts")
    assert manager.state("steady").status is not Status.FAILED


async def test_gives_up_after_max_retries_and_start_clears_it(manager_factory: Factory) -> None:
    manager = manager_factory(config("crash", CRASHER, backoff=0.01, max_retries=2))
    await manager.start()
    await wait_until(manager, lambda: manager.state("crash").status is Status.FAILED, what="failed")
    state = manager.state("crash")
    assert state.restart_count == 2
    assert "gave up after 3 consecutive failed starts (maxRetries is 2)" in state.last_error
    assert "exited with code 3" in state.last_error
    await manager.start_process("crash")
    assert manager.state("crash").status in (Status.RUNNING, Status.CRASHED, Status.STARTING)
    assert "gave up" not in manager.state("crash").last_error


async def test_max_retries_zero_means_no_retry_and_minus_one_never_gives_up(manager_factory: Factory) -> None:
    zero = config("zero", CRASHER, backoff=0.01, max_retries=0)
    forever = config("forever", CRASHER, backoff=0.001)
    manager = manager_factory(zero, forever)
    await manager.start()
    await wait_until(manager, lambda: manager.state("zero").status is Status.FAILED, what="zero failed")
    assert manager.state("zero").restart_count == 0
    await wait_until(manager, lambda: manager.state("forever").restart_count >= 6, what="six restarts")
    assert manager.state("forever").status is not Status.FAILED


async def test_stop_is_not_undone_by_the_supervise_loop(manager_factory: Factory) -> None:
    # SPEC 11: the seed's loop restarted a stopped process.
    manager = manager_factory(config("a", SLEEPER))
    await manager.start()
    await manager.stop_process("a")
    await asyncio.sleep(0.2)  # several backoff periods: nothing may restart it
    state = manager.state("a")
    assert state.status is Status.STOPPED and state.pid == 0


async def test_stop_during_backoff_stays_stopped(manager_factory: Factory) -> None:
    manager = manager_factory(config("crash", CRASHER, backoff=0.3))
    await manager.start()
    await wait_until(manager, lambda: manager.state("crash").status is Status.CRASHED, what="crashed")
    await manager.stop_process("crash")
    await asyncio.sleep(0.5)
    assert manager.state("crash").status is Status.STOPPED


async def test_second_start_during_backoff_does_not_duplicate(
    manager_factory: Factory, tmp_path: Path
) -> None:
    # SPEC 11: the seed spawned a second supervisor. Here start during backoff starts at once, once.
    marker = tmp_path / "runs"
    code = f"import time\nopen({str(marker)!r}, 'a').write('x')\ntime.sleep(0.1)\nraise SystemExit(1)"
    manager = manager_factory(config("flaky", code, backoff=10.0))
    await manager.start()
    await wait_until(manager, lambda: manager.state("flaky").status is Status.CRASHED, what="crashed")
    results = await asyncio.gather(
        manager.start_process("flaky"), manager.start_process("flaky"), return_exceptions=True
    )
    assert [type(r) for r in results] == [type(None), ProcessAlreadyRunning]
    await wait_until(manager, lambda: manager.state("flaky").status is Status.CRASHED, what="crashed again")
    assert marker.read_text() == "xx"  # one more run, no parallel duplicate
    assert len(tagged_processes(f"{manager.run_id}:flaky")) == 0


async def test_start_when_running_is_refused_and_unknown_ids_raise(manager_factory: Factory) -> None:
    manager = manager_factory(config("a", SLEEPER))
    await manager.start()
    with pytest.raises(ProcessAlreadyRunning):
        await manager.start_process("a")
    with pytest.raises(ProcessNotFound):
        await manager.restart_process("nope")
    with pytest.raises(ProcessNotFound):
        manager.state("nope")


async def test_user_restarts_never_count_as_failures(manager_factory: Factory) -> None:
    # SPEC 11: with maxRetries 0, restarting by hand many times must not give up.
    manager = manager_factory(config("a", SLEEPER, max_retries=0))
    await manager.start()
    pids = {manager.state("a").pid}
    for _ in range(3):
        await manager.restart_process("a")
        pids.add(manager.state("a").pid)
    state = manager.state("a")
    assert state.status is Status.RUNNING
    assert state.restart_count == 3
    assert len(pids) == 4 and sum(alive(pid) for pid in pids) == 1


async def test_stop_escalates_to_sigkill_for_a_child_that_ignores_sigterm(manager_factory: Factory) -> None:
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready')\ntime.sleep(60)"
    )
    manager = manager_factory(config("stubborn", code, stop_timeout=0.3))
    await manager.start()
    await wait_until(manager, lambda: bool(manager.logs("stubborn")), what="ready")
    pid = manager.state("stubborn").pid
    started = time.monotonic()
    await manager.stop_process("stubborn")
    assert time.monotonic() - started >= 0.3
    assert not alive(pid)
    notes = [line.content for line in manager.logs("stubborn")]
    assert any("sending SIGKILL" in note for note in notes)
    exit_record = manager.state("stubborn").exits[-1]
    assert exit_record.signal == signal.SIGKILL


async def test_missing_executable_and_missing_cwd_say_why(manager_factory: Factory, tmp_path: Path) -> None:
    manager = manager_factory(
        ProcessConfig(id="ghost", command="no-such-program-xyz", backoff=0.01, max_retries=0),
        ProcessConfig(id="nowhere", command="true", cwd=tmp_path / "missing", backoff=0.01, max_retries=0),
        config("fine", SLEEPER),
    )
    await manager.start()
    await wait_until(
        manager,
        lambda: all(manager.state(i).status is Status.FAILED for i in ("ghost", "nowhere")),
        what="both failed",
    )
    assert "command 'no-such-program-xyz' not found" in manager.state("ghost").last_error
    assert f"working directory {tmp_path / 'missing'} does not exist" in manager.state("nowhere").last_error
    assert manager.state("fine").status is Status.RUNNING


async def test_environment_templating_pocketbase_variables_and_unbuffered(
    manager_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PM_TEST_HOST", "db.local")
    monkeypatch.setenv("PROCESSMAN_TOKEN", "admin-token-not-for-children")
    out = tmp_path / "env.txt"
    code = (
        "import os\n"
        f"open({str(out)!r}, 'w').write('|'.join(os.environ.get(k, '-') for k in "
        "('URL', 'PB_PORT', 'PB_URL', 'PB_DATA_DIR', 'PYTHONUNBUFFERED', 'MISSING', 'PROCESSMAN_TOKEN')))\n"
        "import time\ntime.sleep(30)"
    )
    env = {"URL": "http://${PM_TEST_HOST}:$PB_NOPE/$$x", "MISSING": "${NOT_DEFINED_ANYWHERE}"}
    pocketbase = PocketBaseInfo.from_address("0.0.0.0:8099", "/srv/pb_data")
    manager = manager_factory(config("env", code, env=env), pocketbase=pocketbase)
    await manager.start()
    text = await wait_for_path(out)
    assert text == "http://db.local:/$x|8099|http://127.0.0.1:8099|/srv/pb_data|1||-"  # no admin token


async def test_script_runs_through_the_detected_virtualenv(manager_factory: Factory, tmp_path: Path) -> None:
    # US3 scenario 1 end to end: the .venv python is used, and shown in the reported config.
    venv_python = tmp_path / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)
    out = tmp_path / "exe.txt"
    (tmp_path / "agent.py").write_text(f"import sys, time\nopen({str(out)!r}, 'w').write(sys.executable)\n")
    manager = manager_factory(ProcessConfig(id="agent", script="agent.py", cwd=tmp_path, backoff=5.0))
    await manager.start()
    assert await wait_for_path(out) == str(venv_python)
    assert state_to_json(manager.state("agent"))["config"]["interpreter"] == str(venv_python)


async def test_secrets_are_masked_in_the_reported_config(manager_factory: Factory) -> None:
    env = {"OPENAI_API_KEY": "sk-1", "db_password": "p", "AUTH_HEADER": "a", "PB_PORT": "8090"}
    manager = manager_factory(config("a", SLEEPER, env=env))
    reported = state_to_json(manager.state("a"))["config"]["env"]
    assert reported == {
        "OPENAI_API_KEY": "****",
        "db_password": "****",
        "AUTH_HEADER": "****",
        "PB_PORT": "8090",
    }


async def test_restart_count_counts_crash_and_user_restarts(manager_factory: Factory) -> None:
    manager = manager_factory(config("a", "import time\ntime.sleep(0.2)", backoff=0.01, min_uptime=0.1))
    await manager.start()
    await wait_until(manager, lambda: manager.state("a").restart_count >= 1, what="a crash restart")
    before = manager.state("a").restart_count
    await manager.restart_process("a")
    assert manager.state("a").restart_count == before + 1


async def test_restart_on_failure_runs_a_one_shot_task_once(manager_factory: Factory, tmp_path: Path) -> None:
    marker = tmp_path / "migrated"
    migrate = config("migrate", f"open({str(marker)!r}, 'a').write('x')", restart="on-failure")
    app = config("app", SLEEPER, depends_on={"migrate": "completed"})
    manager = manager_factory(migrate, app)
    await manager.start()
    await wait_until(manager, lambda: manager.state("app").status is Status.RUNNING, what="app running")
    await wait_until(
        manager, lambda: manager.state("migrate").status is Status.COMPLETED, what="migrate done"
    )
    state = manager.state("migrate")
    assert (state.status, state.restart_count, state.last_error) == (Status.COMPLETED, 0, "")
    await asyncio.sleep(0.2)  # several backoff periods: it is not started again
    assert marker.read_text() == "x"


async def test_restart_on_failure_still_restarts_failures_and_never_does_not(
    manager_factory: Factory,
) -> None:
    manager = manager_factory(
        config("retry", CRASHER, restart="on-failure", max_retries=1),
        config("once", CRASHER, restart="never"),
    )
    await manager.start()
    await wait_until(manager, lambda: manager.state("retry").status is Status.FAILED, what="retry failed")
    assert manager.state("retry").restart_count == 1
    # A one-shot task that ended unsuccessfully and is not restarted has failed.
    await wait_until(manager, lambda: manager.state("once").status is Status.FAILED, what="once failed")
    once = manager.state("once")
    assert once.restart_count == 0 and once.last_error.startswith("exited with code 3")


async def test_start_during_crash_cleanup_waits_for_the_new_run(manager_factory: Factory) -> None:
    # The crashed child leaves a SIGTERM-deaf grandchild: cleanup lasts stopTimeout while the status is
    # already crashed. A start then returns only once the new run is up; a second one is refused.
    code = """
    import signal, subprocess, sys, time
    deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    subprocess.Popen([sys.executable, "-c", deaf])
    time.sleep(0.3)
    sys.exit(1)
    """
    manager = manager_factory(config("leaver", textwrap.dedent(code), backoff=30.0, stop_timeout=0.5))
    await manager.start()
    first_pid = manager.state("leaver").pid
    await wait_until(manager, lambda: manager.state("leaver").status is Status.CRASHED, what="crashed")
    results = await asyncio.gather(
        manager.start_process("leaver"), manager.start_process("leaver"), return_exceptions=True
    )
    assert [type(r) for r in results] == [type(None), ProcessAlreadyRunning]
    state = manager.state("leaver")
    assert state.status is Status.RUNNING and state.pid not in (0, first_pid)
