"""A job's ``schedule``: when it runs, in which time zone, and what happens to a run that is due while
the last one still runs or while the manager was down.

In a file, a cron string (``"0 3 * * *"``, ``"@daily"``), the object form ``{"cron": "0 3 * * *",
"timezone": "Europe/Berlin", "catchUp": true, "overlap": "skip", "runOnStart": false}``, or an interval
``{"every": "15m"}`` (which takes the same ``catchUp``, ``overlap`` and ``runOnStart``). Cron expressions
are read by cronsim, which follows Debian's cron, daylight-saving quirks included (see
:mod:`processman.engine.timetable`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from processman.config.fields import Bool, Choice, Duration, Kind, Problems
from processman.durations import SECOND_OR_MORE_PATTERN, format_duration
from processman.errors import ConfigError

OVERLAP_POLICIES = ("skip", "queue", "allow")
MIN_EVERY = 1.0
# Cron's named schedules, as Vixie cron reads them.
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
CRON_EXPECTED = 'a five-field cron expression like "0 3 * * *", or "@hourly", "@daily", "@weekly", "@monthly"'
SCHEDULE_EXPECTED = (
    'a cron string like "0 3 * * *", an object {"cron": "0 3 * * *", "timezone": ...} or {"every": "15m"}'
)
# What the JSON Schema can tell of a cron expression: five fields or a named schedule.
CRON_PATTERN = r"^\s*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+(\s+\S+){4})\s*$"
_KEYS = ("cron", "every", "timezone", "catchUp", "overlap", "runOnStart")


def cron_fields(expression: str) -> str:
    """The five fields of a cron expression, aliases expanded (``@daily`` -> ``0 0 * * *``)."""
    text = " ".join(expression.split())
    return CRON_ALIASES.get(text.lower(), text)


def cron_problem(expression: str) -> str | None:
    """What is wrong with a cron expression, or None."""
    fields = cron_fields(expression)
    if len(fields.split(" ")) != 5:
        return f"expected {CRON_EXPECTED}, got {json.dumps(expression)}"
    from cronsim import CronSim, CronSimError  # with calendar: only for a config with a schedule

    try:
        CronSim(fields, datetime(2000, 1, 1))
    except CronSimError as exc:
        if _never_comes(fields):
            return f"{json.dumps(expression)} never comes: none of its months has that day"
        return f"expected {CRON_EXPECTED}, got {json.dumps(expression)} ({str(exc).lower()})"
    return None


def _never_comes(fields: str) -> bool:
    """A day of the month that each month named lacks (``0 3 31 2 *``): valid on any other month."""
    from cronsim import CronSim, CronSimError

    minute, hour, day, month, weekday = fields.split(" ")
    try:
        CronSim(f"{minute} {hour} {day} * {weekday}", datetime(2000, 1, 1))
        CronSim(f"{minute} {hour} 1 {month} {weekday}", datetime(2000, 1, 1))
    except CronSimError:
        return False
    return True


def _suggest(key: str) -> str:
    """``did you mean "catchUp"?`` for a near miss (case aside), else the fields there are."""
    import difflib  # only for a mistake

    by_lower = {known.lower(): known for known in _KEYS}
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    return f'did you mean "{by_lower[close[0]]}"?' if close else f"expected one of {', '.join(_KEYS)}"


def timezone_problem(name: str) -> str | None:
    """What is wrong with an IANA time zone name, or None."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f'expected an IANA time zone name like "Europe/Berlin" or "UTC", got {json.dumps(name)}'
    return None


@dataclass(frozen=True)
class Schedule:
    """When a job runs: ``cron`` (five fields, aliases expanded) in ``timezone`` (None: the machine's),
    or every ``every`` seconds. Raises ConfigError when a value breaks the rules a file follows.

    ``overlap``: what a run due while the last one still runs does (skip it and record it as skipped;
    queue it to run after; allow it to run beside). ``catch_up``: a run missed while the manager was down
    runs once at start. ``run_on_start``: a run at once when the job starts, besides its times.
    """

    cron: str | None = None
    every: float | None = None
    timezone: str | None = None
    catch_up: bool = False
    overlap: Literal["skip", "queue", "allow"] = "skip"
    run_on_start: bool = False

    def __post_init__(self) -> None:
        problems: list[str] = []
        if (self.cron is None) == (self.every is None):
            problems.append('set exactly one of "cron" and "every"')
        if self.cron is not None:
            problem = cron_problem(self.cron) if isinstance(self.cron, str) else f"expected {CRON_EXPECTED}"
            if problem:
                problems.append(f"cron: {problem}")
            else:
                object.__setattr__(self, "cron", cron_fields(self.cron))
        if self.every is not None and (
            not isinstance(self.every, int | float) or isinstance(self.every, bool) or self.every < MIN_EVERY
        ):
            problems.append(f"every: expected a duration of at least 1s, got {self.every!r}")
        if self.timezone is not None:
            if self.every is not None:
                problems.append('timezone: only a "cron" schedule has a time zone')
            elif not isinstance(self.timezone, str) or (problem := timezone_problem(self.timezone)):
                problems.append(
                    f"timezone: {problem if isinstance(self.timezone, str) else 'expected a name'}"
                )
        if self.overlap not in OVERLAP_POLICIES:
            problems.append(f'overlap: expected "skip", "queue" or "allow", got {self.overlap!r}')
        if problems:
            raise ConfigError("invalid schedule: " + "; ".join(problems))

    def describe(self) -> str:
        """``0 3 * * * (Europe/Berlin)``, ``every 15m``."""
        if self.every is not None:
            return f"every {format_duration(self.every)}"
        return f"{self.cron} ({self.timezone})" if self.timezone else str(self.cron)


class ScheduleKind(Kind):
    """The ``schedule`` field: a cron string, or the object form."""

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> Schedule | None:
        if isinstance(raw, str):
            problem = cron_problem(raw)
            if problem:
                problems.error(at, problem)
                return None
            return Schedule(cron=raw)
        if not isinstance(raw, Mapping):
            problems.expect(at, SCHEDULE_EXPECTED, raw)
            return None
        before = len(problems.items)
        for key in raw:
            if key not in _KEYS:
                problems.error(f"{at}.{key}", f"unknown schedule field; {_suggest(str(key))}")
        if ("cron" in raw) == ("every" in raw):
            problems.expect(at, 'an object with exactly one of "cron" and "every"', raw)
            return None
        values: dict[str, Any] = {}
        if "cron" in raw:
            cron = raw["cron"]
            problem = cron_problem(cron) if isinstance(cron, str) else f"expected {CRON_EXPECTED}"
            if problem:
                problems.error(f"{at}.cron", problem)
            values["cron"] = cron
        else:
            every = Duration().read(raw["every"], f"{at}.every", problems, base_dir)
            if every is not None and every < MIN_EVERY:
                problems.expect(f"{at}.every", "a duration of at least 1s", raw["every"])
            values["every"] = every
        if "timezone" in raw:
            zone = raw["timezone"]
            if "every" in raw:
                problems.error(f"{at}.timezone", 'only a "cron" schedule has a time zone')
            elif not isinstance(zone, str):
                problems.expect(f"{at}.timezone", 'an IANA time zone name like "Europe/Berlin"', zone)
            elif problem := timezone_problem(zone):
                problems.error(f"{at}.timezone", problem)
            values["timezone"] = zone
        for key, attr in (("catchUp", "catch_up"), ("runOnStart", "run_on_start")):
            if key in raw:
                values[attr] = Bool().read(raw[key], f"{at}.{key}", problems, base_dir)
        if "overlap" in raw:
            values["overlap"] = Choice(OVERLAP_POLICIES).read(
                raw["overlap"], f"{at}.overlap", problems, base_dir
            )
        if len(problems.items) > before:
            return None
        try:
            return Schedule(**values)
        except ConfigError as exc:  # a rule the reading above missed: still a problem, never a crash
            problems.error(at, str(exc))
            return None

    def check(self, value: Any, at: str, problems: Problems) -> None:
        if not isinstance(value, Schedule):  # a Schedule checked itself when it was made
            problems.expect(at, "a Schedule", value)

    def show(self, value: Any, *, mask: bool) -> Any:
        return schedule_to_json(value)

    def schema(self) -> dict[str, Any]:
        import zoneinfo

        common = {
            "catchUp": {
                "type": "boolean",
                "default": False,
                "description": "run once at start if a run was missed",
            },
            "overlap": {
                "enum": list(OVERLAP_POLICIES),
                "default": "skip",
                "description": "a run due while the last one runs: skip it, queue it, or allow it beside",
            },
            "runOnStart": {
                "type": "boolean",
                "default": False,
                "description": "also run when the job starts",
            },
        }
        return {
            "oneOf": [
                {"type": "string", "pattern": CRON_PATTERN, "description": CRON_EXPECTED},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["cron"],
                    "properties": {
                        "cron": {"type": "string", "pattern": CRON_PATTERN, "description": CRON_EXPECTED},
                        "timezone": {
                            "type": "string",
                            # The machine's list, as the loader checks; none where it has no zone data.
                            **({"enum": zones} if (zones := sorted(zoneinfo.available_timezones())) else {}),
                            "description": "IANA time zone (default: the machine's)",
                        },
                        **common,
                    },
                },
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["every"],
                    "properties": {
                        "every": {
                            **Duration().schema(),
                            "pattern": SECOND_OR_MORE_PATTERN,
                            "description": "interval, 1s or more",
                        },
                        **common,
                    },
                },
            ]
        }


def schedule_to_json(schedule: Schedule) -> dict[str, Any]:
    """The object form, every key given."""
    data: dict[str, Any] = {}
    if schedule.cron is not None:
        data["cron"] = schedule.cron
        if schedule.timezone is not None:
            data["timezone"] = schedule.timezone
    else:
        assert schedule.every is not None
        data["every"] = format_duration(schedule.every)
    data.update(catchUp=schedule.catch_up, overlap=schedule.overlap, runOnStart=schedule.run_on_start)
    return data
