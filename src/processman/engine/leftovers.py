"""The run file: which manager owns a state folder, and what a previous run left behind.

A manager writes ``run.json`` (its run id, pid and start time, and the pid and start time of each child
it spawned) into its state folder. The next manager to start there cleans up whatever the previous run
left: the run cgroup it recorded (every process in it is killed, then it is removed), processes that
carry the old run's tag, and recorded children whose pid *and* start time still match, so a recycled pid
is never killed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from processman.engine import backend
from processman.engine.posix import TagScanner, send_signal, wait_for_exit
from processman.errors import AlreadyRunningElsewhere

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"


def _start_time(pid: int) -> float | None:
    """When ``pid`` started, in seconds since the epoch, as psutil's ``create_time`` counts it (run
    files written by earlier versions hold that); None when it is gone or a zombie."""
    return backend.current().facts.start_time(pid)


# Above any pid_max Linux allows: a larger number is no process (and would overflow os.kill).
PID_MAX = 2**22


def _pid(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= PID_MAX:
        return value
    return None


def _time(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _children(value: Any) -> list[list[Any]] | None:
    """The recorded children that can be read ([pid, start time] pairs); None when none can."""
    if not isinstance(value, list):
        return None
    pairs = [item for item in value if isinstance(item, list) and len(item) == 2]
    good = [[_pid(pid), _time(started)] for pid, started in pairs]
    return [pair for pair in good if None not in pair]


def read_run_file(path: Path) -> dict[str, Any] | None:
    """What a previous run wrote, keeping only the fields that can be read: a damaged file (by a
    crash, a full disk or a hand) must not stop this run. Each field that is dropped is warned about."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError, MemoryError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        logger.warning("ignoring %s: it cannot be read (%s)", path, reason)
        return None
    if not isinstance(data, dict):
        logger.warning("ignoring %s: expected an object", path)
        return None
    readers: dict[str, Callable[[Any], Any]] = {
        "runId": lambda value: value if isinstance(value, str) and value else None,
        "pid": _pid,
        "startTime": _time,
        "children": _children,
        "cgroup": lambda value: value if isinstance(value, str) and value else None,
    }
    previous: dict[str, Any] = {}
    for name, read in readers.items():
        if name not in data:
            continue
        value = read(data[name])
        if value is None or (name == "children" and len(value) != len(data[name])):
            logger.warning("%s: ignoring field %r, which cannot be read", path, name)
        if value is not None:
            previous[name] = value
    return previous


class RunFile:
    def __init__(self, folder: Path, run_id: str, record: dict[str, Any] | None = None) -> None:
        self.path = folder / RUN_FILE
        self.run_id = run_id
        self._record = record or {}  # what the containment needs to clean up ({"cgroup": path})
        self._children: dict[int, float] = {}
        self._pending: asyncio.TimerHandle | None = None

    def claim(self) -> dict[str, Any] | None:
        """Write our run file; return what is usable of the previous one. Raises
        AlreadyRunningElsewhere when its manager is still alive."""
        previous = read_run_file(self.path)
        if previous is not None:
            pid = previous.get("pid")
            if pid is not None and pid != os.getpid():
                started = _start_time(pid)
                recorded = previous.get("startTime")
                if started is not None and recorded is not None and abs(started - recorded) < 0.5:
                    raise AlreadyRunningElsewhere(
                        f"another processman (pid {pid}) is already running "
                        f"with state folder {self.path.parent}"
                    )
        self._write()
        return previous

    def child_started(self, pid: int) -> None:
        started = _start_time(pid)
        if started is not None:
            self._children[pid] = started
        self._schedule()

    def child_gone(self, pid: int) -> None:
        self._children.pop(pid, None)
        self._schedule()

    def _schedule(self) -> None:
        # Many children start at once: write the file once, shortly after.
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(0.5, self._flush)

    def _flush(self) -> None:
        self._pending = None
        self._write()

    def _write(self) -> None:
        data = {
            "runId": self.run_id,
            "pid": os.getpid(),
            "startTime": _start_time(os.getpid()),
            "children": [[pid, started] for pid, started in self._children.items()],
            **self._record,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(data))
            temporary.replace(self.path)
        except OSError as exc:
            logger.warning("cannot write %s: %s", self.path, exc.strerror or exc)

    def remove(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self.path.unlink(missing_ok=True)


async def clean_up_previous_run(previous: dict[str, Any], scanner: TagScanner) -> int:
    """Terminate what a previous run left behind. Returns how many processes were found."""
    run_id = previous.get("runId")
    pids: set[int] = set()
    if isinstance(run_id, str) and run_id:
        pids.update(scanner.tagged_with_prefix(f"{run_id}:"))
    for pid, recorded in _children(previous.get("children")) or ():
        started = _start_time(pid)
        if started is not None and abs(started - recorded) < 0.5:
            pids.add(pid)
    if not pids:
        return 0
    logger.warning("cleaning up %d process(es) left behind by a previous run", len(pids))
    send_signal(pids, None, signal.SIGTERM)
    survivors = await wait_for_exit(pids, 2.0)
    send_signal(survivors, None, signal.SIGKILL)
    await wait_for_exit(survivors, 2.0)
    return len(pids)
