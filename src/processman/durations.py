"""Go-style duration strings: ``500ms``, ``2s``, ``1m30s``, ``1h``."""

from __future__ import annotations

import re

# ASCII digits only (Python's \d takes any Unicode digit), as JSON Schema's patterns read it.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# The same, above zero (some digit 1-9), and at least one second (a part of 1 or more s, m or h, or
# of 1000 or more ms): JSON Schema's patterns for fields with a lower bound. The loader checks the
# bound itself; these give an editor the same answer for any duration written in one part.
POSITIVE_DURATION_PATTERN = r"^(?=.*[1-9])" + DURATION_PATTERN[1:]
SECOND_OR_MORE_PATTERN = (
    r"^(?=(.*[a-z])?([1-9][0-9]*(\.[0-9]+)?(s|m|h)([0-9]|$)|[1-9][0-9]{3,}(\.[0-9]+)?ms))"
    + DURATION_PATTERN[1:]
)
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_WHOLE = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Return the number of seconds in ``text``; raise ValueError when it is not a duration.

    >>> parse_duration("1m30s")
    90.0
    """
    if not _WHOLE.fullmatch(text):  # fullmatch: "$" alone lets "2s\n" through
        raise ValueError(f"not a duration: {text!r}")
    parts: list[tuple[str, str]] = _PART.findall(text)
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def format_duration(seconds: float) -> str:
    """The shortest readable form: ``0.5`` -> ``500ms``, ``9015`` -> ``2h30m15s``."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    text = ""
    if hours:
        text += f"{hours}h"
    if minutes:
        text += f"{minutes}m"
    if secs or not text:
        text += f"{secs}s"
    return text
