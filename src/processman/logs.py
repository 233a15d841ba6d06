"""Capturing child output: line splitting, the in-memory ring, rotating files and the ``logging`` sink.

The reading side (see ``engine.process``) only ever appends to memory, so a child is never blocked by a
consumer. Each consumer that can be slow (the ``logging`` sink, network streams, disk) drops lines when it
falls behind and counts what it dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from processman.engine.events import Event, EventBus, LogLines
from processman.levels import levels_of

MAX_LINE = 64 * 1024
SPLIT_MARKER = " [line continues]"
RING_CAPACITY = 1000
# A line redrawn with carriage returns is shown at most this often per process (five times a second).
PARTIAL_INTERVAL = 0.2
# The streams of a process's log: what the child wrote, and processman's own notes about it.
STDOUT, STDERR, SYSTEM = "stdout", "stderr", "system"

logger = logging.getLogger(__name__)
output_logger = logging.getLogger("processman.output")


@dataclass(frozen=True, slots=True)
class LogLine:
    seq: int
    timestamp: float
    process_id: str
    stream: str
    content: str


def format_timestamp(timestamp: float) -> str:
    """RFC 3339 in UTC with milliseconds: ``2026-01-30T10:00:00.123Z``."""
    return f"{_whole_second(int(timestamp))}.{int(timestamp % 1 * 1000):03d}Z"


@functools.lru_cache(maxsize=4096)
def _whole_second(second: int) -> str:
    # Lines come in bursts within the same second: strftime was most of the cost of a log read.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class LineSplitter:
    """Turns a byte stream into text lines: UTF-8 with replacement, ``\r\n`` folded, long lines split.

    A carriage return inside a line redraws it (a progress bar): the line's text is its last non-empty
    piece, and while such a line is unfinished ``partial`` holds its latest state. Only that state is
    kept, so a bar redrawn for hours never piles up into a huge line.
    """

    def __init__(self) -> None:
        self._pending = b""
        # The latest state of the unfinished line, when a carriage return redrew it; None otherwise.
        self.partial: str | None = None

    def feed(self, data: bytes) -> list[str]:
        buffer = self._pending + data if self._pending else data
        end = buffer.rfind(b"\n")
        if end < 0:
            self._pending = buffer
            return self._settle_pending()
        self._pending = buffer[end + 1 :]
        text = buffer[: end - 1 if buffer[end - 1 : end] == b"\r" else end].decode("utf-8", "replace")
        if "\r" in text:  # a scan for "\r" costs a tenth of what replace costs when there is none
            text = text.replace("\r\n", "\n")
        lines = text.split("\n")
        if "\r" in text:  # carriage returns inside lines: redrawn lines (progress bars)
            lines = [_redrawn(line) if "\r" in line else line for line in lines]
        if end > MAX_LINE and max(map(len, lines)) * 4 > MAX_LINE:
            lines = [piece for line in lines for piece in _split_long(line)]
        pieces = self._settle_pending()
        return lines + pieces if pieces else lines

    def _settle_pending(self) -> list[str]:
        """Keeps only the latest state of a redrawn unfinished line; splits a pending line that grew
        past MAX_LINE."""
        pending = self._pending
        if b"\r" not in pending:
            self.partial = None
        else:
            # A \r at the very end may be the first half of \r\n: only one before the text redraws.
            text = pending.rstrip(b"\r")
            cut = text.rfind(b"\r")
            if cut < 0:
                self.partial = None
            else:
                self._pending = pending = pending[cut:]
                self.partial = text[cut + 1 :].decode("utf-8", "ignore") or None
        return self._split_pending() if len(pending) > MAX_LINE else []

    def _split_pending(self) -> list[str]:
        pieces = []
        while len(self._pending) > MAX_LINE:
            cut = _boundary(self._pending, MAX_LINE)
            pieces.append(_redrawn(self._pending[:cut].decode("utf-8", "replace")) + SPLIT_MARKER)
            self._pending = self._pending[cut:]
        self.partial = None
        return pieces

    def flush(self) -> list[str]:
        """What remains at end of file: a last line without a newline."""
        rest, self._pending = self._pending, b""
        self.partial = None
        if not rest.rstrip(b"\r"):
            return []
        return [_redrawn(rest.decode("utf-8", "replace"))]


def _redrawn(line: str) -> str:
    """What a terminal would leave of a line redrawn with carriage returns: its last non-empty piece
    (tqdm and pip pad each state to cover the previous one)."""
    for piece in reversed(line.split("\r")):
        if piece:
            return piece
    return ""


def _boundary(data: bytes, limit: int) -> int:
    """Where to cut ``data`` at most ``limit`` bytes in: not inside a UTF-8 character, which would turn
    valid text into two replacement characters."""
    cut = limit
    while cut > limit - 3 and 0x80 <= data[cut] < 0xC0:  # a continuation byte
        cut -= 1
    return cut if not 0x80 <= data[cut] < 0xC0 else limit


def _split_long(line: str) -> list[str]:
    """Pieces of at most MAX_LINE bytes, each but the last marked as continued."""
    if len(line) * 4 <= MAX_LINE:
        return [line]
    data = line.encode()
    pieces = []
    while len(data) > MAX_LINE:
        cut = _boundary(data, MAX_LINE)
        pieces.append(data[:cut].decode("utf-8", "replace") + SPLIT_MARKER)
        data = data[cut:]
    pieces.append(data.decode("utf-8", "replace"))
    return pieces


class RotatingFile:
    """Appends raw bytes to a file, rotating by size (``name.1`` .. ``name.N``).

    A write that fails (read-only or full disk) drops the data, counts it and tries again later; it never
    raises into the reader.
    """

    RETRY_AFTER = 5.0
    # Two per process: slots keep a fleet's files small.
    __slots__ = (
        "_broken_until",
        "_fd",
        "_on_problem",
        "_size",
        "backups",
        "dropped_bytes",
        "max_bytes",
        "path",
        "problem",
    )

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        backups: int,
        on_problem: Callable[[str], None] = lambda problem: None,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.dropped_bytes = 0
        # Why the file cannot be written ("" while it can); on_problem hears every change of it.
        self.problem = ""
        self._on_problem = on_problem
        self._fd: int | None = None
        self._size = 0
        self._broken_until = 0.0

    def write(self, data: bytes) -> None:
        if self._fd is None and not self._open():
            self.dropped_bytes += len(data)
            return
        assert self._fd is not None
        written = 0
        try:
            if self.max_bytes and self._size + len(data) > self.max_bytes and self._size:
                self._rotate()
            while written < len(data):
                written += os.write(self._fd, data[written:])
            if self.problem:
                self._set_problem("")
        except OSError as exc:
            # A full disk takes part of the data, then refuses the rest: count only what is missing.
            self.dropped_bytes += len(data) - written
            self._fail(exc)
        finally:
            self._size += written

    def _open(self) -> bool:
        if time.monotonic() < self._broken_until:
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            self._fail(exc)
            return False
        return True

    def _fail(self, exc: OSError) -> None:
        problem = f"cannot write log file {self.path}: {exc.strerror or exc}"
        if problem != self.problem:
            logger.warning("%s; output stays in memory, retrying every %.0fs", problem, self.RETRY_AFTER)
            self._set_problem(problem)
        self._broken_until = time.monotonic() + self.RETRY_AFTER
        self.close()

    def _set_problem(self, problem: str) -> None:
        self.problem = problem
        self._on_problem(problem)

    def _rotate(self) -> None:
        self.close()
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        if not self._open():
            raise OSError("cannot reopen log file after rotation")

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass(frozen=True)
class LogFileOptions:
    folder: Path
    max_bytes: int  # rotate before a file grows past this (0: never)
    backups: int  # rotated files kept


class _Batch(NamedTuple):
    """Lines that came in one read: ``lines[start:]`` are still in the ring, the first numbered
    ``first_seq + start``."""

    first_seq: int
    timestamp: float
    stream: str
    lines: tuple[str, ...]
    start: int


class ProcessOutput:
    """Everything one process has written: the ring of its last lines, its files, its events."""

    def __init__(
        self,
        process_id: str,
        bus: EventBus,
        files: LogFileOptions | None = None,
        capacity: int = RING_CAPACITY,
        on_file_problem: Callable[[str], None] = lambda problem: None,
    ) -> None:
        self.process_id = process_id
        self._bus = bus
        # Made by the first line: an empty deque holds 528 bytes, and a fleet of quiet processes adds up.
        self._capacity = capacity
        # The last ``capacity`` lines, kept as the batches they came in: a chatty child's read of
        # thousands of lines is one entry, not a tuple per line (that was a fifth of serve's CPU on it).
        self._ring: collections.deque[_Batch] | None = None
        self._ring_lines = 0
        self._next_seq = 1
        self._splitters = {"stdout": LineSplitter(), "stderr": LineSplitter()}
        self._files: dict[str, RotatingFile] = {}
        self._on_file_problem = on_file_problem
        # Redrawn lines: the state each stream's last partial event showed, and the rate limit.
        self._partial_shown: dict[str, str] = {}
        self._partial_at = float("-inf")
        self._partial_timer: asyncio.TimerHandle | None = None
        if files is not None:
            for stream, suffix in (("stdout", "out"), ("stderr", "err")):
                path = files.folder / f"{process_id}.{suffix}.log"
                self._files[stream] = RotatingFile(path, files.max_bytes, files.backups, self._file_problem)

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    def set_rotation(self, max_bytes: int, backups: int) -> None:
        """New rotation settings (a reloaded config); they apply from the next write."""
        for file in self._files.values():
            file.max_bytes, file.backups = max_bytes, backups

    def feed(self, stream: str, data: bytes) -> None:
        file = self._files.get(stream)
        if file is not None:
            file.write(data)
        splitter = self._splitters[stream]
        self._add(stream, splitter.feed(data))
        if splitter.partial is not None and splitter.partial != self._partial_shown.get(stream):
            self._partial_due()

    def end(self, stream: str) -> None:
        self._add(stream, self._splitters[stream].flush())

    def _partial_due(self) -> None:
        """A redrawn line changed: show it now, or when the rate limit allows (even if nothing more
        comes, so a bar that stalls still shows where it stopped)."""
        if self._partial_timer is not None:
            return
        wait = self._partial_at + PARTIAL_INTERVAL - time.monotonic()
        if wait > 0:
            try:
                self._partial_timer = asyncio.get_running_loop().call_later(wait, self._show_partials)
                return
            except RuntimeError:  # fed outside an event loop (a test, a library user): show it now
                pass
        self._show_partials()

    def _show_partials(self) -> None:
        self._partial_timer = None
        self._partial_at = time.monotonic()
        for stream, splitter in self._splitters.items():
            text = splitter.partial
            if text is not None and text != self._partial_shown.get(stream):
                self._partial_shown[stream] = text
                event = LogLines(self.process_id, stream, self._next_seq, time.time(), (text,), partial=True)
                self._bus.publish(event)

    def note(self, text: str) -> None:
        """A line from the manager itself about this process: the ``system`` stream, kept apart from
        what the child wrote (it is not in the child's log files)."""
        self._add(SYSTEM, [text])

    @property
    def file_problem(self) -> str:
        """Why a log file of this process cannot be written ("" while both can)."""
        return next((file.problem for file in self._files.values() if file.problem), "")

    def _file_problem(self, problem: str) -> None:
        self._on_file_problem(self.file_problem)

    def _add(self, stream: str, lines: list[str]) -> None:
        if not lines:
            return
        self._partial_shown.pop(stream, None)  # the redrawn line, if any, is finished
        now = time.time()
        first = self._next_seq
        self._next_seq += len(lines)
        batch = tuple(lines)
        self._keep(_Batch(first, now, stream, batch, 0))
        self._bus.publish(LogLines(self.process_id, stream, first, now, batch))

    def _keep(self, batch: _Batch) -> None:
        capacity = self._capacity
        if capacity <= 0:
            return
        if self._ring is None:
            self._ring = collections.deque()
        ring = self._ring
        if len(batch.lines) >= capacity:  # it alone fills the ring: the older batches all go
            ring.clear()
            cut = len(batch.lines) - capacity
            ring.append(batch._replace(first_seq=batch.first_seq + cut, lines=batch.lines[cut:]))
            self._ring_lines = capacity
            return
        ring.append(batch)
        self._ring_lines += len(batch.lines)
        excess = self._ring_lines - capacity
        while excess > 0:  # drop the oldest lines; a batch partly dropped only moves its start
            oldest = ring[0]
            left = len(oldest.lines) - oldest.start
            if left <= excess:
                ring.popleft()
                taken = left
            else:
                ring[0] = oldest._replace(start=oldest.start + excess)
                taken = excess
            excess -= taken
            self._ring_lines -= taken

    def partial_lines(self) -> list[LogLines]:
        """The partial events last shown whose lines are still unfinished."""
        now = time.time()
        return [
            LogLines(self.process_id, stream, self._next_seq, now, (text,), partial=True)
            for stream, text in self._partial_shown.items()
            if self._splitters[stream].partial is not None
        ]

    def tail(self, lines: int) -> list[LogLine]:
        """The last ``lines`` lines, oldest first."""
        if lines <= 0:
            return []
        return self.since(self.last_seq - lines)

    def since(self, seq: int) -> list[LogLine]:
        """Lines after sequence number ``seq`` that are still in the ring, oldest first."""
        newer: list[tuple[_Batch, int]] = []
        for batch in reversed(self._ring or ()):  # newest first: stop at the first batch all older
            start = max(batch.start, seq + 1 - batch.first_seq)
            if start >= len(batch.lines):
                break
            newer.append((batch, start))
        return [
            LogLine(batch.first_seq + index, batch.timestamp, self.process_id, batch.stream, text)
            for batch, start in reversed(newer)
            for index, text in enumerate(batch.lines[start:], start)
        ]

    @property
    def dropped_file_bytes(self) -> int:
        return sum(file.dropped_bytes for file in self._files.values())

    def close(self) -> None:
        if self._partial_timer is not None:
            self._partial_timer.cancel()
            self._partial_timer = None
        for file in self._files.values():
            file.close()


_LOGGING_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


def _log_each_line(event: LogLines) -> None:
    if event.partial:  # logging keeps finished lines only
        return
    # Each line at its own level (uvicorn's INFO on stderr is INFO), else stderr ERROR and stdout INFO.
    default = logging.ERROR if event.stream == STDERR else logging.INFO
    levels = levels_of(event.lines, event.stream)
    extra = {"process_id": event.process_id, "stream": event.stream}
    for index, line in enumerate(event.lines):
        level = _LOGGING_LEVELS[levels[index]] if levels else default
        if output_logger.isEnabledFor(level):
            output_logger.log(level, "%s", line, extra=extra)


def lines_of(event: LogLines) -> Iterable[LogLine]:
    for offset, text in enumerate(event.lines):
        yield LogLine(event.first_seq + offset, event.timestamp, event.process_id, event.stream, text)


class LoggingSink:
    """Passes child output to Python ``logging`` (stdout as INFO, stderr as ERROR) from its own thread,
    one record per line; or, given ``emit``, whole batches to ``emit`` (``processman serve`` prints them
    with one write per batch: a record per line cost more than reading the pipe).

    Handlers may block (a slow terminal, a full pipe); the thread keeps that away from the event loop.
    When more than ``max_pending`` lines (or ``max_pending_bytes``) wait, new lines are dropped here
    only, and the count is logged: at most once per ``report_every`` seconds per process, and always
    once the backlog is shown, even if the process writes nothing more.
    """

    def __init__(
        self,
        bus: EventBus,
        max_pending: int = 20_000,
        max_pending_bytes: int = 16 * 1024 * 1024,
        report_every: float = 1.0,
        emit: Callable[[LogLines], None] | None = None,
    ) -> None:
        self._emit = emit or _log_each_line
        self._queue: queue.SimpleQueue[tuple[LogLines, int] | None] = queue.SimpleQueue()
        self._pending = 0
        self._pending_bytes = 0
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        self.report_every = report_every
        self._dropped: collections.Counter[str] = collections.Counter()
        self._reported: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._remove = bus.add_listener(self._on_event)
        self._thread = threading.Thread(target=self._run, name="processman-logging", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        return sum(self._dropped.values())

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, LogLines):
            return
        size = sum(map(len, event.lines))
        with self._lock:
            lines = self._pending + len(event.lines)
            if lines > self._max_pending or self._pending_bytes + size > self._max_pending_bytes:
                self._dropped[event.process_id] += len(event.lines)
                return
            self._pending = lines
            self._pending_bytes += size
        self._queue.put((event, size))

    def _run(self) -> None:
        last_report = float("-inf")
        emit_failed = False
        while True:
            # With drops not yet told, wake up in time to tell them even if no more output comes.
            try:
                item = self._queue.get(timeout=self.report_every if self._unreported() else None)
            except queue.Empty:
                self._report()
                continue
            if item is None:
                break
            event, size = item
            if time.monotonic() - last_report >= self.report_every and self._report():
                last_report = time.monotonic()
            with self._lock:
                self._pending -= len(event.lines)
                self._pending_bytes -= size
            try:
                self._emit(event)
            except Exception:  # a broken output (closed stdout) must not end the thread: told once
                if not emit_failed:
                    logger.exception("cannot show the output of %s", event.process_id)
                emit_failed = True
        self._report()

    def _unreported(self) -> bool:
        with self._lock:
            return self._dropped != self._reported

    def _report(self) -> bool:
        with self._lock:
            news = {name: total - self._reported[name] for name, total in self._dropped.items()}
            self._reported.update(news)
        for process_id, lines in news.items():
            if lines:
                logger.warning(
                    "%s: %d lines were not passed to the log because the process wrote faster than it "
                    "could be shown; they are in its log files and the last 1000 in memory",
                    process_id,
                    lines,
                )
        return any(news.values())

    def close(self) -> None:
        self._remove()
        self._queue.put(None)
        self._thread.join(timeout=5)
