"""Process status and the table of allowed moves between statuses."""

from __future__ import annotations

from enum import StrEnum

from processman.errors import IllegalTransition


class Status(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"  # exited unexpectedly; waiting for its backoff delay
    FAILED = "failed"  # gave up after maxRetries (or a one-shot task that ended unsuccessfully)
    COMPLETED = "completed"  # a one-shot task that exited successfully
    SCHEDULED = "scheduled"  # a job between runs


class Desired(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


# A job moves between scheduled and a run (starting, running, stopping, crashed during a retry's
# backoff) and back; a one-shot task ends completed or failed.
_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.STOPPED: frozenset({Status.STARTING, Status.SCHEDULED}),
    Status.STARTING: frozenset(
        {Status.RUNNING, Status.CRASHED, Status.FAILED, Status.STOPPING, Status.SCHEDULED}
    ),
    # running -> starting: a job's queued run begins as soon as the last one ends.
    Status.RUNNING: frozenset(
        {Status.STOPPING, Status.CRASHED, Status.FAILED, Status.SCHEDULED, Status.STARTING}
    ),
    Status.CRASHED: frozenset({Status.STARTING, Status.STOPPING, Status.FAILED, Status.SCHEDULED}),
    Status.FAILED: frozenset({Status.STARTING, Status.STOPPING, Status.SCHEDULED}),
    Status.STOPPING: frozenset(
        {Status.STOPPED, Status.STARTING, Status.COMPLETED, Status.FAILED, Status.SCHEDULED}
    ),
    Status.COMPLETED: frozenset({Status.STARTING, Status.STOPPING, Status.SCHEDULED}),
    # scheduled -> running: a run begun beside the last one (overlap "allow") still runs.
    Status.SCHEDULED: frozenset({Status.STARTING, Status.STOPPING, Status.STOPPED, Status.RUNNING}),
}


def check_transition(old: Status, new: Status) -> None:
    if new not in _ALLOWED[old]:
        raise IllegalTransition(f"status cannot go from {old} to {new}")
