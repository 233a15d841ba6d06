"""Foreground output of ``processman serve``, in the style of honcho and overmind:
``12:00:01 web    | a line`` with a colour per process, stderr lines marked with ``!``, processman's own
notes about a process with ``~`` (dimmed).

Nothing waits for the terminal but one thread of its own (:class:`Console`): a paused terminal (Ctrl+S)
or a pipe nobody reads stops that thread only. processman's own records are then dropped, counted, and
the count is shown once the output moves again; child output waits in the logging sink, which drops and
counts in its turn.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import select
import shutil
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

import click

from processman.levels import ERROR, WARN, levels_of, line_level, stream_level

if TYPE_CHECKING:  # the client commands use this module: the engine is not imported for them
    from processman.engine.events import LogLines

_COLOURS = ("cyan", "yellow", "green", "magenta", "blue", "bright_cyan", "bright_yellow", "bright_green")
# Until every note arrives on the "system" stream, processman's notes are stderr lines with this mark.
_NOTE_MARK = "[processman] "
SYSTEM_BAR = "~"

# A colour or style (SGR: ESC [ ... m) is kept; any other escape sequence or control character a child
# writes is shown escaped, so its output cannot retitle, clear or repaint the terminal, write the
# clipboard (OSC 52), or hide its own prefix with a carriage return.
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """``text`` as it may be printed to a terminal: colours kept, other controls escaped (``\\x1b``)."""
    if not _CONTROL.search(text):
        return text
    parts = _SGR.split(text)
    colours = _SGR.findall(text)
    escaped = [_CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", part) for part in parts]
    return "".join(part + colour for part, colour in zip(escaped, [*colours, ""], strict=True))


def as_system_note(stream: str, lines: tuple[str, ...] | list[str]) -> tuple[str, ...] | None:
    """The lines without their mark when they are processman's notes about a process (the "system"
    stream, or, as older servers send them, one stderr line marked ``[processman] ``); else None."""
    if stream == "system":
        return tuple(lines)
    if stream == "stderr" and len(lines) == 1 and lines[0].startswith(_NOTE_MARK):
        return (lines[0][len(_NOTE_MARK) :],)
    return None


class ConsoleFormatter(logging.Formatter):
    def __init__(self, colour: bool, width: int = 10) -> None:
        super().__init__()
        self.colour = colour
        self.width = width

    def _paint(self, text: str, **styles: object) -> str:
        return click.style(text, **styles) if self.colour else text  # type: ignore[arg-type]

    def prefix(self, created: float, process_id: str, stream: str, level: str | None = None) -> str:
        """``12:00:01 web        | `` for a line of ``process_id``: ``!`` marks an error (red) or a
        warning (yellow), by the line's own level or else its stream's (stderr: error); ``~`` a note
        of processman's own, whose text :meth:`note` dims."""
        stamp = time.strftime("%H:%M:%S", time.localtime(created))
        colour = _COLOURS[zlib.crc32(process_id.encode()) % len(_COLOURS)]
        name = self._paint(process_id.ljust(self.width), fg=colour)
        level = level or stream_level(stream)
        if stream == "system":
            bar = self._paint(SYSTEM_BAR, dim=True)
        elif level == ERROR:
            bar = self._paint("!", fg="red", bold=True)
        elif level == WARN:
            bar = self._paint("!", fg="yellow", bold=True)
        else:
            bar = self._paint("|", fg=colour)
        return f"{stamp} {name} {bar} "

    def note(self, text: str) -> str:
        return self._paint(text, dim=True)

    def format(self, record: logging.LogRecord) -> str:
        process_id = getattr(record, "process_id", None)
        if process_id is not None:
            stream = getattr(record, "stream", "")
            text = terminal_safe(record.getMessage())
            note = as_system_note(stream, (text,))
            if note is not None:
                return self.prefix(record.created, process_id, "system") + self.note(note[0])
            message = record.getMessage()
            return self.prefix(record.created, process_id, stream, line_level(message, stream)) + text
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        name = self._paint("processman".ljust(self.width), bold=True)
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            message = self._paint(message, fg="red")
        elif record.levelno >= logging.WARNING:
            message = self._paint(message, fg="yellow")
        return f"{stamp} {name} | {message}"


_ASCII_CONTROLS_BUT_NEWLINE = bytes([*range(0x09), *range(0x0B, 0x20), 0x7F])


def _clean_ascii(text: str) -> bytes | None:
    """``text`` encoded, when it is ASCII without control characters (tab and newline allowed), as most
    output is; None otherwise. The test runs at memory speed; a regular expression took 5 times longer
    than everything else the echo does."""
    if not text.isascii():
        return None
    data = text.encode("ascii")
    return data if len(data.translate(None, _ASCII_CONTROLS_BUT_NEWLINE)) == len(data) else None


def format_batch(formatter: ConsoleFormatter, event: LogLines, encoding: str) -> tuple[bytes, ...]:
    """A batch of a child's lines (a :class:`LogLines` event) as the bytes to print, in pieces (joining
    them would copy the whole batch once more): the same text the formatter gives line by line, at a
    fraction of the cost, so a chatty child is not slowed by its own echo. What ``encoding`` cannot hold
    is shown escaped."""
    note = as_system_note(event.stream, event.lines)
    if note is not None:
        lines = "".join(
            formatter.prefix(event.timestamp, event.process_id, "system")
            + formatter.note(terminal_safe(line))
            + "\n"
            for line in note
        )
        return (lines.encode(encoding, "backslashreplace"),)
    text = "\n".join(event.lines)
    levels = levels_of(event.lines, event.stream, text, marks_only=True)
    if levels is None:
        return _pieces(formatter, event, event.lines, text, None, encoding)
    pieces: list[bytes] = []  # lines with levels of their own: one run of lines per level, in order
    start = 0
    for end in range(1, len(levels) + 1):
        if end == len(levels) or levels[end] != levels[start]:
            run = event.lines[start:end]
            pieces += _pieces(formatter, event, run, "\n".join(run), levels[start], encoding)
            start = end
    return tuple(pieces)


def _pieces(
    formatter: ConsoleFormatter,
    event: LogLines,
    lines: Sequence[str],
    text: str,
    level: str | None,
    encoding: str,
) -> tuple[bytes, ...]:
    prefix = formatter.prefix(event.timestamp, event.process_id, event.stream, level)
    prefix_bytes = prefix.encode(encoding, "backslashreplace")
    data = _clean_ascii(text)
    if data is None:
        if _CONTROL_BUT_NEWLINE.search(text):
            text = "\n".join(map(terminal_safe, lines))
        data = text.encode(encoding, "backslashreplace")
    return prefix_bytes, data.replace(b"\n", b"\n" + prefix_bytes), b"\n"


# Back to the start of the line and erase it: how a redrawn line is replaced on a terminal.
_ERASE_LINE = b"\r\x1b[K"


def format_partial(formatter: ConsoleFormatter, event: LogLines, encoding: str) -> bytes:
    """The latest state of a line being redrawn (a progress bar), cut to the terminal's width (a
    wrapped line could not be redrawn), to be drawn without a newline."""
    prefix = formatter.prefix(event.timestamp, event.process_id, event.stream)
    room = shutil.get_terminal_size().columns - len(_SGR.sub("", prefix)) - 1
    text = terminal_safe(event.lines[-1])[: max(room, 0)]
    return _ERASE_LINE + (prefix + text).encode(encoding, "backslashreplace")


class _Gap:
    """Where records were dropped, in the order of what the console writes: told there."""

    def __init__(self) -> None:
        self.count = 1


class Console:
    """serve's terminal (or whatever its stdout is), written by a thread of its own.

    ``record`` (processman's log records, from any thread, the event loop's among them) never waits:
    beyond ``max_records`` waiting, a record is dropped and counted, and a line says how many where
    they are missing. ``echo`` (child output, from the logging sink's thread) waits while
    ``max_batches`` batches wait, so the sink drops and counts in its turn. Everything is written in
    order, a batch at once, never interleaved.
    """

    def __init__(
        self,
        stream: TextIO,
        formatter: ConsoleFormatter,
        *,
        max_records: int = 1000,
        max_batches: int = 64,
    ) -> None:
        self.formatter = formatter
        self._stream = stream
        self.encoding = getattr(stream, "encoding", None) or "utf-8"
        self._fd: int | None
        try:
            # The descriptor itself: a thread stuck writing then holds no lock of the stream object,
            # which interpreter shutdown would wait for.
            stream.flush()
            self._fd = stream.fileno()
        except (OSError, ValueError, AttributeError):
            self._fd = None
        self._max_records = max_records
        self._max_batches = max_batches
        # (a record?, its pieces), or where records were dropped
        self._items: collections.deque[tuple[bool, tuple[bytes, ...]] | _Gap] = collections.deque()
        self._records = 0
        self._batches = 0
        self._closing = False
        self._broken = False
        self._cond = threading.Condition()
        self.dropped = 0  # processman's own records not shown, since the start
        # A partial line (a progress bar) is drawn only on a terminal, and erased by what comes next.
        self._terminal = bool(getattr(stream, "isatty", lambda: False)())
        self._partial: bytes | None = None  # the latest partial line not drawn yet
        self._partial_drawn = False
        self.handler = ConsoleHandler(self)
        self.handler.setFormatter(formatter)
        self._thread = threading.Thread(target=self._run, name="processman-console", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<Console records={self._records} batches={self._batches} dropped={self.dropped}>"

    def record(self, text: str) -> None:
        """Queue one of processman's own lines; never waits for the output."""
        data = (text + "\n").encode(self.encoding, "backslashreplace")
        with self._cond:
            if self._closing or self._broken or self._records >= self._max_records:
                self.dropped += 1
                last = self._items[-1] if self._items else None
                if isinstance(last, _Gap):
                    last.count += 1
                elif not (self._closing or self._broken):
                    self._items.append(_Gap())
                    self._cond.notify()
                return
            self._records += 1
            self._items.append((True, (data,)))
            self._cond.notify()

    def echo(self, event: LogLines) -> None:
        """Queue a batch of a child's lines; waits while too many batches wait. A partial line (the
        latest state of a progress bar) is drawn on a terminal only; only the newest one waits."""
        if event.partial:
            if self._terminal and event.lines:
                drawing = format_partial(self.formatter, event, self.encoding)
                with self._cond:
                    self._partial = drawing
                    self._cond.notify()
            return
        data = format_batch(self.formatter, event, self.encoding)
        with self._cond:
            while self._batches >= self._max_batches and not (self._closing or self._broken):
                self._cond.wait()
            if self._closing or self._broken:
                return
            self._partial = None  # finished lines supersede a progress bar not drawn yet
            self._batches += 1
            self._items.append((False, data))
            self._cond.notify()

    def close(self, timeout: float = 2.0) -> None:
        """Write what waits, for at most ``timeout`` seconds (the output may never move again)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            data: tuple[bytes, ...]
            with self._cond:
                while not self._items and self._partial is None and not self._closing:
                    self._cond.wait()
                if not self._items:
                    if self._partial is None:
                        return
                    data, self._partial = (self._partial,), None
                    self._partial_drawn = True
                else:
                    item = self._items.popleft()
                    if isinstance(item, _Gap):
                        data = (self._gap_notice(item.count),)
                    else:
                        record, data = item
                        if record:
                            self._records -= 1
                        else:
                            self._batches -= 1
                            self._cond.notify_all()
                    if self._partial_drawn:  # what comes next replaces the progress bar's line
                        self._partial_drawn = False
                        data = (_ERASE_LINE, *data)
            self._write(data)  # outside the lock: a paused terminal holds up this thread only

    def _gap_notice(self, count: int) -> bytes:
        record = logging.LogRecord(
            "processman", logging.WARNING, __file__, 0, "%d log records dropped: %s", None, None
        )
        record.args = (count, "this output was not read in time")
        return (self.formatter.format(record) + "\n").encode(self.encoding, "backslashreplace")

    def _write(self, pieces: tuple[bytes, ...]) -> None:
        if self._broken:
            return
        try:
            if self._fd is not None:
                _write_all(self._fd, pieces)
                return
            binary = getattr(self._stream, "buffer", None)
            if binary is None:  # a text-only stream
                self._stream.write(b"".join(pieces).decode(self.encoding, "replace"))
                self._stream.flush()
            else:
                for piece in pieces:
                    binary.write(piece)
                binary.flush()
        except (OSError, ValueError):  # closed: a pipe whose reader left, a terminal that went away
            with self._cond:
                self._broken = True
                self._items.clear()
                self._cond.notify_all()


def _write_all(fd: int, pieces: tuple[bytes, ...]) -> None:
    """One system call for a batch's pieces, more if the output takes them in parts."""
    views = [memoryview(piece) for piece in pieces if piece]
    while views:
        try:
            written = os.writev(fd, views)
        except BlockingIOError:  # a terminal another program made non-blocking: wait for room
            select.select([], [fd], [])
            continue
        while written:
            if written >= len(views[0]):
                written -= len(views.pop(0))
            else:
                views[0] = views[0][written:]
                written = 0


class ConsoleHandler(logging.Handler):
    """Passes processman's log records to its :class:`Console`; never waits for the output."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.record(self.format(record))
        except Exception:
            self.handleError(record)


def configure_logging(verbose: bool = False, width: int = 10) -> Console:
    """Console logging for ``processman serve``; the console also echoes child output
    (:meth:`Console.echo`). Close it at the end, to write what waits."""
    # No stdout at all (started with it closed): nothing is shown, nothing fails.
    stream = sys.stdout if sys.stdout is not None else open(os.devnull, "w")  # noqa: SIM115
    console = Console(stream, ConsoleFormatter(colour=stream.isatty(), width=width))
    root = logging.getLogger()
    root.handlers[:] = [console.handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)  # through the console too: stderr may be a pipe nobody reads
    for noisy in ("uvicorn.access", "httpx", "httpcore", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return console
