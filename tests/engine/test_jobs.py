"""Jobs and one-shot tasks: a job runs at its times (an injected clock stands in for the wall clock),
each overlap policy, catch-up, runOnStart, timeouts, retries, completed one-shot tasks, autostart and
runs on demand; every run is in the process's history with its trigger and outcome."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from processman import ProcessManager, Status
from processman.config import Schedule
from processman.engine.runs import Run, RunOutcome, Trigger
from processman.errors import NotRunnable, ProcessAlreadyRunning
from tests.conftest import alive, config, wait_until
from tests.engine.clock import ManualClock

Factory = Callable[..., ProcessManager]
BERLIN = ZoneInfo("Europe/Berlin")
QUICK = "print('job ran')"
FAILS = "import sys\nprint('boom', file=sys.stderr)\nsys.exit(1)"


def waits_for(path: Path) -> str:
    """A run that lasts until ``path`` exists (the test decides when it ends)."""
    return f"import os, time\nwhile not os.path.exists({str(path)!r}): time.sleep(0.02)"


def at(clock: ManualClock, moment: datetime) -> None:
    """Set the injected wall clock to ``moment`` (before the manager starts)."""
    clock.now = moment.timestamp() - 1_800_000_000.0


def ended(manager: ProcessManager, process_id: str) -> list[Run]:
    return [run for run in manager.runs(process_id) if not run.running]


def waits(clock: ManualClock, delay: float) -> bool:
    return delay in clock.deadlines()


def ended_count(manager: ProcessManager, process_id: str, count: int) -> Callable[[], bool]:
    return lambda: len(ended(manager, process_id)) == count


async def advance_to(manager: ProcessManager, clock: ManualClock, process_id: str) -> float:
    """Move the clock to the job's next due time; returns it."""

    def upcoming() -> bool:
        due = manager.state(process_id).next_run
        return due is not None and due > clock.time()

    await wait_until(manager, upcoming, what="the next run")
    due = manager.state(process_id).next_run
    assert due is not None
    clock.advance(due - clock.time())
    return due


async def test_a_job_is_scheduled_between_runs_and_runs_at_each_due_time(manager_factory: Factory) -> None:
    clock = ManualClock()
    manager = manager_factory(config("tick", QUICK, schedule=Schedule(every=60.0)), clock=clock)
    armed = clock.time()
    await manager.start()
    await wait_until(manager, lambda: manager.state("tick").status is Status.SCHEDULED, what="scheduled")
    assert manager.state("tick").next_run == armed + 60
    assert manager.runs("tick") == []  # nothing runs before its time
    for number in (1, 2):
        await advance_to(manager, clock, "tick")
        await wait_until(manager, ended_count(manager, "tick", number), what=f"run {number}")
        await wait_until(manager, lambda: manager.state("tick").status is Status.SCHEDULED, what="scheduled")
    runs = manager.runs("tick")
    assert [(run.number, run.trigger, run.outcome, run.returncode) for run in runs] == [
        (2, Trigger.SCHEDULE, RunOutcome.SUCCEEDED, 0),
        (1, Trigger.SCHEDULE, RunOutcome.SUCCEEDED, 0),
    ]
    assert runs[0].last_lines == ("job ran",)
    assert manager.state("tick").next_run == armed + 180
    assert manager.state("tick").restart_count == 0


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        # Clocks go forward at 02:00 (to 03:00): 02:30 does not exist that day; it runs at 03:00.
        (datetime(2026, 3, 28, 12, tzinfo=BERLIN), ["2026-03-29 03:00 +0200", "2026-03-30 02:30 +0200"]),
        # Clocks go back at 03:00 (to 02:00): 02:30 happens twice; it runs once, the first time.
        (datetime(2026, 10, 24, 12, tzinfo=BERLIN), ["2026-10-25 02:30 +0200", "2026-10-26 02:30 +0100"]),
    ],
    ids=["spring-forward", "fall-back"],
)
async def test_a_0230_job_across_both_daylight_saving_changes(
    manager_factory: Factory, start: datetime, expected: list[str]
) -> None:
    clock = ManualClock()
    at(clock, start)
    schedule = Schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    manager = manager_factory(config("nightly", QUICK, schedule=schedule), clock=clock)
    await manager.start()
    seen: list[str] = []
    for number in (1, 2):
        due = await advance_to(manager, clock, "nightly")
        seen.append(datetime.fromtimestamp(due, BERLIN).strftime("%Y-%m-%d %H:%M %z"))
        await wait_until(manager, ended_count(manager, "nightly", number), what="the run")
    assert seen == expected
    # One run per day, each at its due time.
    assert [run.started for run in reversed(manager.runs("nightly"))] == [
        datetime.strptime(text, "%Y-%m-%d %H:%M %z").timestamp() for text in expected
    ]


async def test_overlap_skip_records_the_run_that_was_due_while_the_last_one_ran(
    manager_factory: Factory, tmp_path: Path
) -> None:
    clock = ManualClock()
    release = tmp_path / "release"
    manager = manager_factory(config("slow", waits_for(release), schedule=Schedule(every=60.0)), clock=clock)
    await manager.start()
    await advance_to(manager, clock, "slow")
    await wait_until(manager, lambda: manager.state("slow").status is Status.RUNNING, what="run 1")
    first_pid = manager.state("slow").pid
    await advance_to(manager, clock, "slow")
    await wait_until(manager, lambda: len(ended(manager, "slow")) == 1, what="the skipped run")
    skipped = manager.runs("slow")[0]
    assert (skipped.number, skipped.outcome, skipped.trigger) == (2, RunOutcome.SKIPPED, Trigger.SCHEDULE)
    assert skipped.reason == "skipped: run 1 was still running"
    assert manager.state("slow").pid == first_pid  # nothing else was started
    release.touch()
    await wait_until(manager, lambda: manager.state("slow").status is Status.SCHEDULED, what="scheduled")
    assert [run.outcome for run in manager.runs("slow")] == [RunOutcome.SKIPPED, RunOutcome.SUCCEEDED]


async def test_overlap_queue_runs_one_due_run_after_the_last_one(
    manager_factory: Factory, tmp_path: Path
) -> None:
    clock = ManualClock()
    release = tmp_path / "release"
    schedule = Schedule(every=60.0, overlap="queue")
    manager = manager_factory(config("queued", waits_for(release), schedule=schedule), clock=clock)
    await manager.start()
    await advance_to(manager, clock, "queued")
    await wait_until(manager, lambda: manager.state("queued").status is Status.RUNNING, what="run 1")
    await advance_to(manager, clock, "queued")  # queued behind run 1
    await advance_to(manager, clock, "queued")  # one is queued already: skipped
    await wait_until(manager, lambda: len(ended(manager, "queued")) == 1, what="the skipped run")
    assert manager.runs("queued")[0].reason == "skipped: a run is already queued"
    release.touch()
    await wait_until(manager, lambda: len(ended(manager, "queued")) == 3, what="run 1 and the queued run")
    runs = manager.runs("queued")
    assert [(run.number, run.outcome) for run in runs] == [
        (3, RunOutcome.SUCCEEDED),  # the queued run, begun after run 1 ended
        (2, RunOutcome.SKIPPED),
        (1, RunOutcome.SUCCEEDED),
    ]
    assert runs[2].ended is not None and runs[0].started >= runs[2].ended


async def test_overlap_allow_runs_beside_and_a_stop_takes_every_run(
    manager_factory: Factory, tmp_path: Path
) -> None:
    clock = ManualClock()
    schedule = Schedule(every=60.0, overlap="allow")
    manager = manager_factory(config("wide", waits_for(tmp_path / "never"), schedule=schedule), clock=clock)
    await manager.start()
    await advance_to(manager, clock, "wide")
    await wait_until(manager, lambda: manager.state("wide").status is Status.RUNNING, what="run 1")
    await advance_to(manager, clock, "wide")
    await wait_until(manager, lambda: len(manager.runs("wide")) == 2, what="run 2")
    pids = [run.pid for run in manager.runs("wide")]
    assert len(set(pids)) == 2 and all(alive(pid) for pid in pids)
    await manager.stop_process("wide")
    assert not any(alive(pid) for pid in pids)
    assert manager.state("wide").status is Status.STOPPED
    await wait_until(manager, lambda: len(ended(manager, "wide")) == 2, what="both runs ended")
    assert {run.outcome for run in manager.runs("wide")} == {RunOutcome.STOPPED}


def waits_for_own_release(folder: Path) -> str:
    """A run that lasts until a file named after its own pid exists in ``folder``."""
    return (
        "import os, time\n"
        f"while not os.path.exists(os.path.join({str(folder)!r}, str(os.getpid()))): time.sleep(0.02)"
    )


async def run_beside_one_that_ended(manager_factory: Factory, tmp_path: Path) -> tuple[ProcessManager, Run]:
    """A job "wide" (overlap allow) whose run 2 began beside run 1, and run 1 has ended: run 2 is
    returned, shown as the running one."""
    clock = ManualClock()
    schedule = Schedule(every=60.0, overlap="allow")
    manager = manager_factory(config("wide", waits_for_own_release(tmp_path), schedule=schedule), clock=clock)
    await manager.start()
    await advance_to(manager, clock, "wide")
    await wait_until(manager, lambda: manager.state("wide").status is Status.RUNNING, what="run 1")
    await advance_to(manager, clock, "wide")
    await wait_until(manager, lambda: len(manager.runs("wide")) == 2, what="run 2")
    second, first = manager.runs("wide")
    assert first.pid is not None and second.pid is not None
    (tmp_path / str(first.pid)).touch()  # run 1 ends; run 2, begun beside it, goes on
    await wait_until(manager, ended_count(manager, "wide", 1), what="run 1 to end")
    await wait_until(manager, lambda: manager.state("wide").pid == second.pid, what="run 2 shown as running")
    return manager, second


async def test_a_run_beside_one_that_ended_is_the_running_one_and_a_stop_ends_it_cleanly(
    manager_factory: Factory, tmp_path: Path
) -> None:
    manager, second = await run_beside_one_that_ended(manager_factory, tmp_path)
    assert second.pid is not None
    assert manager.state("wide").status is Status.RUNNING
    await manager.stop_process("wide")
    state = manager.state("wide")
    assert (state.status, state.last_error) == (Status.STOPPED, "")
    assert not alive(second.pid)
    await wait_until(manager, ended_count(manager, "wide", 2), what="run 2 to end")
    assert manager.runs("wide")[0].outcome is RunOutcome.STOPPED


async def test_a_run_past_its_timeout_is_stopped_and_recorded_as_timed_out(
    manager_factory: Factory, tmp_path: Path
) -> None:
    clock = ManualClock()
    job = config("stuck", waits_for(tmp_path / "never"), schedule=Schedule(every=3600.0), timeout=30.0)
    manager = manager_factory(job, clock=clock)
    await manager.start()
    await advance_to(manager, clock, "stuck")
    await wait_until(manager, lambda: manager.state("stuck").status is Status.RUNNING, what="the run")
    pid = manager.state("stuck").pid
    await wait_until(manager, lambda: 30.0 in clock.deadlines(), what="the timeout's timer")
    clock.advance(30.0)
    await wait_until(manager, lambda: len(ended(manager, "stuck")) == 1, what="the timeout")
    run = manager.runs("stuck")[0]
    assert run.outcome is RunOutcome.TIMED_OUT and not alive(pid)
    assert run.reason.startswith("timed out after 30s and was stopped")
    await wait_until(manager, lambda: manager.state("stuck").status is Status.SCHEDULED, what="scheduled")
    assert manager.state("stuck").last_error.startswith("timed out after 30s")


async def test_a_one_shot_task_past_its_timeout_fails(manager_factory: Factory, tmp_path: Path) -> None:
    task = config("hang", waits_for(tmp_path / "never"), restart="never", timeout=0.3)
    manager = manager_factory(task)
    await manager.start()
    await wait_until(manager, lambda: manager.state("hang").status is Status.FAILED, what="failed")
    assert manager.runs("hang")[0].outcome is RunOutcome.TIMED_OUT
    assert manager.state("hang").last_error.startswith("timed out after 300ms")


async def test_a_failed_run_is_retried_up_to_max_retries_and_the_job_stays_scheduled(
    manager_factory: Factory,
) -> None:
    clock = ManualClock()
    job = config("flaky", FAILS, schedule=Schedule(every=3600.0), max_retries=2, backoff=10.0)
    manager = manager_factory(job, clock=clock)
    await manager.start()
    await advance_to(manager, clock, "flaky")
    for number, delay in ((1, 10.0), (2, 20.0)):
        await wait_until(manager, ended_count(manager, "flaky", number), what=f"attempt {number}")
        await wait_until(manager, lambda: manager.state("flaky").status is Status.CRASHED, what="backoff")
        await wait_until(manager, functools.partial(waits, clock, delay), what="the backoff wait")
        clock.advance(delay)
    await wait_until(manager, lambda: len(ended(manager, "flaky")) == 3, what="attempt 3")
    await wait_until(manager, lambda: manager.state("flaky").status is Status.SCHEDULED, what="scheduled")
    runs = manager.runs("flaky")
    assert [(run.trigger, run.outcome) for run in runs] == [
        (Trigger.CRASH, RunOutcome.FAILED),
        (Trigger.CRASH, RunOutcome.FAILED),
        (Trigger.SCHEDULE, RunOutcome.FAILED),
    ]
    assert manager.state("flaky").last_error == "exited with code 1: boom"


async def test_a_job_is_not_retried_by_default(manager_factory: Factory) -> None:
    clock = ManualClock()
    manager = manager_factory(config("once", FAILS, schedule=Schedule(every=60.0)), clock=clock)
    await manager.start()
    await advance_to(manager, clock, "once")
    await wait_until(manager, lambda: len(ended(manager, "once")) == 1, what="the run")
    await wait_until(manager, lambda: manager.state("once").status is Status.SCHEDULED, what="scheduled")
    assert len(manager.runs("once")) == 1 and manager.state("once").config.max_retries == 0


async def test_catch_up_runs_once_for_the_times_missed_since_the_last_run(manager_factory: Factory) -> None:
    clock = ManualClock()
    at(clock, datetime(2026, 6, 10, 12, tzinfo=BERLIN))
    schedule = Schedule(cron="0 3 * * *", timezone="Europe/Berlin", catch_up=True)
    manager = manager_factory(config("backup", QUICK, schedule=schedule), clock=clock)
    # The last run on record is three nights old: the missed nights collapse into one run at start.
    last = datetime(2026, 6, 7, 3, tzinfo=BERLIN).timestamp()
    manager._processes["backup"].runs.seed(
        [Run("backup", 7, Trigger.SCHEDULE, last, last + 5, RunOutcome.SUCCEEDED, 0)]
    )
    await manager.start()
    await wait_until(manager, lambda: len(ended(manager, "backup")) == 2, what="the catch-up run")
    run = manager.runs("backup")[0]
    assert (run.number, run.trigger, run.outcome) == (8, Trigger.CATCH_UP, RunOutcome.SUCCEEDED)
    assert manager.state("backup").next_run == datetime(2026, 6, 11, 3, tzinfo=BERLIN).timestamp()


async def test_no_catch_up_when_nothing_was_missed_or_catch_up_is_off(manager_factory: Factory) -> None:
    clock = ManualClock()
    at(clock, datetime(2026, 6, 10, 12, tzinfo=BERLIN))
    last = datetime(2026, 6, 10, 3, tzinfo=BERLIN).timestamp()
    on_time = Schedule(cron="0 3 * * *", timezone="Europe/Berlin", catch_up=True)
    off = Schedule(cron="0 3 * * *", timezone="Europe/Berlin")
    manager = manager_factory(
        config("a", QUICK, schedule=on_time), config("b", QUICK, schedule=off), clock=clock
    )
    manager._processes["a"].runs.seed([Run("a", 1, Trigger.SCHEDULE, last, last, RunOutcome.SUCCEEDED, 0)])
    manager._processes["b"].runs.seed(
        [Run("b", 1, Trigger.SCHEDULE, last - 86400 * 3, last, RunOutcome.SUCCEEDED, 0)]
    )
    await manager.start()
    await wait_until(manager, lambda: manager.state("b").status is Status.SCHEDULED, what="scheduled")
    assert len(manager.runs("a")) == 1 and len(manager.runs("b")) == 1


async def test_run_on_start_runs_at_once(manager_factory: Factory) -> None:
    clock = ManualClock()
    schedule = Schedule(every=3600.0, run_on_start=True)
    manager = manager_factory(config("warm", QUICK, schedule=schedule), clock=clock)
    await manager.start()
    await wait_until(manager, lambda: len(ended(manager, "warm")) == 1, what="the first run")
    assert manager.runs("warm")[0].trigger is Trigger.START


async def test_a_one_shot_task_that_exits_successfully_is_completed(manager_factory: Factory) -> None:
    manager = manager_factory(
        config("ok", "import sys; sys.exit(3)", restart="on-failure", success_exit_codes=(0, 3)),
        config("bad", FAILS, restart="never"),
    )
    await manager.start()
    await wait_until(manager, lambda: manager.state("ok").status is Status.COMPLETED, what="completed")
    await wait_until(manager, lambda: manager.state("bad").status is Status.FAILED, what="failed")
    assert manager.state("ok").last_error == "" and manager.state("ok").restart_count == 0
    assert manager.runs("ok")[0].outcome is RunOutcome.SUCCEEDED
    assert manager.runs("bad")[0].outcome is RunOutcome.FAILED


async def test_autostart_false_waits_for_run_and_run_follows_overlap(
    manager_factory: Factory, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    manager = manager_factory(config("migrate", waits_for(release), restart="never", autostart=False))
    await manager.start()
    assert manager.state("migrate").status is Status.STOPPED and manager.runs("migrate") == []
    run = await manager.run_process("migrate")
    assert run is not None and (run.number, run.trigger, run.running) == (1, Trigger.MANUAL, True)
    skipped = await manager.run_process("migrate")  # it still runs: this one is skipped
    assert skipped is not None and skipped.outcome is RunOutcome.SKIPPED
    release.touch()
    await wait_until(manager, lambda: manager.state("migrate").status is Status.COMPLETED, what="completed")


async def test_run_of_a_job_that_is_not_armed_runs_once_and_stays_unarmed(manager_factory: Factory) -> None:
    clock = ManualClock()
    job = config("report", QUICK, schedule=Schedule(every=60.0), autostart=False)
    # No resource sampler: its pause would be among the clock's deadlines.
    manager = manager_factory(job, clock=clock, metrics_interval=0)
    await manager.start()
    assert manager.state("report").status is Status.STOPPED
    run = await manager.run_process("report")
    assert run is not None and run.trigger is Trigger.MANUAL
    await wait_until(manager, lambda: manager.state("report").status is Status.COMPLETED, what="completed")
    assert manager.state("report").next_run is None and clock.deadlines() == []
    await manager.start_process("report")  # arms it
    await wait_until(manager, lambda: manager.state("report").status is Status.SCHEDULED, what="scheduled")
    with pytest.raises(ProcessAlreadyRunning):
        await manager.start_process("report")
    manual = await manager.run_process("report")  # armed: a run now, then scheduled again
    assert manual is not None and manual.trigger is Trigger.MANUAL
    await wait_until(manager, lambda: len(ended(manager, "report")) == 2, what="the second run")
    await wait_until(manager, lambda: manager.state("report").status is Status.SCHEDULED, what="scheduled")


async def test_run_of_a_kept_alive_service_is_refused(manager_factory: Factory) -> None:
    manager = manager_factory(config("web", "import time; time.sleep(60)"))
    await manager.start()
    with pytest.raises(NotRunnable, match="use start or restart"):
        await manager.run_process("web")


async def test_every_run_of_a_service_is_recorded_with_its_trigger(
    manager_factory: Factory, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    code = f"""
import os, sys, time
if not os.path.exists({str(first)!r}):
    open({str(first)!r}, "w").close()
    sys.exit(2)
time.sleep(60)
"""
    manager = manager_factory(config("svc", code))
    await manager.start()
    await wait_until(manager, lambda: len(manager.runs("svc")) == 2, what="the restart after the crash")
    await wait_until(manager, lambda: manager.state("svc").status is Status.RUNNING, what="running")
    await manager.restart_process("svc")
    await wait_until(manager, lambda: len(manager.runs("svc")) == 3, what="the user restart")
    runs = manager.runs("svc")
    assert [(run.trigger, run.outcome) for run in runs] == [
        (Trigger.RESTART, None),
        (Trigger.CRASH, RunOutcome.STOPPED),
        (Trigger.START, RunOutcome.FAILED),
    ]
    assert runs[2].returncode == 2
    # recentExits come from the same record.
    assert [record.returncode for record in manager.state("svc").exits] == [2, runs[1].returncode]


async def test_a_reload_that_changes_the_schedule_re_arms_the_job(manager_factory: Factory) -> None:
    clock = ManualClock()
    job = config("tick", QUICK, schedule=Schedule(every=60.0))
    manager = manager_factory(job, clock=clock)
    await manager.start()
    await wait_until(manager, lambda: manager.state("tick").next_run == clock.time() + 60, what="armed")
    await manager.apply([dataclasses.replace(job, schedule=Schedule(every=600.0))])
    await wait_until(manager, lambda: manager.state("tick").next_run == clock.time() + 600, what="re-armed")
    assert manager.state("tick").status is Status.SCHEDULED


async def test_a_reload_turns_a_service_into_a_job_and_back(manager_factory: Factory) -> None:
    clock = ManualClock()
    service = config("svc", "import time; time.sleep(60)")
    manager = manager_factory(service, clock=clock)
    await manager.start()
    await wait_until(manager, lambda: manager.state("svc").status is Status.RUNNING, what="running")
    pid = manager.state("svc").pid
    await manager.apply([dataclasses.replace(service, schedule=Schedule(every=60.0))])
    await wait_until(manager, lambda: manager.state("svc").status is Status.SCHEDULED, what="a job")
    assert not alive(pid) and manager.state("svc").next_run is not None
    await manager.apply([service])
    await wait_until(manager, lambda: manager.state("svc").status is Status.RUNNING, what="a service again")
    assert manager.state("svc").next_run is None


async def test_a_run_asked_while_the_job_waits_for_its_dependencies_answers_at_once(
    manager_factory: Factory,
) -> None:
    clock = ManualClock()
    db = config("db", "import time; time.sleep(60)", autostart=False)
    job = config("report", QUICK, schedule=Schedule(every=60.0), depends_on={"db": "started"})
    manager = manager_factory(db, job, clock=clock)
    await manager.start()
    await advance_to(manager, clock, "report")
    await wait_until(manager, lambda: "waiting for db" in manager.state("report").last_error, what="waiting")
    skipped = await manager.run_process("report")
    assert skipped is not None and skipped.outcome is RunOutcome.SKIPPED
    assert skipped.reason == "skipped: the last run is still waiting for its dependencies"
    await manager.stop_process("report")  # never held behind the answer
    assert manager.state("report").status is Status.STOPPED


async def test_a_restart_between_runs_stops_the_runs_beside(manager_factory: Factory, tmp_path: Path) -> None:
    manager, second = await run_beside_one_that_ended(manager_factory, tmp_path)
    assert second.pid is not None
    await manager.restart_process("wide")
    await wait_until(manager, lambda: manager.state("wide").status is Status.SCHEDULED, what="armed again")
    assert not alive(second.pid)
    assert manager.runs("wide")[0].outcome is RunOutcome.STOPPED and len(manager.runs("wide")) == 2


async def test_a_second_run_on_demand_beside_outlives_the_first(
    manager_factory: Factory, tmp_path: Path
) -> None:
    schedule = Schedule(every=3600.0, overlap="allow")
    job = config("wide", waits_for_own_release(tmp_path), schedule=schedule, autostart=False)
    manager = manager_factory(job, clock=ManualClock())
    await manager.start()
    first = await manager.run_process("wide")
    second = await manager.run_process("wide")  # begun beside the first
    assert first is not None and second is not None and first.pid and second.pid
    (tmp_path / str(first.pid)).touch()
    await wait_until(manager, lambda: manager.state("wide").pid == second.pid, what="run 2 shown as running")
    assert manager.state("wide").status is Status.RUNNING and alive(second.pid)
    (tmp_path / str(second.pid)).touch()
    await wait_until(manager, lambda: manager.state("wide").status is Status.COMPLETED, what="completed")
    assert [run.outcome for run in manager.runs("wide")] == [RunOutcome.SUCCEEDED, RunOutcome.SUCCEEDED]


async def test_a_failed_run_beside_says_why_in_last_error(manager_factory: Factory, tmp_path: Path) -> None:
    code = waits_for_own_release(tmp_path) + "\nraise SystemExit(3)"
    schedule = Schedule(every=60.0, overlap="allow")
    manager = manager_factory(config("wide", code, schedule=schedule), clock=(clock := ManualClock()))
    await manager.start()
    await advance_to(manager, clock, "wide")
    await wait_until(manager, lambda: manager.state("wide").status is Status.RUNNING, what="run 1")
    await advance_to(manager, clock, "wide")
    await wait_until(manager, lambda: len(manager.runs("wide")) == 2, what="run 2")
    second = manager.runs("wide")[0]
    (tmp_path / str(second.pid)).touch()
    await wait_until(
        manager, lambda: manager.runs("wide")[0].outcome is RunOutcome.FAILED, what="run 2 fails"
    )
    await wait_until(manager, lambda: "code 3" in manager.state("wide").last_error, what="the reason")


async def test_run_of_an_unarmed_job_waiting_for_its_dependencies_answers_queued(
    manager_factory: Factory,
) -> None:
    manager = manager_factory(
        config("db", "import time; time.sleep(600)", autostart=False),
        config(
            "nightly", QUICK, schedule=Schedule(every=3600.0), autostart=False, depends_on={"db": "started"}
        ),
        clock=ManualClock(),
    )
    await manager.start()
    assert await asyncio.wait_for(manager.run_process("nightly"), 10) is None  # guard: it must answer
    assert manager.state("nightly").last_error == "waiting for db (started)"
    await asyncio.wait_for(manager.stop_process("nightly"), 10)
    assert manager.state("nightly").status is Status.STOPPED
