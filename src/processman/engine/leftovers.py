"""The run file: which manager owns a state folder, and what a previous run left behind.

A manager writes ``run.json`` (its run id, pid and start time, and the pid and start time of each child
it spawned) into its state folder. The next manager to start there cleans up whatever the previous run
left: the run cgroup it recorded (every process in it is killed, then it is removed), processes that
carry the old run's tag, and recorded children whose pid *and* start time still match, so a recycled pid
is never killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

from processman.engine.posix import TagScanner, send_signal, wait_for_exit
from processman.engine.resources import CLOCK_TICKS, read_stat
from processman.errors import AlreadyRunningElsewhere

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"


def _start_time(pid: int) -> float | None:
    """When ``pid`` started, in seconds since the epoch, as psutil's ``create_time`` counts it (run
    files written by earlier versions hold that); None when it is gone or a zombie."""
    stat = read_stat(pid)
    return None if stat is None else _boot_time() + stat.start / CLOCK_TICKS


@functools.cache
def _boot_time() -> float:
    try:
        with open("/proc/stat", "rb") as file:
            for line in file:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0.0  # start times are then seconds since boot: still the same from one run to the next


class RunFile:
    def __init__(self, folder: Path, run_id: str, record: dict[str, Any] | None = None) -> None:
        self.path = folder / RUN_FILE
        self.run_id = run_id
        self._record = record or {}  # what the containment needs to clean up ({"cgroup": path})
        self._children: dict[int, float] = {}
        self._pending: asyncio.TimerHandle | None = None

    def claim(self) -> dict[str, Any] | None:
        """Write our run file; return the previous one. Raises AlreadyRunningElsewhere when its
        manager is still alive."""
        previous: dict[str, Any] | None = None
        with contextlib.suppress(OSError, ValueError):
            previous = json.loads(self.path.read_text())
        if isinstance(previous, dict):
            pid = previous.get("pid")
            if isinstance(pid, int) and pid != os.getpid():
                started = _start_time(pid)
                if started is not None and abs(started - float(previous.get("startTime", 0))) < 0.5:
                    raise AlreadyRunningElsewhere(
                        f"another processman (pid {pid}) is already running "
                        f"with state folder {self.path.parent}"
                    )
        else:
            previous = None
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
    for entry in previous.get("children", []):
        if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int):
            started = _start_time(entry[0])
            if started is not None and abs(started - float(entry[1])) < 0.5:
                pids.add(entry[0])
    if not pids:
        return 0
    logger.warning("cleaning up %d process(es) left behind by a previous run", len(pids))
    send_signal(pids, None, signal.SIGTERM)
    survivors = await wait_for_exit(pids, 2.0)
    send_signal(survivors, None, signal.SIGKILL)
    await wait_for_exit(survivors, 2.0)
    return len(pids)
