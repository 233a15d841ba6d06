"""The level of a log line, read from its start: Python's ``logging`` (``INFO:name:``), uvicorn
(``INFO:     ``), gunicorn (``[date] [pid] [INFO]``), ``[WARN]``, logfmt (``level=info``) and JSON lines
(``"level": "warning"``, pino's ``"level": 30``).

uvicorn, gunicorn and ``logging`` write their INFO lines to stderr: without this every one of them would
look like an error. A line with no recognisable level keeps its stream's: stdout (and processman's own
``system`` notes) Info, stderr Error.

Output is a hot path, so only a bounded prefix of a line is looked at, with one compiled expression,
and only where it is needed (PocketBase's Logs at their bounded rate, the API's readers, the console).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["DEBUG", "ERROR", "INFO", "WARN", "hinted", "level_of", "levels_of", "line_level", "stream_level"]

DEBUG, INFO, WARN, ERROR = "debug", "info", "warn", "error"

PREFIX = 160  # characters of a line looked at: a timestamp, a pid and a logger name fit

_LEVEL = re.compile(
    r"""
    # A level word after nothing but a timestamp, a pid, brackets or colours (nothing lower case).
    ^(?:\x1b\[[0-9;]*m|[^a-z\n])*?
    (?<![A-Z])(?P<word>TRACE|DEBUG|INFO|NOTICE|WARNING|WARN|ERROR|CRITICAL|FATAL)(?![A-Za-z])
    # Python's cookbook format: "2026-01-01 12:00:00,123 - name - WARNING - message".
    | ^[^\n]{0,80}?\ -\ (?P<dashed>DEBUG|INFO|WARNING|ERROR|CRITICAL)[ ]-[ ]
    # logfmt and JSON: level=info, "level": "warning", "levelname": "INFO", "level":30 (pino).
    | ^[^\n]*?(?<![A-Za-z])(?:levelname|level|lvl|severity)(?:=|"?\s*:\s*)"?(?P<key>[A-Za-z]+|\d\d)
    """,
    re.VERBOSE,
)

_NAMES = {
    "trace": DEBUG,
    "debug": DEBUG,
    "info": INFO,
    "notice": INFO,
    "warn": WARN,
    "warning": WARN,
    "error": ERROR,
    "err": ERROR,
    "critical": ERROR,
    "crit": ERROR,
    "fatal": ERROR,
    "panic": ERROR,
    "alert": ERROR,
    "emerg": ERROR,
}
# pino and bunyan: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal.
_NUMBERS = {"10": DEBUG, "20": DEBUG, "30": INFO, "40": WARN, "50": ERROR, "60": ERROR}

# Words one of which a line must contain to carry a level: a substring test rules out most batches
# (plain output) at memory speed before any line is matched.
_HINTS = (
    "INFO",
    "WARN",
    "ERROR",
    "DEBUG",
    "CRITICAL",
    "FATAL",
    "TRACE",
    "NOTICE",
    "level",
    "lvl",
    "severity",
)


def level_of(line: str) -> str | None:
    """``debug``, ``info``, ``warn`` or ``error`` when the line starts with a level; None otherwise."""
    head = line[:PREFIX]
    if not hinted(head):
        return None
    found = _LEVEL.match(head)
    if found is None:
        return None
    word = found["word"] or found["dashed"]
    if word is not None:
        return _NAMES[word.lower()]
    key = found["key"]
    if key.isdigit():
        return _NUMBERS.get(key) if line.startswith("{") else None  # "battery level: 30" is no level
    return _NAMES.get(key.lower())


def stream_level(stream: str) -> str:
    """The level of a line without one of its own: the child's stderr is Error, the rest Info."""
    return ERROR if stream == "stderr" else INFO


def line_level(line: str, stream: str) -> str:
    return level_of(line) or stream_level(stream)


# The console only marks errors and warnings, and its echo is otherwise a few scans of a batch in all:
# it looks for the words of the common shapes that change a line's mark from its stream's (each word is
# a scan of the whole batch). On stderr an ERROR line is marked as an error anyway.
_MARK_HINTS = {"stderr": ("INFO", "WARN", "DEBUG", "level"), "stdout": ("ERROR", "WARN", "CRITICAL", "level")}


def hinted(text: str, stream: str | None = None) -> bool:
    """False when no line of ``text`` can carry a level: a test at memory speed for whole batches.
    With ``stream``, only the levels that change a console mark from that stream's are looked for."""
    hints = _HINTS if stream is None else _MARK_HINTS.get(stream, _MARK_HINTS["stdout"])
    # A word's first letter is looked for first: one character is found by memchr, fifty times faster
    # than a word, and output without capitals (or without an "l") rules most words out that way.
    return any(hint[0] in text and hint in text for hint in hints)


def levels_of(
    lines: Sequence[str], stream: str, text: str | None = None, *, marks_only: bool = False
) -> list[str] | None:
    """The level of each line, or None when every line has its stream's level (then none was read).
    ``text``: the lines joined with newlines, when the caller has it. ``marks_only``: only warnings and
    errors matter (the console's marks), so a stdout batch is looked at for those alone."""
    joined = "\n".join(lines) if text is None else text
    if not hinted(joined, stream if marks_only else None):
        return None
    default = stream_level(stream)
    return [level_of(line) or default for line in lines]
