"""Linux ``/proc``: the one module that reads it for process facts (the linux backend's
:class:`ProcfsFacts`; the portable backend reads the same facts through psutil).

Each reader returns None (or nothing) for a process that is gone, a zombie, or unreadable: a process may
exit between the listing and the read, and a caller never has to tell those apart.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from processman.environment import TAG_VARIABLE

PROC = "/proc"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_TAG_BYTES = TAG_VARIABLE.encode() + b"="


@dataclass(slots=True)
class ProcStat:
    """One live process at one read."""

    pid: int
    # When it started, in clock ticks (after boot on Linux, after the epoch through psutil): with the
    # pid, names a process for good.
    start: int
    group: int
    ticks: int  # user + system CPU, in clock ticks
    rss_pages: int
    parent: int = 0


def read_stat(pid: int) -> ProcStat | None:
    """A live process's stat line; None for a zombie or a process that is gone."""
    # os.open and os.read: half the cost of a Python file object, and this runs for every process.
    try:
        fd = os.open(f"{PROC}/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        stat = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not stat:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ")".
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None
    ticks = int(fields[11]) + int(fields[12])
    return ProcStat(pid, int(fields[19]), int(fields[2]), ticks, int(fields[21]), int(fields[1]))


def read_tag(pid: int) -> str | None:
    """The ``PROCESSMAN_TAG`` in the environment ``pid`` started with; None without one."""
    try:
        with open(f"{PROC}/{pid}/environ", "rb") as file:
            environ = file.read()
    except OSError:
        return None
    start = environ.find(b"\0" + _TAG_BYTES)
    if start < 0:
        if not environ.startswith(_TAG_BYTES):
            return None
        start = 0
    else:
        start += 1
    start += len(_TAG_BYTES)
    end = environ.find(b"\0", start)
    return environ[start : end if end >= 0 else None].decode("utf-8", "replace")


def read_cmdline(pid: int) -> str:
    """The command line of ``pid`` with spaces between the words; "" when it cannot be read."""
    try:
        with open(f"{PROC}/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def listed_pids() -> set[int]:
    return {int(name) for name in os.listdir(PROC) if name.isdigit()}


def newest_pid() -> int | None:
    """The last pid the kernel handed out, to a process or a thread (the last field of /proc/loadavg)."""
    try:
        with open(f"{PROC}/loadavg", "rb") as file:
            return int(file.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def same_pid_namespace() -> bool:
    """/proc/loadavg counts the pids of this process's namespace; /proc lists those of its mount's."""
    try:
        return int(os.readlink(f"{PROC}/self")) == os.getpid()
    except (OSError, ValueError):
        return False


@functools.cache
def boot_time() -> float:
    try:
        with open(f"{PROC}/stat", "rb") as file:
            for line in file:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0.0  # start times are then seconds since boot: still the same from one run to the next


def start_time(pid: int) -> float | None:
    """When ``pid`` started, in seconds since the epoch, as psutil's ``create_time`` counts it; None
    when it is gone or a zombie."""
    stat = read_stat(pid)
    return None if stat is None else boot_time() + stat.start / CLOCK_TICKS


def own_memory() -> int:
    """This process's resident bytes."""
    with open(f"{PROC}/self/statm", "rb") as file:
        return int(file.read().split()[1]) * PAGE_SIZE


def own_open_fds() -> int:
    return len(os.listdir(f"{PROC}/self/fd"))


class ProcfsFacts:
    """Process facts read from ``/proc`` (the linux backend)."""

    name = "/proc"

    def pids(self) -> set[int]:
        return listed_pids()

    def stat(self, pid: int) -> ProcStat | None:
        return read_stat(pid)

    def alive(self, pid: int) -> bool:
        return read_stat(pid) is not None

    def tag(self, pid: int) -> str | None:
        return read_tag(pid)

    def start_time(self, pid: int) -> float | None:
        return start_time(pid)

    def cmdline(self, pid: int) -> str:
        return read_cmdline(pid)

    def newest_pid(self) -> int | None:
        return newest_pid() if same_pid_namespace() else None

    def own_memory(self) -> int:
        return own_memory()

    def own_open_fds(self) -> int:
        return own_open_fds()
