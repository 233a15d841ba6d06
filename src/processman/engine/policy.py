"""The keep-alive decision: after a run ends, restart it (after how long), let it finish, or give up.

Pure functions of the config, how the run ended and the failures so far: the supervise loop in
``engine.process`` asks, and tests check every rule without a process or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from processman.config import ProcessConfig

BACKOFF_CAP = 30.0


def backoff_delay(base: float, failures: int) -> float:
    """Delay before the next start after ``failures`` consecutive failures (0 after a healthy run).

    >>> [backoff_delay(1.0, n) for n in (0, 1, 2, 3, 6, 7)]
    [0.0, 1.0, 2.0, 4.0, 30.0, 30.0]
    """
    if failures <= 0:
        return 0.0
    return min(base * 2.0 ** min(failures - 1, 64), BACKOFF_CAP)


class Action(Enum):
    RESTART = "restart"  # after ``Decision.delay`` seconds
    FINISH = "finish"  # the restart policy says the process stays ended
    GIVE_UP = "give up"  # more consecutive failures than maxRetries


@dataclass(frozen=True)
class Outcome:
    """How one run ended. ``spawned`` is False when it could not be started at all."""

    spawned: bool
    reason: str
    code: int | None = None
    signal: int | None = None
    uptime: float = 0.0
    timed_out: bool = False  # stopped because it ran longer than its timeout


@dataclass(frozen=True)
class Decision:
    action: Action
    failures: int  # consecutive failures, this run included
    delay: float = 0.0


def succeeded(config: ProcessConfig, outcome: Outcome) -> bool:
    """The run exited on its own with one of its successExitCodes (and was not timed out)."""
    return outcome.spawned and not outcome.timed_out and outcome.code in config.success_exit_codes


def decide(config: ProcessConfig, outcome: Outcome, failures: int) -> Decision:
    """What follows a run that ended on its own (not stopped or restarted on request).

    A run longer than ``minUptime`` was healthy: the failure count resets and the restart is at once.
    A start that failed (or a run shorter than that) is a failure: the delay doubles from ``backoff``.
    """
    if outcome.spawned and (
        config.restart == "never" or (config.restart == "on-failure" and succeeded(config, outcome))
    ):
        return Decision(Action.FINISH, failures)
    healthy = outcome.spawned and outcome.uptime >= config.min_uptime
    failures = 0 if healthy else failures + 1
    if config.retries >= 0 and failures > config.retries:
        return Decision(Action.GIVE_UP, failures)
    return Decision(Action.RESTART, failures, backoff_delay(config.backoff, failures))
