"""The supervisor's own machinery: its environment, noticing PocketBase going away, and the deadline
that bounds its stop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from processman import ProcessConfig, ProcessManager
from processman.pocketbase.parent import wait_for_parent_exit
from processman.pocketbase.supervisor import (
    STOP_MARGIN,
    HookEnvironment,
    StopDeadline,
    SupervisorRunner,
    SupervisorSetupError,
)
from processman.runner import ServeSettings

WATCHER = "import asyncio\nfrom processman.pocketbase.parent import wait_for_parent_exit\n" + (
    "print(asyncio.run(wait_for_parent_exit()), flush=True)"
)


def watcher() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WATCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_the_hook_environment_is_checked() -> None:
    hook = HookEnvironment.from_environ(
        {"PB_HTTP": "0.0.0.0:8090", "PB_DATA_DIR": "/srv/pb_data", "PM_SECRET": "s"}
    )
    assert hook.pocketbase.url == "http://127.0.0.1:8090"
    assert hook.pocketbase.port == 8090 and hook.pocketbase.data_dir == "/srv/pb_data"
    assert hook.state_dir == Path("/srv/pb_data/processman")
    assert "secret='****'" in repr(hook) and "'s'" not in repr(hook)
    with pytest.raises(SupervisorSetupError, match="PM_SECRET not set"):
        HookEnvironment.from_environ({"PB_HTTP": ":8090", "PB_DATA_DIR": "/srv"})
    with pytest.raises(SupervisorSetupError, match="PB_DATA_DIR: expected an absolute path, got 'pb_data'"):
        HookEnvironment.from_environ({"PB_HTTP": ":8090", "PB_DATA_DIR": "pb_data", "PM_SECRET": "s"})


def test_stop_on_the_pipe_means_a_planned_shutdown() -> None:
    with watcher() as child:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("stop\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "PocketBase is shutting down"


def test_end_of_file_on_the_pipe_means_pocketbase_died() -> None:
    with watcher() as child:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.close()
        assert child.stdout.readline().strip() == "PocketBase went away (the pipe it holds closed)"


async def test_the_parent_exiting_is_noticed_without_a_pipe() -> None:
    parent = await asyncio.create_subprocess_exec("sleep", "30")
    watching = asyncio.create_task(wait_for_parent_exit(watch_stdin=False, parent_pid=parent.pid))
    await asyncio.sleep(0.05)
    assert not watching.done()
    parent.kill()
    assert await asyncio.wait_for(watching, 2) == f"PocketBase (pid {parent.pid}) exited"
    await parent.wait()


def test_the_deadline_kills_then_exits_when_the_stop_hangs() -> None:
    stuck = subprocess.Popen(["sleep", "30"])
    exits: list[int] = []
    deadline = StopDeadline(stuck.kill, grace=0.1, exit=exits.append)
    started = time.monotonic()
    deadline.arm(0.2)
    deadline.arm(60)  # the first stop request sets the deadline
    stuck.wait(5)
    assert 0.2 <= time.monotonic() - started < 2
    while not exits and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert exits == [1] and deadline.expired


def test_a_stop_in_time_disarms_the_deadline() -> None:
    calls: list[str] = []
    deadline = StopDeadline(lambda: calls.append("kill"), grace=0.05, exit=lambda code: calls.append("exit"))
    deadline.arm(0.1)
    deadline.disarm()
    time.sleep(0.3)
    assert calls == [] and not deadline.expired


def test_the_stop_budget_is_the_longest_stop_timeout_plus_a_margin(tmp_path: Path) -> None:
    runner = SupervisorRunner(ServeSettings(tmp_path / "pb_processes.json", tmp_path))
    assert runner.stop_budget() == 10 + STOP_MARGIN  # no manager yet: the default stopTimeout
    runner.manager = ProcessManager(
        [
            ProcessConfig(id="a", command="true", stop_timeout=1.0),
            ProcessConfig(id="b", command="true", stop_timeout=25.0),
        ]
    )
    assert runner.stop_budget() == 25 + STOP_MARGIN


CRASHING_SUPERVISOR = """
import sys
from processman.pocketbase import supervisor

async def broken(self, *args, **kwargs):
    raise RuntimeError("a bug in the supervisor")

supervisor.SupervisorRunner.run = broken
sys.exit(supervisor.supervise({"PB_HTTP": "127.0.0.1:9", "PB_DATA_DIR": sys.argv[1], "PM_SECRET": "s"}))
"""


def test_an_internal_error_of_the_supervisor_is_written_to_its_log(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_SUPERVISOR, str(tmp_path)],
        stdin=subprocess.PIPE,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1, done.stderr
    log = (tmp_path / "processman" / "supervisor.log").read_text()
    assert "the supervisor stopped on an internal error" in log and "a bug in the supervisor" in log
