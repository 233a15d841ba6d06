"""serve's console: a batch of child lines printed at once reads exactly as the same lines one by one."""

from __future__ import annotations

import io
import logging

import pytest

from processman.cli.console import ConsoleEcho, ConsoleFormatter
from processman.engine.events import LogLines

BATCHES = [
    ("plain ASCII", ("first", "second\twith a tab", "")),
    ("non-ASCII", ("café ☕", "日本語")),
    ("escapes", ("\x1b[32mgreen\x1b[0m", "\x1b]0;title\x07", "hidden\r12:00:00 x | forged", "\x00\x7f\x9b")),
]


def _one_by_one(formatter: ConsoleFormatter, event: LogLines) -> str:
    lines = []
    for text in event.lines:
        record = logging.LogRecord("processman.output", logging.INFO, "", 0, "%s", (text,), None)
        record.created = event.timestamp
        record.process_id, record.stream = event.process_id, event.stream
        lines.append(formatter.format(record) + "\n")
    return "".join(lines)


@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize(("name", "lines"), BATCHES, ids=[name for name, _ in BATCHES])
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_batch_reads_as_its_lines_one_by_one(
    colour: bool, name: str, lines: tuple[str, ...], stream: str
) -> None:
    formatter = ConsoleFormatter(colour=colour)
    event = LogLines("worker", stream, 1, 1_700_000_000.25, lines)
    binary = io.BytesIO()
    text_over_binary = io.TextIOWrapper(binary, encoding="utf-8", write_through=False)
    ConsoleEcho(logging.StreamHandler(text_over_binary), formatter)(event)
    text_only = io.StringIO()
    ConsoleEcho(logging.StreamHandler(text_only), formatter)(event)
    expected = _one_by_one(formatter, event)
    assert binary.getvalue().decode() == expected
    assert text_only.getvalue() == expected
    assert "\x07" not in expected and "\r" not in expected  # the formatter's escaping, kept


def test_a_batch_comes_after_what_processman_wrote_before_it() -> None:
    binary = io.BytesIO()
    stream = io.TextIOWrapper(binary, encoding="utf-8")
    handler = logging.StreamHandler(stream)
    stream.write("processman's own line\n")  # still in the text layer's buffer
    ConsoleEcho(handler, ConsoleFormatter(colour=False))(LogLines("w", "stdout", 1, 0.0, ("child line",)))
    assert binary.getvalue().decode().splitlines()[0] == "processman's own line"
    assert binary.getvalue().decode().splitlines()[1].endswith("w          | child line")


def test_a_batch_is_written_in_the_stream_encoding() -> None:
    binary = io.BytesIO()
    stream = io.TextIOWrapper(binary, encoding="latin-1")
    ConsoleEcho(logging.StreamHandler(stream), ConsoleFormatter(colour=False))(
        LogLines("w", "stdout", 1, 0.0, ("café", "日本"))
    )
    lines = binary.getvalue().decode("latin-1").splitlines()
    assert lines[0].endswith("| café")
    assert lines[1].endswith("| \\u65e5\\u672c")  # what latin-1 cannot hold is shown escaped
