"""What goes to PocketBase's logs: sidecar output and the supervisor's own records, at a bounded rate.

PocketBase writes about 10k log rows a second and loses its unwritten backlog when it stops, so the mirror
sends at most ``batch_lines`` lines every ``interval`` (2,500 lines a second by default). When sidecars
write faster, the oldest waiting lines are dropped here (the newest, such as a traceback before a crash,
are the ones worth keeping), counted, and a warning in PocketBase's log says how many. processman's own log
files stay the complete record.

A line a sidecar redraws (a progress bar) reaches PocketBase's log once, finished; while it changes, its
latest state rides along with the next batch marked ``partial`` (the hook passes it to the realtime topic
only), and only once every finished line before it is sent, so a follower never sees it out of order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processman.engine.events import LogLines
from processman.levels import line_level
from processman.logs import LogLine, format_timestamp

MAX_MESSAGE = 8000  # PocketBase truncates longer messages itself
TRUNCATED = " [truncated; the full line is in processman's log file]"

Line = dict[str, Any]


@dataclass(frozen=True)
class MirrorLimits:
    batch_lines: int = 500
    interval: float = 0.2
    buffer_lines: int = 5000
    report_every: float = 10.0  # at most one "lines were not mirrored" warning per period

    @property
    def lines_per_second(self) -> int:
        return int(self.batch_lines / self.interval)


def _message(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - len(TRUNCATED)] + TRUNCATED


class LogMirror:
    """A bounded buffer of log lines on their way to PocketBase.

    Sidecar output arrives on the event loop (``add_output``); the supervisor's records may arrive from
    any thread (``add_record``). The shipper takes batches with ``next_batch``.
    """

    def __init__(self, limits: MirrorLimits | None = None, log_dir: Path | None = None) -> None:
        self.limits = limits or MirrorLimits()
        self.log_dir = log_dir
        self.mirrored = 0
        self.not_mirrored = 0
        self._output: collections.deque[Line] = collections.deque()
        self._records: collections.deque[Line] = collections.deque()
        # The latest state of each redrawn line, by (process, stream): for the realtime topic only.
        self._partials: dict[tuple[str, str], Line] = {}
        self._unreported = 0
        self._reported_at = float("-inf")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def __repr__(self) -> str:
        return (
            f"<LogMirror waiting={len(self._output) + len(self._records)} not_mirrored={self.not_mirrored}>"
        )

    # ---- producers -------------------------------------------------------------------------------

    def add_output(self, event: LogLines) -> None:
        if event.partial:
            attrs = {
                "process": event.process_id,
                "stream": event.stream,
                "time": format_timestamp(event.timestamp),
            }
            line = {
                "level": line_level(event.lines[-1], event.stream),
                "message": _message(event.lines[-1]),
                "attrs": attrs,
                "partial": True,
            }
            with self._lock:
                self._partials[event.process_id, event.stream] = line
            self._notify()
            return
        if self._partials:
            with self._lock:
                self._partials.pop((event.process_id, event.stream), None)  # finished
        self._add_output(event.process_id, event.stream, event.timestamp, event.lines)

    def add_history(self, lines: Iterable[LogLine]) -> None:
        """Lines written before the mirror was attached (kept in the manager's memory)."""
        for line in lines:
            self._add_output(line.process_id, line.stream, line.timestamp, (line.content,))

    def _add_output(self, process_id: str, stream: str, timestamp: float, texts: Iterable[str]) -> None:
        # The level is read from the line when it is sent (see take_batch): most lines of a flood never
        # are, and the reading is not free.
        attrs = {"process": process_id, "stream": stream, "time": format_timestamp(timestamp)}
        with self._lock:
            for text in texts:
                self._output.append({"level": None, "message": _message(text), "attrs": attrs})
            overflow = len(self._output) - self.limits.buffer_lines
            if overflow > 0:
                for _ in range(overflow):
                    self._output.popleft()
                self._drop(overflow)
        self._notify()

    def add_record(self, record: logging.LogRecord) -> None:
        """One of the supervisor's own log records (a config error, a crash, a start)."""
        if record.levelno >= logging.ERROR:
            level = "error"
        elif record.levelno >= logging.WARNING:
            level = "warn"
        else:
            level = "info"
        attrs = {"source": "processman", "logger": record.name, "time": format_timestamp(record.created)}
        line = {"level": level, "message": _message("processman: " + record.getMessage()), "attrs": attrs}
        with self._lock:
            self._records.append(line)
            if len(self._records) > self.limits.buffer_lines:
                self._records.popleft()
                self._drop(1)
        self._notify()

    def lost(self, batch: list[Line]) -> None:
        """A batch that could not be delivered (PocketBase did not answer)."""
        count = sum(1 for line in batch if "notMirrored" not in line["attrs"])
        with self._lock:
            self.mirrored -= count
            self._drop(count)

    def _drop(self, count: int) -> None:
        self.not_mirrored += count
        self._unreported += count

    # ---- the shipper -----------------------------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called by the shipper on its loop before the first ``next_batch``."""
        self._loop = loop
        self._wake = asyncio.Event()
        if self._output or self._records or self._partials:
            self._wake.set()

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or wake.is_set():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            loop.call_soon_threadsafe(wake.set)

    async def next_batch(self) -> list[Line]:
        """Waits for lines, then returns up to ``batch_lines`` of them: the supervisor's records first."""
        assert self._wake is not None, "bind() first"
        while True:
            batch = self.take_batch()
            if batch:
                return batch
            self._wake.clear()
            if self._output or self._records or self._partials:
                continue
            await self._wake.wait()

    def take_batch(self) -> list[Line]:
        limit = self.limits.batch_lines
        with self._lock:
            batch: list[Line] = []
            report = self._report()
            if report is not None:
                batch.append(report)
            while self._records and len(batch) < limit:
                batch.append(self._records.popleft())
            while self._output and len(batch) < limit:
                line = self._output.popleft()
                # The line's own level (uvicorn's INFO on stderr is Info), else its stream's: the
                # child's stderr is Error, stdout and processman's notes about it Info.
                line["level"] = line_level(line["message"], line["attrs"]["stream"])
                batch.append(line)
            self.mirrored += len(batch) - (1 if report is not None else 0)
            if self._partials and not self._output:
                batch.extend(self._partials.values())
                self._partials.clear()
            return batch

    def _report(self) -> Line | None:
        now = time.monotonic()
        if not self._unreported or now - self._reported_at < self.limits.report_every:
            return None
        count, self._unreported = self._unreported, 0
        self._reported_at = now
        where = f"in {self.log_dir}" if self.log_dir is not None else "in processman's log files"
        message = (
            f"processman: {count} lines of sidecar output were not copied to these logs (limit "
            f"{self.limits.lines_per_second} lines/s); every line is {where}"
        )
        attrs = {
            "source": "processman",
            "notMirrored": count,
            "notMirroredTotal": self.not_mirrored,
            "time": format_timestamp(time.time()),
        }
        return {"level": "warn", "message": message, "attrs": attrs}

    def stats(self) -> dict[str, int]:
        with self._lock:
            waiting = len(self._output) + len(self._records)
        return {"mirrored": self.mirrored, "notMirrored": self.not_mirrored, "waiting": waiting}


class MirrorHandler(logging.Handler):
    """Sends the supervisor's own log records (not the sidecar output, which the mirror gets directly),
    and the warnings and errors of the libraries it uses."""

    def __init__(self, mirror: LogMirror, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.mirror = mirror

    def emit(self, record: logging.LogRecord) -> None:
        name = record.name
        if name == "processman.output" or name.startswith("processman.output."):
            return
        ours = name == "processman" or name.startswith("processman.")
        if not ours and record.levelno < logging.WARNING:
            return  # libraries' chatter (httpx requests) stays in the file
        try:
            self.mirror.add_record(record)
        except Exception:
            self.handleError(record)
