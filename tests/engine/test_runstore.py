"""The run history on disk: it survives a real restart of the manager, feeds a job's catch-up, stays
within keepRuns, never holds the engine up, and outlives a damaged file."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from processman import ProcessConfig, ProcessManager
from processman.config.schedule import Schedule
from processman.engine.runs import RunOutcome, Trigger
from processman.engine.runstore import FILE_NAME
from processman.engine.states import Status
from processman.errors import ProcessNotFound
from tests.conftest import config, wait_for, wait_until
from tests.engine.clock import ManualClock

Factory = Callable[..., ProcessManager]
TASK = "print('task done', flush=True)"


def task(**fields: Any) -> ProcessConfig:
    return config("task", TASK, restart="never", autostart=False, **fields)


def stored(state: Path, process_id: str = "task") -> list[tuple[int, str, str | None]]:
    """(number, trigger, outcome) of each run on disk, in number order."""
    with sqlite3.connect(state / FILE_NAME) as connection:
        rows = connection.execute(
            "SELECT number, trigger, outcome FROM runs WHERE process_id = ? ORDER BY number", (process_id,)
        ).fetchall()
    connection.close()
    return [(int(number), str(trigger), outcome) for number, trigger, outcome in rows]


async def run_to_end(manager: ProcessManager, process_id: str = "task") -> int:
    run = await manager.run_process(process_id)
    assert run is not None
    # Ended, and its leftovers cleared (a run asked for while they are is skipped).
    await wait_until(
        manager,
        lambda: (
            manager.runs(process_id)[0].outcome is not None
            and manager.state(process_id).status not in (Status.RUNNING, Status.STOPPING)
        ),
        what=f"run {run.number} ends",
    )
    return run.number


async def test_history_survives_a_manager_restart(manager_factory: Factory, tmp_path: Path) -> None:
    first = manager_factory(task())
    await first.start()
    assert await run_to_end(first) == 1
    assert await run_to_end(first) == 2
    await first.close()
    assert stored(tmp_path / "state") == [(1, "manual", "succeeded"), (2, "manual", "succeeded")]

    second = manager_factory(task())
    await second.start()
    assert [run.number for run in second.runs("task")] == [2, 1]
    exits = second.state("task").exits
    assert [record.returncode for record in exits] == [0, 0]
    assert "task done" in exits[-1].last_lines
    assert await run_to_end(second) == 3, "numbering goes on after the runs on record"
    await second.close()
    assert [number for number, _, _ in stored(tmp_path / "state")] == [1, 2, 3]


async def test_a_removed_process_keeps_its_history(manager_factory: Factory, tmp_path: Path) -> None:
    manager = manager_factory(task())
    await manager.start()
    await run_to_end(manager)
    await manager.apply([])
    assert [run.number for run in manager.runs("task")] == [1], "removed, its runs can still be read"
    with pytest.raises(ProcessNotFound):
        manager.runs("never-there")
    await manager.apply([task()])
    assert [run.number for run in manager.runs("task")] == [1]
    assert await run_to_end(manager) == 2, "put back, it goes on from its last run"
    await manager.close()
    assert [number for number, _, _ in stored(tmp_path / "state")] == [1, 2]


async def test_catch_up_after_a_real_restart(manager_factory: Factory) -> None:
    job = config(
        "task", TASK, autostart=False, schedule=Schedule(every=3600.0, catch_up=True)
    )  # hourly; the first manager runs it once by hand
    first = manager_factory(job)
    await first.start()
    await run_to_end(first)
    await first.close()

    # The next manager starts in 2027 (the manual clock): the hourly runs since were missed.
    clock = ManualClock()
    second = manager_factory(
        config("task", TASK, schedule=Schedule(every=3600.0, catch_up=True)), clock=clock
    )
    await second.start()
    await wait_until(second, lambda: len(second.runs("task")) == 2, what="the catch-up run")
    run = second.runs("task")[0]
    assert (run.number, run.trigger) == (2, Trigger.CATCH_UP)
    await wait_until(second, lambda: second.state("task").status is Status.SCHEDULED, what="scheduled again")
    assert second.runs("task")[0].outcome is RunOutcome.SUCCEEDED
    assert second.state("task").next_run == clock.time() + 3600.0


async def test_the_store_keeps_only_keep_runs(manager_factory: Factory, tmp_path: Path) -> None:
    manager = manager_factory(task(keep_runs=3))
    await manager.start()
    for _ in range(5):
        await run_to_end(manager)
    await manager.close()
    assert [number for number, _, _ in stored(tmp_path / "state")] == [3, 4, 5]


async def test_a_locked_database_never_holds_up_the_runs(
    manager_factory: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    manager = manager_factory(task())
    await manager.start()
    blocker = sqlite3.connect(state / FILE_NAME, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        with caplog.at_level(logging.ERROR, logger="processman.engine.runstore"):
            # The writer is stuck on the lock; the runs go on all the same.
            for number in (1, 2, 3):
                assert await run_to_end(manager) == number
            assert manager.state("task").status is Status.COMPLETED
            wait_for(lambda: caplog.records, 10, "the writer to report the lock")
        blocker.execute("COMMIT")
    finally:
        blocker.close()
    assert [record.getMessage() for record in caplog.records if "cannot write" in record.getMessage()] != []
    assert len(caplog.records) == 1, "the outage is logged once"
    # Once the lock is gone, the writer catches up without a new run.
    wait_for(lambda: len(stored(state)) == 3, 10, "the pending runs to be written")
    await manager.close()
    assert stored(state) == [(n, "manual", "succeeded") for n in (1, 2, 3)]


async def test_a_damaged_file_is_moved_aside(manager_factory: Factory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / FILE_NAME).write_bytes(b"not a database, " * 512)
    manager = manager_factory(task())
    await manager.start()
    assert await run_to_end(manager) == 1
    await manager.close()
    aside = list(state.glob(f"{FILE_NAME}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"not a database")
    assert stored(state) == [(1, "manual", "succeeded")]


def test_a_run_the_last_manager_left_running_has_no_made_up_end() -> None:
    # A SIGKILL of the manager: the run was on disk as running; its end was never seen.
    from processman.engine.runs import Run, RunHistory

    earlier = Run("task", 7, Trigger.SCHEDULE, 1_000.0, pid=42)
    history = RunHistory("task", 10, [earlier])
    (run,) = history.recent()
    assert (run.outcome, run.ended, run.duration) == (RunOutcome.STOPPED, None, None)
    assert run.reason == "the manager went away while it ran; its end was not seen"
    assert history.begin(Trigger.START, 2_000.0).number == 8


async def test_a_process_on_record_but_not_in_the_config_has_readable_runs(
    manager_factory: Factory, tmp_path: Path
) -> None:
    first = manager_factory(task())
    await first.start()
    await run_to_end(first)
    await first.close()
    second = manager_factory(config("other", TASK, restart="never"))
    await second.start()
    assert [run.number for run in second.runs("task")] == [1]


def test_close_does_not_wait_for_runs_to_gather(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between writes the writer lets runs gather; a close ends that wait at once (a shutdown, and the
    ``docker stop`` waiting for it, would otherwise wait too)."""
    from processman.engine import runstore
    from processman.engine.events import RunRecorded
    from processman.engine.runs import Run

    monkeypatch.setattr(runstore, "GATHER", 3600.0)
    store = runstore.RunStore(tmp_path / FILE_NAME)
    assert store.open() == {}
    run = Run("task", 1, Trigger.START, started=1.0)
    store.listener(RunRecorded("task", run, 1.0, keep=5))
    wait_for(lambda: store.written == 1, 10, "the first run written")  # the writer now gathers
    assert store.close(timeout=30)
    assert stored(tmp_path) == [(1, "start", None)]
