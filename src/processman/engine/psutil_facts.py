"""Process facts through psutil, for the portable backend (see :mod:`processman.engine.facts`)."""

from __future__ import annotations

import os

import psutil

from processman.engine.procfs import CLOCK_TICKS, PAGE_SIZE, ProcStat
from processman.environment import TAG_VARIABLE


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
