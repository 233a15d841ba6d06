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
    FAILED = "failed"  # gave up after maxRetries


class Desired(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.STOPPED: frozenset({Status.STARTING}),
    Status.STARTING: frozenset({Status.RUNNING, Status.CRASHED, Status.FAILED, Status.STOPPING}),
    Status.RUNNING: frozenset({Status.STOPPING, Status.CRASHED, Status.FAILED}),
    Status.CRASHED: frozenset({Status.STARTING, Status.STOPPING, Status.FAILED}),
    Status.FAILED: frozenset({Status.STARTING, Status.STOPPING}),
    Status.STOPPING: frozenset({Status.STOPPED, Status.STARTING}),
}


def check_transition(old: Status, new: Status) -> None:
    if new not in _ALLOWED[old]:
        raise IllegalTransition(f"status cannot go from {old} to {new}")
