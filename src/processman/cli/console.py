"""Foreground output of ``processman serve``, in the style of honcho and overmind:
``12:00:01 web    | a line`` with a colour per process, stderr lines marked with ``!``."""

from __future__ import annotations

import logging
import re
import sys
import time
import zlib

import click

_COLOURS = ("cyan", "yellow", "green", "magenta", "blue", "bright_cyan", "bright_yellow", "bright_green")

# A colour or style (SGR: ESC [ ... m) is kept; any other escape sequence or control character a child
# writes is shown escaped, so its output cannot retitle, clear or repaint the terminal, write the
# clipboard (OSC 52), or hide its own prefix with a carriage return.
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


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

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        process_id = getattr(record, "process_id", None)
        if process_id is not None:
            colour = _COLOURS[zlib.crc32(process_id.encode()) % len(_COLOURS)]
            stderr = getattr(record, "stream", "") == "stderr"
            name = self._paint(process_id.ljust(self.width), fg=colour)
            bar = self._paint("!", fg="red", bold=True) if stderr else self._paint("|", fg=colour)
            return f"{stamp} {name} {bar} {terminal_safe(record.getMessage())}"
        name = self._paint("processman".ljust(self.width), bold=True)
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            message = self._paint(message, fg="red")
        elif record.levelno >= logging.WARNING:
            message = self._paint(message, fg="yellow")
        return f"{stamp} {name} | {message}"


def configure_logging(verbose: bool = False, width: int = 10) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(ConsoleFormatter(colour=sys.stdout.isatty(), width=width))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("uvicorn.access", "httpx", "httpcore", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
