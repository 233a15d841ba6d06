"""serve's console: a batch of child lines printed at once reads exactly as the same lines one by one,
processman's notes are shown apart from the child's output, and a console nobody reads never makes
anyone wait: records are dropped, counted and the count is told where they are missing."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections.abc import Iterator

import pytest

from processman.cli.console import Console, ConsoleFormatter
from processman.engine.events import LogLines
from tests.conftest import wait_for

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


def _shown(stream: io.TextIOBase, formatter: ConsoleFormatter, *events: LogLines) -> None:
    console = Console(stream, formatter)  # type: ignore[arg-type]
    for event in events:
        console.echo(event)
    console.close()


@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize(("name", "lines"), BATCHES, ids=[name for name, _ in BATCHES])
@pytest.mark.parametrize("stream", ["stdout", "stderr", "system"])
def test_a_batch_reads_as_its_lines_one_by_one(
    colour: bool, name: str, lines: tuple[str, ...], stream: str
) -> None:
    formatter = ConsoleFormatter(colour=colour)
    event = LogLines("worker", stream, 1, 1_700_000_000.25, lines)
    binary = io.BytesIO()
    text_over_binary = io.TextIOWrapper(binary, encoding="utf-8", write_through=False)
    _shown(text_over_binary, formatter, event)
    text_only = io.StringIO()
    _shown(text_only, formatter, event)
    expected = _one_by_one(formatter, event)
    assert binary.getvalue().decode() == expected
    assert text_only.getvalue() == expected
    assert "\x07" not in expected and "\r" not in expected  # the formatter's escaping, kept


def test_processmans_notes_are_marked_apart_from_the_childs_output() -> None:
    events = (
        LogLines("w", "stdout", 1, 0.0, ("out",)),
        LogLines("w", "stderr", 2, 0.0, ("err",)),
        LogLines("w", "system", 3, 0.0, ("restarting: restart requested",)),
        # as a server without the "system" stream sends a note
        LogLines("w", "stderr", 4, 0.0, ("[processman] ready after 2s",)),
    )
    text_only = io.StringIO()
    _shown(text_only, ConsoleFormatter(colour=False), *events)
    assert [line[9:] for line in text_only.getvalue().splitlines()] == [
        "w          | out",
        "w          ! err",
        "w          ~ restarting: restart requested",
        "w          ~ ready after 2s",
    ]
    coloured = io.StringIO()
    _shown(coloured, ConsoleFormatter(colour=True), events[2])
    assert "\x1b[2mrestarting: restart requested\x1b[0m" in coloured.getvalue()  # dimmed


def test_records_and_batches_come_out_in_order() -> None:
    stream = io.StringIO()
    console = Console(stream, ConsoleFormatter(colour=False))
    console.record("processman's own line")
    console.echo(LogLines("w", "stdout", 1, 0.0, ("child line",)))
    console.record("another")
    console.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "processman's own line"
    assert lines[1].endswith("w          | child line")
    assert lines[2] == "another"


def test_a_batch_is_written_in_the_stream_encoding() -> None:
    binary = io.BytesIO()
    stream = io.TextIOWrapper(binary, encoding="latin-1")
    _shown(stream, ConsoleFormatter(colour=False), LogLines("w", "stdout", 1, 0.0, ("café", "日本")))
    lines = binary.getvalue().decode("latin-1").splitlines()
    assert lines[0].endswith("| café")
    assert lines[1].endswith("| \\u65e5\\u672c")  # what latin-1 cannot hold is shown escaped


@pytest.fixture
def pipe() -> Iterator[tuple[io.TextIOWrapper, int]]:
    """A pipe whose write end is the console's stream; the test reads the other end (or does not)."""
    read_end, write_end = os.pipe()
    stream = open(write_end, "w", encoding="utf-8")  # noqa: SIM115
    yield stream, read_end
    with contextlib.suppress(OSError):
        stream.close()
    with contextlib.suppress(OSError):
        os.close(read_end)


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_a_console_nobody_reads_drops_records_and_says_so_where_they_are_missing(
    pipe: tuple[io.TextIOWrapper, int],
) -> None:
    stream, read_end = pipe
    console = Console(stream, ConsoleFormatter(colour=False), max_records=10)
    big = "x" * 70_000  # more than the pipe holds: the console's thread now waits for a reader
    console.record(big)
    wait_for(lambda: console._records == 0, 10, "the console's thread to take the big record")
    for number in range(100):
        console.record(f"record {number}")  # returns at once
    assert console.dropped == 100 - 10
    dropped = console.dropped
    reader = threading.Thread(target=lambda: result.append(_read_all(read_end)))
    result: list[str] = []
    reader.start()
    wait_for(lambda: console._records == 0, 10, "the console to catch up")
    console.record("after the reader came back")
    console.close(timeout=10)
    stream.close()
    reader.join(10)
    lines = result[0].splitlines()
    shown = 100 - dropped
    assert lines[0] == big
    assert lines[1 : 1 + shown] == [f"record {number}" for number in range(shown)]
    notice = f"processman | {dropped} log records dropped: this output was not read in time"
    assert lines[1 + shown].endswith(notice)
    assert lines[2 + shown :] == ["after the reader came back"]


def test_a_closed_output_is_not_an_error(pipe: tuple[io.TextIOWrapper, int]) -> None:
    stream, read_end = pipe
    os.close(read_end)  # the reader went away
    console = Console(stream, ConsoleFormatter(colour=False))
    console.record("nobody reads this")
    console.echo(LogLines("w", "stdout", 1, 0.0, ("nor this",)))
    console.close(timeout=10)


def test_a_progress_bar_drawn_on_a_paused_terminal_never_holds_up_a_record() -> None:
    # Ctrl+S pauses the terminal: the console's thread blocks writing the bar; processman's own
    # records (logged on the event loop) must still return at once.
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w")
    try:
        console = Console(stream, ConsoleFormatter(colour=False))
        os.write(master, b"\x13")  # Ctrl+S
        console.echo(LogLines("bar", "stderr", 1, 0.0, ("50%|" + "#" * 5000,), partial=True))
        wait_for(lambda: console._partial is None, 10, "the console's thread to take the bar")
        done = threading.Event()

        def record() -> None:
            console.record("from the event loop")
            done.set()

        threading.Thread(target=record, daemon=True).start()
        assert done.wait(5), "record() waited for a paused terminal"
        os.write(master, b"\x11")  # Ctrl+Q
        console.close(timeout=5)
    finally:
        stream.close()
        os.close(master)
