"""Reading /proc: which workload processes are alive, a manager's own processes, their memory and CPU.

Workload processes are found by a *token*: a number unique to one manager run that every child carries
in its command line (``sleep 4711000123``), so a count never mixes managers, and nothing the harness
did not start is ever touched. Zombies have an empty command line, so they never count as alive.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

OWN_PID = os.getpid()


class Timeout(Exception):
    """A condition did not hold in time; the message says which."""


def pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def argv(pid: int) -> list[bytes]:
    """The command line, or [] for a zombie or a process that is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            raw = file.read()
    except OSError:
        return []
    return raw.rstrip(b"\0").split(b"\0") if raw else []


def carries(words: list[bytes], token: bytes) -> bool:
    return any(token in word for word in words)


def with_token(token: str) -> set[int]:
    """Live processes whose command line contains ``token``."""
    wanted = token.encode()
    return {pid for pid in pids() if pid != OWN_PID and carries(argv(pid), wanted)}


def sleepers(token: str) -> set[int]:
    """Live ``sleep <token>`` processes (a shell wrapping one does not count)."""
    wanted = token.encode()
    found = set()
    for pid in pids():
        words = argv(pid)
        if len(words) == 2 and words[0].endswith(b"sleep") and words[1] == wanted:
            found.add(pid)
    return found


class NewSleeperWatch:
    """Finds a new ``sleep <token>`` quickly by reading only the command lines of recent pids.

    A pid that stayed something else for a while is not read again (a fresh fork execs within
    milliseconds), so each poll costs a directory listing plus a few reads."""

    SETTLE = 0.5

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._first_seen: dict[int, float] = {}
        self._settled: set[int] = set()

    def poll(self, exclude: Iterable[int] = ()) -> int | None:
        now = time.monotonic()
        skip = set(exclude)
        for pid in pids():
            if pid in self._settled or pid in skip:
                continue
            words = argv(pid)
            if len(words) == 2 and words[0].endswith(b"sleep") and words[1] == self._token:
                return pid
            seen = self._first_seen.setdefault(pid, now)
            if now - seen > self.SETTLE:
                self._settled.add(pid)
        return None

    def wait(self, exclude: Iterable[int], timeout: float, interval: float = 0.002) -> int:
        skip = set(exclude)
        deadline = time.monotonic() + timeout
        while (found := self.poll(skip)) is None:
            if time.monotonic() > deadline:
                raise Timeout(f"no new sleep process within {timeout:.0f}s")
            time.sleep(interval)
        return found


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> float:
    """Poll ``predicate`` until it holds; returns the monotonic time at which it was seen to hold."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def parents() -> dict[int, int]:
    """pid -> parent pid for every process."""
    found = {}
    for pid in pids():
        try:
            with open(f"/proc/{pid}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        found[pid] = int(fields[1])
    return found


def descendants(roots: Iterable[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in parents().items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


@dataclass(frozen=True)
class Usage:
    rss: int  # bytes, counted once per process (shared pages counted in each)
    pss: int  # bytes, shared pages divided among the processes that share them
    cpu: float  # seconds on a CPU, all threads


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid``: the scheduler's own sum (sub-millisecond), or clock ticks
    where the kernel does not expose it."""
    total = 0.0
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/sched") as file:
                for line in file:
                    if line.startswith("se.sum_exec_runtime"):
                        total += float(line.split(":")[1]) / 1000
                        break
        except (OSError, ValueError, IndexError):
            return _cpu_ticks(pid)
    return total


def _cpu_ticks(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def usage(pids_: Iterable[int]) -> Usage:
    rss = pss = 0
    cpu = 0.0
    for pid in pids_:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as file:
                for line in file:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            continue
        cpu += cpu_seconds(pid)
    return Usage(rss, pss, cpu)


def kill(pids_: Iterable[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids_:
        if pid == OWN_PID:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_matching(match: Callable[[list[bytes]], bool], rounds: int = 50) -> int:
    """SIGKILL every process whose command line matches, until none is left (they may fork meanwhile)."""
    killed = 0
    for _ in range(rounds):
        found = [pid for pid in pids() if pid != OWN_PID and match(argv(pid))]
        if not found:
            return killed
        killed += len(found)
        kill(found)
        time.sleep(0.02)
    return killed
