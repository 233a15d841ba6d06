"""The run file: a live manager on the same state folder is refused, and what a previous run left is
cleaned up only when its pid *and* start time still match."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from processman import ProcessManager, Status
from processman.engine.leftovers import RUN_FILE, RunFile, _start_time, clean_up_previous_run
from processman.engine.posix import TagScanner
from processman.errors import AlreadyRunningElsewhere
from tests.conftest import alive, config, wait_gone, wait_until


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "600"])
    yield process
    process.kill()
    process.wait()


def test_start_time_is_psutils_create_time(sleeper: subprocess.Popen[bytes]) -> None:
    started = _start_time(sleeper.pid)
    assert started is not None and abs(started - psutil.Process(sleeper.pid).create_time()) < 0.01
    assert _start_time(2**22 + 1) is None  # above pid_max: never a process


def test_a_live_manager_on_the_same_folder_is_refused(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    previous = {"runId": "old", "pid": sleeper.pid, "startTime": _start_time(sleeper.pid), "children": []}
    (tmp_path / RUN_FILE).write_text(json.dumps(previous))
    with pytest.raises(AlreadyRunningElsewhere, match=f"pid {sleeper.pid}"):
        RunFile(tmp_path, "new").claim()


def test_a_recycled_manager_pid_is_not_a_live_manager(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    started = _start_time(sleeper.pid)
    assert started is not None
    previous = {"runId": "old", "pid": sleeper.pid, "startTime": started - 60, "children": []}
    (tmp_path / RUN_FILE).write_text(json.dumps(previous))
    assert RunFile(tmp_path, "new").claim() == previous
    assert json.loads((tmp_path / RUN_FILE).read_text())["runId"] == "new"


async def test_a_recorded_child_is_cleaned_up_only_when_its_start_time_matches(
    sleeper: subprocess.Popen[bytes],
) -> None:
    started = _start_time(sleeper.pid)
    assert started is not None
    recycled = {"runId": "old-run", "children": [[sleeper.pid, started - 60]]}
    assert await clean_up_previous_run(recycled, TagScanner()) == 0
    assert alive(sleeper.pid)
    left = {"runId": "old-run", "children": [[sleeper.pid, started]]}
    assert await clean_up_previous_run(left, TagScanner()) == 1
    sleeper.wait(timeout=5)  # reaped here: it is this test's child
    assert await wait_gone([sleeper.pid]) == []


LIVE = os.getppid()  # a live process that is no manager: its start time is read and compared
DAMAGED = {
    "start time null": json.dumps({"runId": "old", "pid": LIVE, "startTime": None}),
    "start time text": json.dumps({"runId": "old", "pid": LIVE, "startTime": "x"}),
    "start time object": json.dumps({"runId": "old", "pid": LIVE, "startTime": {}}),
    "children a number": json.dumps({"runId": "old", "children": 5}),
    "children an object": json.dumps({"runId": "old", "children": {"1": 2}}),
    "child start time null": json.dumps({"runId": "old", "children": [[LIVE, None]]}),
    "child start time text": json.dumps({"runId": "old", "children": [[LIVE, "x"], 7, [True, 1.0]]}),
    "child pid huge": json.dumps({"runId": "old", "children": [[2**80, 1.0], [-1, 1.0]]}),
    "run id a number": json.dumps({"runId": 5, "pid": "1"}),
    "an array": "[1, 2]",
    "truncated": '{"runId": "old", "chi',
    "deeply nested": "[" * 100_000 + "]" * 100_000,
    "not UTF-8": '{"runId": "\xff"}',
}


@pytest.mark.parametrize("damage", list(DAMAGED))
async def test_a_damaged_run_file_is_ignored_with_a_warning(
    manager_factory: Callable[..., ProcessManager],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / RUN_FILE).write_bytes(DAMAGED[damage].encode("latin-1"))
    manager = manager_factory(config("a", "import time\ntime.sleep(600)"), state_dir=state)
    with caplog.at_level(logging.WARNING, logger="processman"):
        await manager.start()
    await wait_until(manager, lambda: manager.state("a").status is Status.RUNNING, what="a running")
    assert alive(manager.state("a").pid)
    assert any(str(state / RUN_FILE) in record.getMessage() for record in caplog.records), damage
    assert json.loads((state / RUN_FILE).read_text())["runId"] == manager.run_id
