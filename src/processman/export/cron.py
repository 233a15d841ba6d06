"""Five cron fields as systemd calendar events (``OnCalendar=``) and as the schedule of a Kubernetes
CronJob.

Each field is read into the set of values it matches, then written the way systemd reads it: ``*``,
``start/step`` for a step that runs to the field's end, else a list of values and ``a..b`` ranges. When
both the day of the month and the day of the week are restricted, cron runs on either (a day that
matches one of them); systemd's event needs both, so that schedule becomes two events.
"""

from __future__ import annotations

from dataclasses import dataclass

from processman.errors import ConfigError

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_SYSTEMD_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    names_from: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day of week", 0, 7, _DAYS, 0),
)


class CronUnsupported(ConfigError):
    """A cron feature systemd's calendar cannot say (``W``, ``#``, ``L`` in a day of the week)."""


def _number(text: str, field: _Field) -> int:
    lowered = text.lower()
    if lowered in field.names:
        return field.names.index(lowered) + field.names_from
    if not text.isdigit():
        raise CronUnsupported(f"{field.name}: {text!r} cannot be written as a systemd calendar event")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronUnsupported(f"{field.name}: {value} is out of range")
    return value


def _values(text: str, field: _Field) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise CronUnsupported(f"{field.name}: step {step_text!r}")
        if span in ("*", "?"):
            start, end = field.low, field.high
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = _number(first, field), _number(last, field)
        else:
            start = _number(span, field)
            end = field.high if step_text else start  # "5/10": from 5 to the end, every 10
        values.update(range(start, end + 1, step))
    if field.name == "day of week" and 7 in values:  # 7 is Sunday too
        values = (values - {7}) | {0}
    return values


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and runs[-1][1] == value - 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _systemd_field(values: set[int], field: _Field, width: int) -> str:
    high = 6 if field.name == "day of week" else field.high
    ordered = sorted(values)
    if ordered == list(range(field.low, high + 1)):
        return "*"
    if len(ordered) > 1:
        step = ordered[1] - ordered[0]
        if ordered == list(range(ordered[0], high + 1, step)) and ordered[-1] + step > high:
            return f"{ordered[0]:0{width}d}/{step}"
    parts = []
    for start, end in _runs(ordered):
        if start == end:
            parts.append(f"{start:0{width}d}")
        elif end == start + 1:
            parts.append(f"{start:0{width}d},{end:0{width}d}")
        else:
            parts.append(f"{start:0{width}d}..{end:0{width}d}")
    return ",".join(parts)


def _weekdays(values: set[int]) -> str:
    # systemd's week runs Monday to Sunday: "Sun..Tue" would wrap, and is refused.
    parts = []
    for start, end in _runs(sorted(7 if value == 0 else value for value in values)):
        names = _SYSTEMD_DAYS[start % 7], _SYSTEMD_DAYS[end % 7]
        parts.append(names[0] if start == end else f"{names[0]}..{names[1]}")
    return ",".join(parts)


def systemd_calendar(cron: str, timezone: str | None = None) -> list[str]:
    """``OnCalendar=`` values for five cron fields (aliases already expanded), in ``timezone``.

    >>> systemd_calendar("*/15 9-17 * * 1-5", "Europe/Berlin")
    ['Mon..Fri *-*-* 09..17:00/15:00 Europe/Berlin']
    >>> systemd_calendar("0 3 1 * 0")
    ['*-*-01 03:00:00', 'Sun *-*-* 03:00:00']
    """
    texts = cron.split()
    if len(texts) != 5:
        raise CronUnsupported(f"expected five cron fields, got {cron!r}")
    minute_text, hour_text, dom_text, month_text, dow_text = texts
    if dom_text.upper() == "L":  # the last day of the month: systemd's "~01"
        dom, dom_restricted = "~01", True
    else:
        dom_values = _values(dom_text, _FIELDS[2])
        dom, dom_restricted = "-" + _systemd_field(dom_values, _FIELDS[2], 2), dom_text not in ("*", "?")
    minute = _systemd_field(_values(minute_text, _FIELDS[0]), _FIELDS[0], 2)
    hour = _systemd_field(_values(hour_text, _FIELDS[1]), _FIELDS[1], 2)
    month = _systemd_field(_values(month_text, _FIELDS[3]), _FIELDS[3], 2)
    dow_values = _values(dow_text, _FIELDS[4])
    dow_restricted = dow_text not in ("*", "?") and dow_values != set(range(7))
    zone = f" {timezone}" if timezone else ""
    time = f"{hour}:{minute}:00{zone}"
    weekday = _weekdays(dow_values) + " "
    if dom_restricted and dow_restricted:
        return [f"*-{month}{dom} {time}", f"{weekday}*-{month}-* {time}"]
    return [f"{weekday if dow_restricted else ''}*-{month}{dom} {time}"]
