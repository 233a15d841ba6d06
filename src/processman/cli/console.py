"""Foreground output of ``processman serve``, in the style of honcho and overmind:
``12:00:01 web    | a line`` with a colour per process, stderr lines marked with ``!``."""

from __future__ import annotations

import logging
import sys
import time
import zlib

import click

_COLOURS = ("cyan", "yellow", "green", "magenta", "blue", "bright_cyan", "bright_yellow", "bright_green")


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
            return f"{stamp} {name} {bar} {record.getMessage()}"
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
