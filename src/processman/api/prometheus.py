"""The manager's metrics in Prometheus' text exposition format (version 0.0.4), for ``GET /metrics``.

Written by hand: the format is a few lines of text, and the manager should not carry a metrics
library for it. Series that have no value yet (CPU before the second sample, the exit code of a
process that never exited) are left out rather than reported as 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from processman.engine.process import ProcessState
from processman.engine.resources import ManagerUsage, TreeUsage
from processman.engine.states import Status
from processman.notify import NotifyStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class Exposition:
    """Builds the text one metric family at a time."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            shown = ",".join(f'{key}="{_escape(text)}"' for key, text in labels.items())
            lines.append(f"{name}{{{shown}}} {_number(value)}" if shown else f"{name} {_number(value)}")
        self._parts.append("\n".join(lines) + "\n")

    def text(self) -> str:
        return "".join(self._parts)


def _exit_code(state: ProcessState) -> float | None:
    if not state.exits:
        return None
    last = state.exits[-1]
    if last.signal:
        return -last.signal  # as Python's returncode: -N when killed by signal N
    return last.returncode


def _per_process(
    states: Iterable[ProcessState], value: Callable[[ProcessState], float | None]
) -> list[Sample]:
    return [({"id": state.id}, number) for state in states if (number := value(state)) is not None]


def render_metrics(
    states: list[ProcessState],
    manager: ManagerUsage,
    trees: Mapping[str, TreeUsage],
    cpu_seconds: Mapping[str, float],
) -> str:
    """Every process's series (label ``id``, config order), then the manager's own.

    ``trees`` and ``cpu_seconds`` come from the manager's resource sampler (see ``engine.resources``).
    """
    out = Exposition()
    out.family(
        "processman_process_up",
        "gauge",
        "1 when the process is running, else 0.",
        _per_process(states, lambda s: 1 if s.status is Status.RUNNING else 0),
    )
    out.family(
        "processman_process_status",
        "gauge",
        "1 for the process's current status, 0 for the others.",
        [
            ({"id": state.id, "status": str(status)}, 1 if state.status is status else 0)
            for state in states
            for status in Status
        ],
    )
    out.family(
        "processman_process_cpu_percent",
        "gauge",
        "CPU use of the whole process tree at the last sample, in percent of one core.",
        _per_process(states, lambda s: s.cpu),
    )
    out.family(
        "processman_process_cpu_seconds_total",
        "counter",
        "CPU time used by the process trees, all runs together.",
        [({"id": state.id}, cpu_seconds[state.id]) for state in states if state.id in cpu_seconds],
    )
    out.family(
        "processman_process_memory_bytes",
        "gauge",
        "Resident memory of the whole process tree at the last sample.",
        _per_process(states, lambda s: s.memory),
    )
    out.family(
        "processman_process_max_memory_bytes",
        "gauge",
        "The maxMemory setting: above it (two samples in a row) the process is restarted.",
        _per_process(states, lambda s: s.config.max_memory),
    )
    out.family(
        "processman_process_tree_processes",
        "gauge",
        "Live processes in the process tree at the last sample.",
        [({"id": state.id}, trees[state.id].processes) for state in states if state.id in trees],
    )
    out.family(
        "processman_process_restarts_total",
        "counter",
        "Restarts of the process: crashes, user requests, file changes, maxMemory.",
        _per_process(states, lambda s: s.restart_count),
    )
    out.family(
        "processman_process_uptime_seconds",
        "gauge",
        "How long the current run has lasted; 0 when not running.",
        _per_process(states, lambda s: round(s.uptime, 3)),
    )
    out.family(
        "processman_process_start_time_seconds",
        "gauge",
        "When the current run started, in seconds since the Unix epoch.",
        _per_process(states, lambda s: s.start_time),
    )
    out.family(
        "processman_process_last_exit_code",
        "gauge",
        "Exit code of the last exit; -N when it was killed by signal N.",
        _per_process(states, _exit_code),
    )
    out.family(
        "processman_process_log_dropped_bytes_total",
        "counter",
        "Output bytes that could not be written to the process's log files (a full disk, say).",
        _per_process(states, lambda s: s.log_dropped_bytes),
    )
    out.family(
        "processman_process_log_error",
        "gauge",
        "1 while the process's log files cannot be written (label error says why), else 0.",
        [({"id": state.id, "error": state.log_error}, 1 if state.log_error else 0) for state in states],
    )
    out.family(
        "processman_manager_memory_bytes",
        "gauge",
        "Resident memory of the manager process.",
        [({}, manager.memory)],
    )
    out.family(
        "processman_manager_cpu_seconds_total",
        "counter",
        "CPU time (user and system) used by the manager process.",
        [({}, manager.cpu_seconds)],
    )
    out.family(
        "processman_manager_open_fds",
        "gauge",
        "File descriptors the manager has open (three per running child).",
        [({}, manager.open_fds)],
    )
    if manager.loop_lag is not None:
        out.family(
            "processman_manager_event_loop_lag_seconds",
            "gauge",
            "Worst lateness of a timer in the manager's event loop over the last two seconds or so.",
            [({}, round(manager.loop_lag, 6))],
        )
    if manager.sample_seconds is not None:
        out.family(
            "processman_manager_sample_duration_seconds",
            "gauge",
            "How long the last resource sample took.",
            [({}, round(manager.sample_seconds, 6))],
        )
    out.family(
        "processman_log_lines_dropped_total",
        "counter",
        "Output lines a slow consumer dropped (logging: Python logging; subscribers: live streams, "
        "which then catch up from the buffer; console: processman's own log records serve's console "
        "could not show). The log files keep every line.",
        [({"consumer": name}, count) for name, count in sorted(manager.log_lines_dropped.items())],
    )
    return out.text()


def render_notify_metrics(stats: NotifyStats) -> str:
    """Notification deliveries by target (named without credentials), and what a full queue dropped."""
    out = Exposition()
    out.family(
        "processman_notifications_sent_total",
        "counter",
        "Notification messages delivered (several events that happened together make one message).",
        [({"target": name}, count) for name, count in sorted(stats.sent.items())],
    )
    out.family(
        "processman_notifications_failed_total",
        "counter",
        "Notification messages given up after every retry (each is also in the log).",
        [({"target": name}, count) for name, count in sorted(stats.failed.items())],
    )
    out.family(
        "processman_notifications_retries_total",
        "counter",
        "Tries to deliver a notification that failed and were tried again.",
        [({"target": name}, count) for name, count in sorted(stats.retried.items())],
    )
    out.family(
        "processman_notifications_dropped_total",
        "counter",
        "Notifications dropped because too many waited to be sent.",
        [({}, stats.dropped)],
    )
    return out.text()
