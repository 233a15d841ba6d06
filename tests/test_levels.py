"""Log levels read from the start of a line (Python logging, uvicorn, gunicorn, logfmt, JSON), used by
PocketBase's Logs, the API (so the dashboard) and the console; without one, stdout is Info and stderr
Error."""

from __future__ import annotations

import io
import logging

import pytest

from processman.api.wire import line_to_json, lines_event_to_json
from processman.cli.console import Console, ConsoleFormatter
from processman.engine.events import LogLines
from processman.levels import level_of, line_level
from processman.logs import LogLine
from processman.pocketbase.mirror import LogMirror

SHAPES = [
    ("INFO:root:loaded", "info"),
    ("WARNING:app.db:slow query", "warn"),
    ("ERROR:app:boom", "error"),
    ("CRITICAL:app:disk full", "error"),
    ("DEBUG:asyncio:Using selector: EpollSelector", "debug"),
    ("INFO:     Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)", "info"),
    ('INFO:     127.0.0.1:50000 - "GET / HTTP/1.1" 200 OK', "info"),
    ("[2026-01-01 12:00:00 +0000] [123] [INFO] Starting gunicorn 23.0.0", "info"),
    ("[2026-01-01 12:00:00 +0000] [123] [ERROR] Worker (pid:124) was sent SIGKILL!", "error"),
    ("[INFO] listening", "info"),
    ("[WARN] retrying", "warn"),
    ("2026-01-01 12:00:00,123 INFO myapp: ready", "info"),
    ("2026-01-01 12:00:00,123 - myapp - WARNING - low memory", "warn"),
    ("time=2026-01-01T12:00:00Z level=info msg=hello", "info"),
    ('time="2026-01-01T12:00:00Z" level=error msg="bad"', "error"),
    ('{"level": "warning", "message": "careful"}', "warn"),
    ('{"time": 1, "levelname": "INFO", "msg": "ok"}', "info"),
    ('{"level":50,"time":1,"msg":"pino error"}', "error"),
    ('{"level":30,"time":1,"msg":"pino info"}', "info"),
    ("\x1b[32mINFO\x1b[0m:     coloured uvicorn", "info"),
]

NO_LEVEL = [
    "Traceback (most recent call last):",
    '  File "app.py", line 3, in <module>',
    "ValueError: the information was wrong",
    "all good, informative output",
    "battery level: 30",
    "",
]


@pytest.mark.parametrize(("line", "level"), SHAPES)
def test_a_level_at_the_start_of_a_line_is_recognised(line: str, level: str) -> None:
    assert level_of(line) == level


@pytest.mark.parametrize("line", NO_LEVEL)
def test_without_a_level_the_stream_decides(line: str) -> None:
    assert level_of(line) is None
    assert line_level(line, "stdout") == "info"
    assert line_level(line, "stderr") == "error"
    assert line_level(line, "system") == "info"


def test_a_level_deep_in_a_long_line_is_not_looked_for() -> None:
    assert level_of("x" * 500 + " ERROR: late") is None


def test_pocketbases_logs_get_the_lines_own_level() -> None:
    mirror = LogMirror()
    lines = ("INFO:     Started server process [1]", "plain stderr", "WARNING:app:slow", "DEBUG:x:y")
    mirror.add_output(LogLines("web", "stderr", 1, 0.0, lines))
    mirror.add_output(LogLines("web", "stdout", 5, 0.0, ("ERROR:app:on stdout", "plain stdout")))
    assert [line["level"] for line in mirror.take_batch()] == [
        "info",
        "error",
        "warn",
        "debug",
        "error",
        "info",
    ]


def test_the_api_sends_each_lines_level() -> None:
    event = LogLines("web", "stderr", 1, 0.0, ("INFO:     up", "boom"))
    assert [line["level"] for line in lines_event_to_json(event)] == ["info", "error"]
    assert line_to_json(LogLine(1, 0.0, "web", "system", "restarting"))["level"] == "info"


def test_the_console_marks_by_level_not_by_stream() -> None:
    stream = io.StringIO()
    console = Console(stream, ConsoleFormatter(colour=False))
    console.echo(
        LogLines(
            "web", "stderr", 1, 0.0, ("INFO:     up", "Traceback (most recent call last):", "INFO:     again")
        )
    )
    console.close()
    shown = stream.getvalue().splitlines()
    assert [line.split()[2] for line in shown] == ["|", "!", "|"], shown
    assert shown[1].endswith("! Traceback (most recent call last):")


def test_python_logging_gets_each_lines_own_level(caplog: pytest.LogCaptureFixture) -> None:
    from processman.logs import _log_each_line

    with caplog.at_level(logging.DEBUG, logger="processman.output"):
        _log_each_line(LogLines("web", "stderr", 1, 0.0, ("INFO:     up", "WARNING:app:slow", "Traceback")))
    assert [record.levelno for record in caplog.records] == [logging.INFO, logging.WARNING, logging.ERROR]
