"""Foreground output of ``processman serve``, in the style of honcho and overmind:
``12:00:01 web    | a line`` with a colour per process, stderr lines marked with ``!``."""

from __future__ import annotations

import logging
import re
import shutil
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import click

from processman.levels import ERROR, WARN, levels_of, line_level, stream_level

if TYPE_CHECKING:  # the client commands use this module: the engine is not imported for them
    from processman.engine.events import LogLines

_COLOURS = ("cyan", "yellow", "green", "magenta", "blue", "bright_cyan", "bright_yellow", "bright_green")

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


class ConsoleFormatter(logging.Formatter):
    def __init__(self, colour: bool, width: int = 10) -> None:
        super().__init__()
        self.colour = colour
        self.width = width

    def _paint(self, text: str, **styles: object) -> str:
        return click.style(text, **styles) if self.colour else text  # type: ignore[arg-type]

    def prefix(self, created: float, process_id: str, stream: str, level: str | None = None) -> str:
        """``12:00:01 web        | `` for a line of ``process_id``: ``!`` marks an error (red) or a
        warning (yellow), by the line's own level or else its stream's (stderr: error)."""
        stamp = time.strftime("%H:%M:%S", time.localtime(created))
        colour = _COLOURS[zlib.crc32(process_id.encode()) % len(_COLOURS)]
        name = self._paint(process_id.ljust(self.width), fg=colour)
        level = level or stream_level(stream)
        if level == ERROR:
            bar = self._paint("!", fg="red", bold=True)
        elif level == WARN:
            bar = self._paint("!", fg="yellow", bold=True)
        else:
            bar = self._paint("|", fg=colour)
        return f"{stamp} {name} {bar} "

    def format(self, record: logging.LogRecord) -> str:
        process_id = getattr(record, "process_id", None)
        if process_id is not None:
            message = record.getMessage()
            stream = getattr(record, "stream", "")
            prefix = self.prefix(record.created, process_id, stream, line_level(message, stream))
            return prefix + terminal_safe(message)
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


# Back to the start of the line and erase it: how a redrawn line is replaced on a terminal.
_ERASE_LINE = "\r\x1b[K"


class ConsoleHandler(logging.StreamHandler[TextIO]):
    """The console's handler: erases a redrawn child line (a progress bar) before processman's own
    records, so they never land on the same line."""

    before_record: Callable[[], None] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.before_record is not None:
            self.before_record()
        super().emit(record)


class ConsoleEcho:
    """Prints a batch of a child's lines (a :class:`LogLines` event) with one write: the same text
    the formatter gives line by line, at a fraction of the cost, so a chatty child is not slowed by
    its own echo. Shares the handler's lock, so a batch never interleaves with processman's own lines.

    A partial line (the latest state of a progress bar) is drawn on a terminal as the last line, without
    a newline, and erased by whatever is printed next; elsewhere (a file, a pipe, a journal) only the
    finished line is printed.
    """

    def __init__(self, handler: logging.StreamHandler[Any], formatter: ConsoleFormatter) -> None:
        self._handler = handler
        self._formatter = formatter
        self._terminal = bool(getattr(handler.stream, "isatty", lambda: False)())
        self._partial_drawn = False
        if isinstance(handler, ConsoleHandler):
            handler.before_record = self._erase_partial

    def _erase_partial(self) -> None:
        if self._partial_drawn:
            self._partial_drawn = False
            self._handler.stream.write(_ERASE_LINE)

    def _draw_partial(self, event: LogLines) -> None:
        prefix = self._formatter.prefix(event.timestamp, event.process_id, event.stream)
        room = shutil.get_terminal_size().columns - len(_SGR.sub("", prefix)) - 1
        text = terminal_safe(event.lines[-1])[: max(room, 0)]  # a wrapped line could not be redrawn
        with self._handler.lock or threading.RLock():
            self._handler.stream.write(_ERASE_LINE + prefix + text)
            self._handler.stream.flush()
            self._partial_drawn = True

    def __call__(self, event: LogLines) -> None:
        if event.partial:
            if self._terminal and event.lines:
                self._draw_partial(event)
            return
        stream = self._handler.stream
        encoding = getattr(stream, "encoding", None) or "utf-8"
        text = "\n".join(event.lines)
        levels = levels_of(event.lines, event.stream, text, marks_only=True)
        if levels is None:
            pieces = self._pieces(event, event.lines, text, None, encoding)
        else:  # lines with levels of their own: one run of lines per level, in order
            pieces = []
            start = 0
            for end in range(1, len(levels) + 1):
                if end == len(levels) or levels[end] != levels[start]:
                    run = event.lines[start:end]
                    pieces += self._pieces(event, run, "\n".join(run), levels[start], encoding)
                    start = end
        with self._handler.lock or threading.RLock():
            self._erase_partial()
            binary = getattr(stream, "buffer", None)
            if binary is None:  # a text-only stream
                stream.write(b"".join(pieces).decode(encoding, "replace"))
                return
            stream.flush()  # what processman itself wrote comes first
            for piece in pieces:
                binary.write(piece)
            binary.flush()

    def _pieces(
        self, event: LogLines, lines: Sequence[str], text: str, level: str | None, encoding: str
    ) -> list[bytes]:
        prefix = self._formatter.prefix(event.timestamp, event.process_id, event.stream, level)
        prefix_bytes = prefix.encode(encoding, "backslashreplace")
        data = _clean_ascii(text)
        if data is None:
            if _CONTROL_BUT_NEWLINE.search(text):
                text = "\n".join(map(terminal_safe, lines))
            data = text.encode(encoding, "backslashreplace")
        # Written in pieces: joining them would copy the whole batch once more.
        return [prefix_bytes, data.replace(b"\n", b"\n" + prefix_bytes), b"\n"]


def configure_logging(verbose: bool = False, width: int = 10) -> ConsoleEcho:
    """Console logging for ``processman serve``; returns the echo for child output."""
    handler = ConsoleHandler(sys.stdout)
    formatter = ConsoleFormatter(colour=sys.stdout.isatty(), width=width)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("uvicorn.access", "httpx", "httpcore", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return ConsoleEcho(handler, formatter)
