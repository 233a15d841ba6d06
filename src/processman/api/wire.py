"""The JSON the API, its live streams, PocketBase's realtime topic and ``/metrics`` speak.

The engine's records (states, exits, events, log lines) are plain dataclasses; this module is the one
place that turns them into wire dicts. An exit has one shape wherever it goes (``recentExits``, the
``exit`` event of ``/api/pm/events``, the ``pm/events`` topic)::

    {"time": "2026-01-30T10:00:00.123Z", "exitCode": null, "signal": "SIGKILL",
     "uptime": "14s", "uptimeSeconds": 14.52}
"""

from __future__ import annotations

import dataclasses
import json
import operator
import signal
import weakref
from collections.abc import Sequence
from typing import Any

from processman.config import ProcessConfig, config_to_json, mask_env
from processman.durations import format_duration
from processman.engine.events import LogLines, ProcessExited, RunRecorded, StatusChanged
from processman.engine.manager import ProcessManager
from processman.engine.process import ExitRecord, ProcessState
from processman.engine.reload import ReloadPlan
from processman.engine.runs import Run
from processman.interpreter import uses_system_python
from processman.levels import levels_of, line_level, stream_level
from processman.logs import LogLine, format_timestamp

__all__ = [
    "StateTexts",
    "exit_event_to_json",
    "exit_to_json",
    "line_to_json",
    "lines_event_to_json",
    "run_event_to_json",
    "run_to_json",
    "state_to_json",
    "states_to_body",
    "status_event_to_json",
]


def _signal_name(number: int | None) -> str | None:
    if not number:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal has no name of its own
        return f"SIG{number}"


def _exit_fields(
    timestamp: float, returncode: int | None, signal_number: int | None, uptime: float
) -> dict[str, Any]:
    return {
        "time": format_timestamp(timestamp),
        "exitCode": returncode,
        "signal": _signal_name(signal_number),
        "uptime": format_duration(uptime),
        "uptimeSeconds": round(uptime, 3),
    }


def exit_to_json(record: ExitRecord) -> dict[str, Any]:
    """One entry of ``recentExits``: the common exit fields, why, and the child's last lines."""
    return {
        **_exit_fields(record.timestamp, record.returncode, record.signal, record.uptime),
        "reason": record.reason,
        "lastLines": list(record.last_lines),
    }


def containment_to_json(manager: ProcessManager) -> dict[str, Any]:
    """How process trees are contained and watched: {"containment": "cgroup", "tags" or "portable",
    "containmentDetail": ..., "backend": "linux" or "portable", "backendDetail": why that one}."""
    return {
        "containment": manager.containment.name,
        "containmentDetail": manager.containment.where,
        "backend": manager.backend.name,
        "backendDetail": manager.backend.reason,
    }


class _MaskedConfig:
    """One config's masked JSON, as a dict and as text for each interpreter it was shown with."""

    __slots__ = ("data", "texts")

    def __init__(self, config: ProcessConfig) -> None:
        self.data = config_to_json(config, mask=True)
        self.texts: dict[str | None, str] = {}


# Made once per config: a config never changes (a reload makes a new one), and masking its env values
# and encoding it were most of a list request's own work.
_masked: dict[int, _MaskedConfig] = {}


def _masked_config(config: ProcessConfig) -> _MaskedConfig:
    key = id(config)
    found = _masked.get(key)
    if found is None:
        found = _masked[key] = _MaskedConfig(config)
        weakref.finalize(config, _masked.pop, key, None)
    return found


def _interpreter(state: ProcessState, masked: _MaskedConfig) -> Any:
    return state.interpreter if state.interpreter is not None else masked.data.get("interpreter")


# A state's JSON is three runs of fields around the figures that change on their own, uptime (each
# second) and cpu/memory (each sample): the list keeps the runs' text while the fields in them stay the
# same (see StateTexts). The order of the keys is the order of the fields in the JSON.


def _fields_before_uptime(state: ProcessState) -> dict[str, Any]:
    return {
        "id": state.id,
        "pid": state.pid,
        "status": str(state.status),
        "ready": state.ready,
        "startTime": format_timestamp(state.start_time) if state.start_time is not None else None,
    }


def _fields_before_usage(state: ProcessState) -> dict[str, Any]:
    return {
        "restartCount": state.restart_count,
        "lastError": state.last_error,
        "desired": str(state.desired),
        "recentExits": [exit_to_json(record) for record in state.exits],
    }


def _fields_after_usage(state: ProcessState) -> dict[str, Any]:
    outside_venv = uses_system_python(state.config, state.venv)
    return {
        "logError": state.log_error,
        "logDroppedBytes": state.log_dropped_bytes,
        # The virtualenv it runs in; a Python program without one: the folders looked in for one.
        "virtualenv": str(state.venv.venv) if state.venv.venv is not None else None,
        "virtualenvLookedIn": [str(folder) for folder in state.venv.looked_in] if outside_venv else [],
        # What its envFile files held at the last start, masked as env values are.
        "envFromFiles": mask_env(state.env_from_files),
        "statusText": state.status_text,
        "mainPid": state.main_pid or None,
        # A job's next due time while it is armed (status scheduled, or a run in progress).
        "nextRun": format_timestamp(state.next_run) if state.next_run is not None else None,
    }


def state_to_json(state: ProcessState) -> dict[str, Any]:
    """A process state (SPEC 3). The config is masked: secrets in env and probes never leave."""
    masked = _masked_config(state.config)
    config = dict(masked.data)
    config["interpreter"] = _interpreter(state, masked)
    return {
        **_fields_before_uptime(state),
        "uptime": format_duration(int(state.uptime)),
        **_fields_before_usage(state),
        "cpu": state.cpu,
        "memory": state.memory,
        **_fields_after_usage(state),
        "config": config,
    }


def _dumps(value: Any) -> str:
    # As Starlette's JSONResponse encodes.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def _config_text(state: ProcessState) -> str:
    """The state's masked config as JSON, encoded once per config and interpreter."""
    masked = _masked_config(state.config)
    interpreter = _interpreter(state, masked)
    text = masked.texts.get(interpreter)
    if text is None:
        text = masked.texts[interpreter] = _dumps({**masked.data, "interpreter": interpreter})
    return text


# The fields compared as one tuple: every field of a state but the figures spliced in anew (uptime,
# cpu, memory) and two compared apart, the config (by identity: an equal config may order its env
# otherwise) and the envFile values (as items, in order). Made from the dataclass, so a field added to
# ProcessState is compared without a change here. Values compare with ==, as the engine's fields each
# have one type (an int never becomes an equal float or bool).
_COMPARED_APART = frozenset({"uptime", "cpu", "memory", "config", "env_from_files"})
_kept_fields = operator.attrgetter(
    *(f.name for f in dataclasses.fields(ProcessState) if f.name not in _COMPARED_APART)
)


class _Text:
    """One process's JSON in the list, in parts, with what each part was made from, and the whole as
    bytes (made again when a part is)."""

    __slots__ = (
        "config",
        "env",
        "fields",
        "head",
        "middle",
        "seconds",
        "tail",
        "uptime",
        "usage",
        "usage_text",
        "whole",
    )

    def __init__(self) -> None:
        self.fields: tuple[Any, ...] | None = None
        self.config: ProcessConfig | None = None
        self.env: tuple[tuple[str, str], ...] = ()
        self.head = self.middle = self.tail = ""
        self.seconds = -1
        self.uptime = ""
        self.usage: tuple[Any, ...] | None = None
        self.usage_text = ""
        self.whole = b""

    def render(self, state: ProcessState) -> bytes:
        changed = False
        fields = _kept_fields(state)
        env = tuple(state.env_from_files.items())
        if state.config is not self.config or fields != self.fields or env != self.env:
            self.head = _dumps(_fields_before_uptime(state))[:-1] + ',"uptime":'
            self.middle = "," + _dumps(_fields_before_usage(state))[1:-1] + ',"cpu":'
            after = _dumps(_fields_after_usage(state))[1:-1]
            self.tail = f',{after},"config":{_config_text(state)}}}'
            self.config = state.config
            self.env = env
            changed = True
        self.fields = fields  # equal, or just made: the newest holds no older objects alive
        seconds = int(state.uptime)
        if seconds != self.seconds:
            self.uptime = _dumps(format_duration(seconds))
            self.seconds = seconds
            changed = True
        cpu, memory = state.cpu, state.memory
        usage = (cpu.__class__, cpu, memory.__class__, memory)  # 1 and 1.0 are equal, not alike
        if usage != self.usage:
            self.usage_text = f'{_dumps(cpu)},"memory":{_dumps(memory)}'
            self.usage = usage
            changed = True
        if changed:
            self.whole = f"{self.head}{self.uptime}{self.middle}{self.usage_text}{self.tail}".encode()
        return self.whole


class StateTexts:
    """The body of ``GET /api/pm/list``: ``[state_to_json(state) for state in states]`` as JSON bytes,
    each process's text kept from one request to the next while the state's fields stay equal.

    Nothing has to tell it of a change: each state is a fresh snapshot, compared field by field with
    the one the text was made from (uptime by the whole second it shows, cpu and memory by value), and
    a part is made anew when anything in it differs. One per API (it keeps the processes it last listed).
    """

    def __init__(self) -> None:
        self._texts: dict[str, _Text] = {}

    def render(self, states: Sequence[ProcessState], *, complete: bool = True) -> bytes:
        """``complete``: ``states`` are every process (the texts of others are forgotten); False for a
        part of them (a group)."""
        texts = self._texts
        parts = [b"["]
        for state in states:
            text = texts.get(state.id)
            if text is None:
                text = texts[state.id] = _Text()
            parts.append(text.render(state))
            parts.append(b",")
        parts[-1] = b"]" if states else b"[]"  # the last comma, or the opening bracket of no states
        if complete and len(texts) > len(states):
            listed = {state.id for state in states}
            for process_id in [known for known in texts if known not in listed]:
                del texts[process_id]
        return b"".join(parts)  # one copy of the body's bytes

    def known(self) -> set[str]:
        """The processes whose texts are kept."""
        return set(self._texts)


def states_to_body(states: Sequence[ProcessState]) -> bytes:
    """``[state_to_json(state) for state in states]`` as the JSON bytes of a response."""
    return StateTexts().render(states)


def status_event_to_json(event: StatusChanged) -> dict[str, Any]:
    """A status change (the status may equal ``previous``: then the error or readiness changed)."""
    return {
        "type": "status",
        "id": event.process_id,
        "status": str(event.status),
        "previous": str(event.previous),
        "pid": event.pid,
        "ready": event.ready,
        "restartCount": event.restart_count,
        "lastError": event.last_error,
        "time": format_timestamp(event.timestamp),
    }


def exit_event_to_json(event: ProcessExited) -> dict[str, Any]:
    """An exit as it happens: the common exit fields, and whether it was asked for (stop, restart)."""
    return {
        "type": "exit",
        "id": event.process_id,
        "pid": event.pid,
        **_exit_fields(event.timestamp, event.returncode, event.signal, event.uptime),
        "expected": event.expected,
    }


def run_to_json(run: Run) -> dict[str, Any]:
    """One run of the history (``GET /api/pm/{id}/runs``, the ``run`` event). While it runs, ``ended``,
    ``duration``, ``exitCode``, ``signal`` and ``outcome`` are null::

        {"id": "backup", "number": 12, "trigger": "schedule", "started": "2026-01-30T03:00:00.004Z",
         "ended": "2026-01-30T03:00:41.310Z", "duration": "41s", "durationSeconds": 41.306,
         "exitCode": 0, "signal": null, "outcome": "succeeded", "reason": "exited with code 0",
         "lastLines": ["backup written"], "pid": 4242}
    """
    duration = run.duration
    return {
        "id": run.process_id,
        "number": run.number,
        "trigger": str(run.trigger),
        "started": format_timestamp(run.started),
        "ended": format_timestamp(run.ended) if run.ended is not None else None,
        "duration": format_duration(duration) if duration is not None else None,
        "durationSeconds": round(duration, 3) if duration is not None else None,
        "exitCode": run.returncode,
        "signal": _signal_name(run.signal),
        "outcome": str(run.outcome) if run.outcome is not None else None,
        "reason": run.reason,
        "lastLines": list(run.last_lines),
        "pid": run.pid or None,
    }


def run_event_to_json(event: RunRecorded) -> dict[str, Any]:
    """A run began (``outcome`` null), ended, or was skipped: ``{"type": "run", ...the run}``."""
    return {"type": "run", **run_to_json(event.run)}


def line_to_json(line: LogLine) -> dict[str, Any]:
    """A log line; ``stream`` is ``stdout``, ``stderr`` or ``system`` (processman's own notes); ``level``
    is ``debug``, ``info``, ``warn`` or ``error``: the line's own, else stderr's Error or Info."""
    return {
        "timestamp": format_timestamp(line.timestamp),
        "processId": line.process_id,
        "stream": line.stream,
        "content": line.content,
        "level": line_level(line.content, line.stream),
    }


def lines_event_to_json(event: LogLines) -> list[dict[str, Any]]:
    """The lines of one output event, each with its sequence number and level (see ``levels``); a
    partial line (the latest state of a line redrawn with carriage returns) is marked
    ``"partial": true`` and has no sequence number."""
    stamp = format_timestamp(event.timestamp)
    levels = levels_of(event.lines, event.stream)
    default = stream_level(event.stream)
    # Hot (every line a stream sends): the key that differs is chosen once, not per line.
    key, first = ("partial", None) if event.partial else ("seq", event.first_seq)
    return [
        {
            "timestamp": stamp,
            "processId": event.process_id,
            "stream": event.stream,
            "content": content,
            "level": levels[index] if levels else default,
            key: True if first is None else first + index,
        }
        for index, content in enumerate(event.lines)
    ]


def plan_to_json(plan: ReloadPlan) -> dict[str, Any]:
    """What a reload changes (or would change, with ``dryRun``)."""
    return {
        "added": list(plan.added),
        "removed": list(plan.removed),
        "changed": {
            process_id: {name: {"old": old, "new": new} for name, (old, new) in diff.items()}
            for process_id, diff in plan.changed.items()
        },
        "unchanged": list(plan.unchanged),
    }
