"""A process's ``exits`` are made from its run history once per change of it: every change of the
history must show in the next state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from processman import ProcessManager
from processman.engine.runs import Run, RunHistory, RunOutcome, Trigger
from tests.conftest import config, wait_until


def test_every_change_of_a_history_moves_its_count() -> None:
    history = RunHistory("x", 5)
    seen = [history.changes]

    def changed() -> None:
        assert history.changes not in seen
        seen.append(history.changes)

    history.seed([Run("x", 1, Trigger.START, 1.0, 2.0, RunOutcome.SUCCEEDED, 0)])
    changed()
    run = history.begin(Trigger.START, 3.0)
    changed()
    history.update(replace(run, pid=42))
    changed()
    history.update(replace(run, ended=4.0, outcome=RunOutcome.FAILED, returncode=1))
    changed()
    history.skipped(Trigger.SCHEDULE, 5.0, "skipped: run 2 still runs")
    changed()
    history.resize(2)
    changed()
    assert [run.number for run in history.recent()] == [3, 2]


def test_a_history_keeps_its_last_runs_through_seeds_skips_and_resizes() -> None:
    earlier = [
        Run("p", number, Trigger.START, float(number), ended=float(number), outcome=RunOutcome.SUCCEEDED)
        for number in (1, 2, 3, 4)
    ]
    history = RunHistory("p", keep=3, earlier=earlier)
    assert [run.number for run in history.recent()] == [4, 3, 2]
    history.begin(Trigger.START, 5.0)
    history.skipped(Trigger.SCHEDULE, 6.0, "still running")
    assert [run.number for run in history.recent()] == [6, 5, 4]
    history.resize(2)
    assert [run.number for run in history.recent()] == [6, 5]
    history.resize(4)
    history.begin(Trigger.START, 7.0)
    history.begin(Trigger.START, 8.0)
    history.begin(Trigger.START, 9.0)
    assert [run.number for run in history.recent()] == [9, 8, 7, 6]
    history.resize(0)
    history.begin(Trigger.START, 10.0)
    assert history.recent() == []


def test_a_history_that_does_not_change_keeps_its_count() -> None:
    history = RunHistory("x", 5)
    history.begin(Trigger.START, 1.0)
    count = history.changes
    history.recent()
    history.last_started()
    history.running()
    history.resize(5)  # the same size
    history.update(Run("x", 99, Trigger.START, 1.0))  # no run of that number
    assert history.changes == count


async def test_each_exit_shows_in_the_next_state(manager_factory: Callable[..., ProcessManager]) -> None:
    # Exits at once, three times: read after each, the exits grow one by one, and reading again
    # without a change gives the same records.
    manager = manager_factory(config("flaky", "raise SystemExit(3)", max_retries=2, backoff=0.01))
    await manager.start()
    counts: list[int] = []

    def grew() -> bool:
        exits = manager.state("flaky").exits
        assert exits == manager.state("flaky").exits
        if not counts or counts[-1] != len(exits):
            counts.append(len(exits))
        return len(exits) == 3

    await wait_until(manager, grew, what="three exits")
    assert counts[-1] == 3 and counts == sorted(counts)
    assert [record.returncode for record in manager.state("flaky").exits] == [3, 3, 3]
    history = manager._processes["flaky"].runs
    assert len(manager.state("flaky").exits) == len([run for run in history.recent() if run.ended])
