"""The run history on disk: every run of every process in an SQLite database in the state folder, so
run numbers go on, ``recentExits`` stay and a job's catch-up knows its last run after a restart.

The engine never waits for the disk. A bus listener puts each
:class:`~processman.engine.events.RunRecorded` on a queue, and one writer thread upserts them (by process
id and run number) and trims each process to its ``keepRuns``. Runs the writer cannot write yet (a
locked database, a full disk) stay pending, one entry per run, and are written once it can: the manager
goes on with its history in memory meanwhile. A file that is not a database is moved aside and a new one
made. Every problem is logged once, until writing works again.

Processes no longer in the config keep their rows: put back, they go on from their last run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from processman.engine.events import Event, RunRecorded
from processman.engine.runs import Run, RunOutcome, Trigger

logger = logging.getLogger(__name__)

FILE_NAME = "runs.sqlite3"
SCHEMA_VERSION = 1
# How long one write waits for another connection's lock, and the pause before a failed write is tried
# again (new runs try it at once).
BUSY_TIMEOUT = 1.0
RETRY_AFTER = 1.0
# After a write, the writer lets runs gather this long before the next: in a restart storm one
# transaction then holds many runs, where one per run took CPU from the restarts themselves.
GATHER = 0.1
# How long the manager's close waits for the last runs to be written.
CLOSE_TIMEOUT = 5.0
# SQLite's result codes for a file that is not, or no longer, a database.
_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    process_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    outcome TEXT,
    returncode INTEGER,
    signal INTEGER,
    pid INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    last_lines TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (process_id, number)
) WITHOUT ROWID
"""
_UPSERT = """
INSERT INTO runs (process_id, number, trigger, started, ended, outcome, returncode, signal, pid, reason,
                  last_lines)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (process_id, number) DO UPDATE SET
    trigger = excluded.trigger, started = excluded.started, ended = excluded.ended,
    outcome = excluded.outcome, returncode = excluded.returncode, signal = excluded.signal,
    pid = excluded.pid, reason = excluded.reason, last_lines = excluded.last_lines
"""
_TRIM = """
DELETE FROM runs WHERE process_id = ? AND number NOT IN (
    SELECT number FROM runs WHERE process_id = ? ORDER BY number DESC LIMIT ?
)
"""
_COLUMNS = "process_id, number, trigger, started, ended, outcome, returncode, signal, pid, reason, last_lines"


def is_corrupt(exc: sqlite3.Error) -> bool:
    """The file is not a database, or a damaged one (as opposed to locked, read-only or full)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _CORRUPT_CODES
    text = str(exc)
    return "not a database" in text or "malformed" in text


class RunStore:
    """The run history of one state folder.

    >>> store = RunStore(state_dir / "runs.sqlite3")
    >>> earlier = store.open()                # in a thread: {process id: runs, oldest first}
    >>> remove = bus.add_listener(store.listener)
    >>> ...
    >>> store.close()                         # in a thread: flushes, waits at most CLOSE_TIMEOUT
    """

    def __init__(
        self, path: Path, *, busy_timeout: float = BUSY_TIMEOUT, retry_after: float = RETRY_AFTER
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.retry_after = retry_after
        # Runs to write with their process's keepRuns; None: write what is pending and end.
        self._queue: queue.SimpleQueue[tuple[Run, int] | None] = queue.SimpleQueue()
        self._abandoned = threading.Event()
        self._closing = threading.Event()  # close() was called: no more gathering, write and end
        self._connection: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        self._pending: dict[tuple[str, int], tuple[Run, int]] = {}
        self.problem = ""  # why runs are not being written now ("" while they are)
        self.written = 0  # runs written, counting each change of a run
        self.moved_aside: Path | None = None  # where a corrupt file went

    def __repr__(self) -> str:
        state = f"failing: {self.problem}" if self.problem else "writing"
        return f"<RunStore {self.path} {state} pending={self.pending}>"

    @property
    def pending(self) -> int:
        """Runs recorded but not written yet (an estimate: the writer thread changes it)."""
        return len(self._pending) + self._queue.qsize()

    # ---- the manager's side ----------------------------------------------------------------------

    def open(self) -> dict[str, list[Run]]:
        """Open (or make) the database and read every process's runs, oldest first; then start the
        writer. Blocking: call it in a thread. Never raises: a database that cannot be used is logged
        and runs are kept in memory only (the writer tries again with each new run)."""
        try:
            runs = self._open_and_read()
        except (sqlite3.Error, OSError) as exc:
            # Not written either: numbered from 1 again, these runs would overwrite the ones on record.
            self._failed(exc, "cannot read the run history from", until="the manager restarts")
            return {}
        self._thread = threading.Thread(target=self._write_loop, name="processman run store", daemon=True)
        self._thread.start()
        return runs

    def listener(self, event: Event) -> None:
        """For the event bus: called inside the engine's publish, so it only queues."""
        if isinstance(event, RunRecorded) and self._thread is not None:
            self._queue.put((event.run, event.keep))

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Write what is pending and stop the writer, waiting at most ``timeout`` seconds. Blocking:
        call it in a thread. False when runs were left unwritten."""
        thread = self._thread
        if thread is None:
            return True
        self._closing.set()
        self._queue.put(None)
        thread.join(timeout)
        if thread.is_alive():
            self._abandoned.set()  # it ends after the attempt in progress
            logger.error(
                "run history: %d runs not written to %s within %g s (%s); they are lost",
                self.pending,
                self.path,
                timeout,
                self.problem or "the database is slow",
            )
            return False
        self._thread = None
        return True

    # ---- the writer thread -----------------------------------------------------------------------

    def _write_loop(self) -> None:
        stopping = False
        failed = False
        while not self._abandoned.is_set():
            # Block until a run comes; after a failed write, try again after a pause or at the next run.
            for item in self._take(self.retry_after if failed else None):
                if item is None:
                    stopping = True
                else:
                    run, keep = item
                    self._pending[(run.process_id, run.number)] = (run, keep)
            failed = not self._write_pending()
            if stopping and not failed:
                break
            if not failed:
                self._closing.wait(GATHER)  # ended at once by close(): a shutdown does not wait
        self._close_connection()

    def _take(self, timeout: float | None) -> list[tuple[Run, int] | None]:
        """What is queued, waiting up to ``timeout`` seconds (None: for ever) for the first item."""
        try:
            items = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _write_pending(self) -> bool:
        if not self._pending:
            return True
        batch = list(self._pending.values())
        try:
            connection = self._connection or self._connect()
            keeps = {run.process_id: keep for run, keep in batch}
            with connection:  # one transaction per batch
                connection.executemany(_UPSERT, [_row(run) for run, _keep in batch])
                connection.executemany(_TRIM, [(pid, pid, keep) for pid, keep in keeps.items()])
        except (sqlite3.Error, OSError) as exc:
            if isinstance(exc, sqlite3.Error) and is_corrupt(exc):
                self._replace_corrupt(exc)
            self._failed(exc, "cannot write the run history to")
            return False
        for run, keep in batch:
            key = (run.process_id, run.number)
            if self._pending.get(key) == (run, keep):
                del self._pending[key]
        self.written += len(batch)
        if self.problem:
            logger.info("run history: written to %s again", self.path)
            self.problem = ""
        return True

    # ---- the database ----------------------------------------------------------------------------

    def _open_and_read(self) -> dict[str, list[Run]]:
        try:
            connection = self._connect()
            rows = connection.execute(f"SELECT {_COLUMNS} FROM runs ORDER BY process_id, number").fetchall()
        except sqlite3.DatabaseError as exc:
            if not is_corrupt(exc):
                raise
            self._replace_corrupt(exc)
            self._connect()
            return {}
        runs: dict[str, list[Run]] = {}
        for row in rows:
            run = _run(row)
            if run is not None:
                runs.setdefault(run.process_id, []).append(run)
        return runs

    def _connect(self) -> sqlite3.Connection:
        """The one connection, made by the thread that first needs it and then used by the writer."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Used by one thread at a time: the opening thread, then the writer.
        connection = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            with connection:
                connection.execute(_SCHEMA)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _replace_corrupt(self, exc: sqlite3.Error) -> None:
        """Move the damaged file (and its journal) aside, so the next connection makes a new one."""
        self._close_connection()
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            self.path.replace(aside)
        except OSError as move_error:
            logger.error(
                "run history: %s is damaged (%s) and cannot be moved aside: %s", self.path, exc, move_error
            )
            return
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                self.path.with_name(self.path.name + suffix).unlink()
        self.moved_aside = aside
        logger.error(
            "run history: %s was damaged (%s); moved aside to %s, a new one is made",
            self.path,
            exc,
            aside.name,
        )

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()

    def _failed(self, exc: BaseException, what: str, until: str = "writing works again") -> None:
        problem = f"{what} {self.path}: {exc}"
        if not self.problem:  # once per outage
            logger.error("run history: %s; runs are kept in memory only until %s", problem, until)
        self.problem = problem


def _row(run: Run) -> tuple[object, ...]:
    return (
        run.process_id,
        run.number,
        str(run.trigger),
        run.started,
        run.ended,
        None if run.outcome is None else str(run.outcome),
        run.returncode,
        run.signal,
        run.pid,
        run.reason,
        json.dumps(list(run.last_lines)),
    )


def _run(row: tuple[Any, ...]) -> Run | None:
    """A row as a Run; None for a row this version cannot read (a trigger or outcome it does not know)."""
    process_id, number, trigger, started, ended, outcome, returncode, signal, pid, reason, lines = row
    try:
        last_lines = json.loads(str(lines))
        return Run(
            process_id=str(process_id),
            number=int(number),
            trigger=Trigger(trigger),
            started=float(started),
            ended=None if ended is None else float(ended),
            outcome=None if outcome is None else RunOutcome(outcome),
            returncode=None if returncode is None else int(returncode),
            signal=None if signal is None else int(signal),
            pid=int(pid),
            reason=str(reason),
            last_lines=tuple(str(line) for line in last_lines),
        )
    except (ValueError, TypeError):
        logger.warning("run history: skipped a run of %s that cannot be read: %r", process_id, row)
        return None


__all__ = ["FILE_NAME", "RunStore"]
