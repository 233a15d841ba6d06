"""When a job's runs are due: the next time after a moment, and the last one before it.

Cron expressions are evaluated by cronsim in the schedule's time zone (default: the machine's). Like
Debian's cron, on the day clocks go forward a time that does not exist (02:30 when 02:00 jumps to 03:00)
runs at once after the change (03:00), and on the day they go back a time that happens twice runs once,
at its first occurrence. An interval (``every``) counts from when the job was armed, in real seconds.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, tzinfo

from processman.config import Schedule

# cronsim (with calendar) and zoneinfo are imported by the first schedule: most configs have none.

LOCALTIME = "/etc/localtime"


def machine_zone() -> tzinfo:
    """The machine's time zone: TZ when it names one, else /etc/localtime, else UTC."""
    import zoneinfo

    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open(LOCALTIME, "rb") as file:
            return zoneinfo.ZoneInfo.from_file(file, key="localtime")
    except (OSError, ValueError):
        return UTC


def zone_of(schedule: Schedule) -> tzinfo:
    import zoneinfo

    return zoneinfo.ZoneInfo(schedule.timezone) if schedule.timezone else machine_zone()


def next_due(schedule: Schedule, after: float, *, anchor: float | None = None) -> float:
    """The first due time strictly after ``after`` (wall-clock seconds). For an interval, due times are
    ``anchor + k * every`` (``anchor`` defaults to ``after``: the first run one interval later)."""
    if schedule.every is not None:
        start = after if anchor is None else anchor
        if start > after:
            return start
        steps = int((after - start) // schedule.every) + 1
        return start + steps * schedule.every
    from cronsim import CronSim

    assert schedule.cron is not None
    moment = datetime.fromtimestamp(after, zone_of(schedule))
    return next(iter(CronSim(schedule.cron, moment))).timestamp()


def last_due(schedule: Schedule, before: float, *, anchor: float | None = None) -> float | None:
    """The last due time at or before ``before`` (None: none since ``anchor`` for an interval)."""
    if schedule.every is not None:
        if anchor is None or anchor + schedule.every > before:
            return None
        return anchor + ((before - anchor) // schedule.every) * schedule.every
    from cronsim import CronSim

    assert schedule.cron is not None
    # cronsim's reverse iteration yields times strictly before its start: start just after ``before``.
    moment = datetime.fromtimestamp(before + 0.001, zone_of(schedule))
    try:
        return next(iter(CronSim(schedule.cron, moment, reverse=True))).timestamp()
    except StopIteration:
        return None
