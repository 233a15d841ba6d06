"""The run history of one process: every run from its start to its end (services too), with what
triggered it and how it ended, and the runs a job skipped.

The process's owner task is the only writer of its :class:`RunHistory`; each change is published as a
:class:`~processman.engine.events.RunRecorded` event, which the run store (``engine/runstore.py``) writes
to the data folder and the API streams. ``recentExits`` are the ended runs of the same history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum


class Trigger(StrEnum):
    """Why a run began."""

    START = "start"  # the process (or a job's runOnStart) started
    SCHEDULE = "schedule"  # a job's time came
    CATCH_UP = "catch-up"  # a job's time passed while the manager was down
    MANUAL = "manual"  # `processman run`, POST /api/pm/{id}/run
    RESTART = "restart"  # a restart asked for (user, maxMemory)
    CRASH = "crash"  # after a run that failed (keep-alive, a retry, a failed liveness probe)
    FILE_CHANGE = "file-change"  # dev mode saw a change
    DEPENDENCY = "dependency"  # the start waited until its dependencies were met


class RunOutcome(StrEnum):
    SUCCEEDED = "succeeded"  # exited on its own with one of its successExitCodes
    FAILED = "failed"  # exited otherwise, or could not be started
    TIMED_OUT = "timed out"  # ran longer than its timeout and was stopped
    SKIPPED = "skipped"  # due while the last run was still running (overlap "skip")
    STOPPED = "stopped"  # stopped or restarted on request


@dataclass(frozen=True)
class Run:
    """One run. While it runs, ``ended`` and ``outcome`` are None."""

    process_id: str
    number: int  # 1, 2, ... for the process, across manager restarts
    trigger: Trigger
    started: float  # wall-clock seconds
    ended: float | None = None
    outcome: RunOutcome | None = None
    returncode: int | None = None
    signal: int | None = None
    pid: int = 0
    reason: str = ""  # how it ended, in words ("exited with code 1", "skipped: run 7 still runs")
    last_lines: tuple[str, ...] = ()  # its last lines of output

    @property
    def duration(self) -> float | None:
        """How long it ran: None while it runs, and for a skipped run (it never ran)."""
        if self.ended is None or self.outcome is RunOutcome.SKIPPED:
            return None
        return max(0.0, self.ended - self.started)

    @property
    def running(self) -> bool:
        return self.outcome is None


class RunHistory:
    """The last ``keep`` runs of one process, oldest first, numbered on from what was kept before."""

    def __init__(self, process_id: str, keep: int, earlier: Iterable[Run] = ()) -> None:
        self.process_id = process_id
        # A list, trimmed as it grows: an empty deque holds 600 bytes, a fleet of 1000 processes 0.7 MB.
        self._runs: list[Run] = []
        self._keep = keep
        self._last_number = 0
        self._changes = 0  # see changes
        self.seed(earlier)

    @property
    def changes(self) -> int:
        """Moves at every change of the runs kept (only this class's methods change them): a reader
        may keep what it made of them while the count stays (a process's recentExits)."""
        return self._changes

    def seed(self, earlier: Iterable[Run]) -> None:
        """Runs recorded before (by an earlier manager): kept, and numbering goes on after them. A run
        that was still running when that manager went away ended with it, at a time nobody saw: its
        end and duration stay unknown."""
        runs = sorted(earlier, key=lambda run: run.number)
        for run in runs:
            if run.running:
                reason = "the manager went away while it ran; its end was not seen"
                run = replace(run, outcome=RunOutcome.STOPPED, ended=None, reason=reason)
            self._append(run)
            self._last_number = max(self._last_number, run.number)
            self._changes += 1

    def resize(self, keep: int) -> None:
        if keep != self._keep:
            self._keep = keep
            del self._runs[: max(len(self._runs) - keep, 0)]
            self._changes += 1

    def _append(self, run: Run) -> None:
        self._runs.append(run)
        del self._runs[: max(len(self._runs) - self._keep, 0)]

    def begin(self, trigger: Trigger, started: float, pid: int = 0) -> Run:
        run = Run(self.process_id, self._next_number(), trigger, started, pid=pid)
        self._append(run)
        self._changes += 1
        return run

    def skipped(self, trigger: Trigger, when: float, reason: str) -> Run:
        run = Run(
            self.process_id,
            self._next_number(),
            trigger,
            when,
            ended=when,
            outcome=RunOutcome.SKIPPED,
            reason=reason,
        )
        self._append(run)
        self._changes += 1
        return run

    def update(self, run: Run) -> Run:
        """Replace the run of the same number (its pid became known, or it ended)."""
        for index in range(len(self._runs) - 1, -1, -1):
            if self._runs[index].number == run.number:
                self._runs[index] = run
                self._changes += 1
                break
        return run

    def recent(self, limit: int | None = None) -> list[Run]:
        """Newest first."""
        runs = list(reversed(self._runs))
        return runs if limit is None else runs[:limit]

    def last_started(self) -> float | None:
        """When the last run that was not skipped began (a job's catch-up reads it)."""
        for run in reversed(self._runs):
            if run.outcome is not RunOutcome.SKIPPED:
                return run.started
        return None

    def running(self) -> list[Run]:
        return [run for run in self._runs if run.running]

    def _next_number(self) -> int:
        self._last_number += 1
        return self._last_number
