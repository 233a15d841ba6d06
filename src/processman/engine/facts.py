"""Process facts: which processes exist, and of each its start time, parent, process group, CPU time,
memory, environment tag and command line.

One interface, two sources: ``/proc`` on Linux (:class:`processman.engine.procfs.ProcfsFacts`, the
fastest) and psutil everywhere else (:class:`PsutilFacts`: macOS, the BSDs, and Linux with
``PROCESSMAN_BACKEND=portable``). The backend (:mod:`processman.engine.backend`) picks one.
"""

from __future__ import annotations

import os
from typing import Protocol

import psutil

from processman.engine.procfs import CLOCK_TICKS, PAGE_SIZE, ProcStat
from processman.environment import TAG_VARIABLE


class Facts(Protocol):
    name: str  # "/proc" or "psutil", for people

    def pids(self) -> set[int]:
        """Every pid on the machine (that this process can see)."""
        ...

    def stat(self, pid: int) -> ProcStat | None:
        """A live process's start, group, CPU and memory; None for a zombie or a process that is gone."""
        ...

    def alive(self, pid: int) -> bool:
        """``pid`` runs and is not a zombie."""
        ...

    def tag(self, pid: int) -> str | None:
        """The ``PROCESSMAN_TAG`` of ``pid``'s environment; None without one or when it cannot be read."""
        ...

    def start_time(self, pid: int) -> float | None:
        """When ``pid`` started, in seconds since the epoch; None when it is gone or a zombie."""
        ...

    def cmdline(self, pid: int) -> str:
        """The command line with spaces between the words; "" when it cannot be read."""
        ...

    def newest_pid(self) -> int | None:
        """The last pid handed out, when the system says (Linux); None: every read lists every pid."""
        ...

    def own_memory(self) -> int:
        """This process's resident bytes."""
        ...

    def own_open_fds(self) -> int:
        """How many descriptors this process has open."""
        ...


class PsutilFacts:
    """Process facts through psutil (the portable backend)."""

    name = "psutil"

    def pids(self) -> set[int]:
        return set(psutil.pids())

    def stat(self, pid: int) -> ProcStat | None:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                if process.status() == psutil.STATUS_ZOMBIE:
                    return None
                times = process.cpu_times()
                rss = process.memory_info().rss
                parent = process.ppid()
                created = process.create_time()
            group = os.getpgid(pid)
        except (psutil.Error, OSError):
            return None
        return ProcStat(
            pid,
            round(created * CLOCK_TICKS),
            group,
            round((times.user + times.system) * CLOCK_TICKS),
            rss // PAGE_SIZE,
            parent,
        )

    def alive(self, pid: int) -> bool:
        try:
            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    def tag(self, pid: int) -> str | None:
        try:
            return psutil.Process(pid).environ().get(TAG_VARIABLE)
        except (psutil.Error, OSError):
            return None

    def start_time(self, pid: int) -> float | None:
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return float(process.create_time())
        except psutil.Error:
            return None

    def cmdline(self, pid: int) -> str:
        try:
            return " ".join(psutil.Process(pid).cmdline()).strip()
        except (psutil.Error, OSError):
            return ""

    def newest_pid(self) -> int | None:
        return None

    def own_memory(self) -> int:
        return int(psutil.Process().memory_info().rss)

    def own_open_fds(self) -> int:
        return int(psutil.Process().num_fds())
