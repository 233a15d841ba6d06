"""Resource use: what each process tree and the manager itself consume, ``maxMemory``, and OS limits.

A manager owns one :class:`ResourceSampler`. Every ``interval`` seconds (behind the HTTP API, only while
someone reads the figures or a ``maxMemory`` needs them: see ``ResourceSampler.on_demand``) it reads,
in a worker thread so the event loop keeps answering, the stat line (CPU ticks, resident pages,
process group) of each process of the trees: the members found so far, and the processes started
since the last sample (see :class:`ProcTable`; every process on the machine only once a minute or so).
The environment is read only of a process it has not seen before (to read its ``PROCESSMAN_TAG``; a
process's tag never changes, so it is cached by pid and start time). A tree is, as for the stop
ladder, the child's process group plus every process that carries its tag, plus every member its
containment lists without a scan (a cgroup's ``cgroup.procs``: a member that lost its tag, such as a
daemon that rewrote its title, is still counted).

CPU percent is the tree's CPU time between two samples over the wall time between them (100 = one
core), however long that was. A process that appeared since the previous sample counts whole: it
started in between; one that ended counts up to the last sample that saw it (with cgroups, to its
end, unless its whole run ended too). Memory is the resident set size summed over the tree (pages
shared between its processes count once per process, as ``ps`` and PM2 show them).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import resource
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from processman.config import ProcessConfig
from processman.engine import backend, cgroups
from processman.engine.clock import SYSTEM_CLOCK, Clock
from processman.engine.facts import Facts
from processman.engine.procfs import CLOCK_TICKS, PAGE_SIZE, ProcStat
from processman.sizes import format_size

logger = logging.getLogger(__name__)

# maxMemory acts on memory that *stays* high: this many consecutive samples above the limit.
OVER_LIMIT_SAMPLES = 2
# The event-loop lag probe: a timer every LAG_TICK seconds; the lag is the worst lateness among the
# last LAG_TICKS_KEPT of them (about two seconds).
LAG_TICK = 0.25
LAG_TICKS_KEPT = 8
# Every this many samples, and at a sample more than this many intervals after the previous one, every
# process on the machine is read, not only the trees and newcomers.
FULL_SCAN_EVERY = 30
# On demand (ResourceSampler.on_demand), while nobody reads the figures and no maxMemory needs them: no
# sample and no lag probe (a tick a second was half of an idle serve's wake-ups; a sample reads every
# tree). A read brings both back for READ_KEEPS_SAMPLING seconds.
READ_KEEPS_SAMPLING = 60.0

# Config name -> resource, for ``limits``.
RLIMITS: dict[str, int] = {
    "openFiles": resource.RLIMIT_NOFILE,
    "cpuSeconds": resource.RLIMIT_CPU,
    "coreSize": resource.RLIMIT_CORE,
}


def apply_limits(pid: int, limits: Mapping[str, int]) -> list[str]:
    """Set the OS limits of a child that has just started: soft and hard limit both ``value``, except
    cpuSeconds, whose hard limit is one second later, so the process first gets SIGXCPU (which says
    why it died) and SIGKILL only if it survives that.

    Returns one sentence per limit that could not be applied; an empty list when all were. Applied
    with prlimit(2) right after the start, so a process the child forks in its first instant (before
    the limits are set) would not inherit them.
    """
    problems: list[str] = []
    if limits and not hasattr(resource, "prlimit"):  # macOS, the BSDs: no way to set another's limits
        return [
            f"limits.{name} {value} not applied: this system has no prlimit" for name, value in limits.items()
        ]
    for name, value in limits.items():
        which = RLIMITS[name]
        try:
            resource.prlimit(pid, which, (value, value + 1 if name == "cpuSeconds" else value))
        except ProcessLookupError:
            return problems  # already gone: nothing left to limit
        except (ValueError, OverflowError, OSError) as exc:
            problems.append(f"limits.{name} {value} not applied: {_why_not(pid, which, value, exc)}")
    return problems


def _why_not(pid: int, which: int, value: int, exc: Exception) -> str:
    if isinstance(exc, OverflowError):
        return "too large for this system"
    if which == resource.RLIMIT_NOFILE:
        with contextlib.suppress(OSError, ValueError), open("/proc/sys/fs/nr_open") as file:
            ceiling = int(file.read())
            if value > ceiling:
                return f"above the system's maximum of {ceiling} (sysctl fs.nr_open)"
    try:
        _, hard = resource.prlimit(pid, which)
    except (ValueError, OSError):
        hard = resource.RLIM_INFINITY
    if hard != resource.RLIM_INFINITY and value > hard and os.geteuid() != 0:
        return f"above the hard limit {hard}, which only a privileged manager (CAP_SYS_RESOURCE) can raise"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


@dataclass(frozen=True, slots=True)
class TreeUsage:
    """One process tree at one sample."""

    processes: int  # live processes in the tree
    cpu_percent: float | None  # None until two samples exist
    memory: int  # resident bytes, summed over the tree
    # CPU time of the tree's processes, all runs (a counter; a process that ended counts up to the
    # last sample that saw it).
    cpu_seconds: float


@dataclass(frozen=True, slots=True)
class ManagerUsage:
    """The manager process itself."""

    memory: int  # resident bytes
    cpu_seconds: float  # user + system, every thread
    open_fds: int
    loop_lag: float | None  # the worst lateness of a timer over the last two seconds or so
    sample_seconds: float | None  # how long the last sample took
    log_lines_dropped: Mapping[str, int]  # consumer -> lines it dropped since the manager started


class Sampled(Protocol):
    """What the sampler needs of a managed process."""

    config: ProcessConfig
    usage: TreeUsage | None

    @property
    def pid(self) -> int: ...

    def restart_for(self, reason: str) -> None: ...

    def listed_members(self) -> list[int]:
        """The tree's members as its containment lists them without a scan (a cgroup's
        ``cgroup.procs``), including those that lost their tag; [] when only the scan finds them."""
        ...

    def accounting(self) -> Path | None:
        """The cgroup whose ``cpu.stat`` and ``memory.current`` account for the tree; None: /proc."""
        ...


# A sample's reading: by tag, by process group, the members each containment lists, and each cgroup's
# (memory, CPU seconds).
_Read = tuple[
    dict[str, list[ProcStat]],
    dict[int, list[ProcStat]],
    dict[str, list[ProcStat]],
    dict[str, tuple[int | None, float | None]],
]


def read_stat(pid: int) -> ProcStat | None:
    """A live process's start, group, CPU and memory (through the backend); None for a zombie or a
    process that is gone."""
    return backend.current().facts.stat(pid)


class ProcTable:
    """Reads the stat lines of the processes in the trees and, once per process, its tag (when it starts
    with ``prefix``).

    Reading every process on the machine costs in proportion to all it runs, so a read looks only at
    the trees' members found so far, the group leaders asked for, and the processes started since the
    previous read: the kernel hands pids out in increasing order (wrapping at pid_max) and
    /proc/loadavg names the last one, so the newcomers are the listed pids after the previous read's
    last one, up to this read's. When nothing has started, /proc is not even listed. A newcomer whose
    parent is known to carry no tag of ours inherited that environment: its own is not read (on a busy
    machine, the newcomers are mostly other programs' processes). The first read,
    every ``full_scan_every``-th, and one asked for as ``full`` (after a long gap, when the pid counter
    may have wrapped past the previous read's last pid) read every process: the safety net for a
    process that joins a tree's group without its tag, or a /proc that shows another pid namespace than
    this process's.
    Where the backend cannot say which pid is the newest (the portable one), every read is a full one;
    the tags stay cached by pid and start time all the same.
    """

    def __init__(self, prefix: str, full_scan_every: int | None = None, facts: Facts | None = None) -> None:
        self.facts = facts or backend.current().facts
        self._prefix = prefix.encode()
        self._own_pid = os.getpid()
        self._tags: dict[tuple[int, int], str | None] = {}
        self._members: set[int] = set()
        self._newest: int | None = None  # the last pid handed out, as of the previous read
        self._reads = 0
        self.full_scan_every = full_scan_every or FULL_SCAN_EVERY
        self.stats_read = 0  # stat lines the last read looked at
        self.tags_read = 0  # environments the last read looked at

    def read(
        self, groups: set[int], full: bool = False
    ) -> tuple[dict[str, list[ProcStat]], dict[int, list[ProcStat]]]:
        """Processes by tag (this run's tags only) and by process group (only the ``groups`` asked for).
        ``full`` reads every process whatever the count of reads says."""
        facts = self.facts
        newest = facts.newest_pid()
        previous = self._newest
        self.tags_read = 0
        if full or newest is None or previous is None or self._reads % self.full_scan_every == 0:
            full, pids = True, facts.pids()
        else:
            full, pids = False, self._members | groups
            if newest != previous:
                pids.update(started_between(facts.pids(), previous, newest))
        by_tag: dict[str, list[ProcStat]] = {}
        by_group: dict[int, list[ProcStat]] = {}
        tags: dict[tuple[int, int], str | None] = {} if full else self._tags
        untagged = set() if full else {pid for (pid, _), tag in tags.items() if tag is None}
        members: set[int] = set()
        for pid in sorted(pids):  # parents (usually the lower pid) before their children
            if pid == self._own_pid:
                continue
            stat = facts.stat(pid)
            if stat is None:
                continue
            key = (stat.pid, stat.start)
            if key in self._tags:
                tag = self._tags[key]
            elif stat.parent in untagged:
                tag = None  # forked by a process that is none of ours, with its environment
            else:
                tag = self._read_tag(pid)
            tags[key] = tag
            if tag is None:
                untagged.add(pid)
            else:
                untagged.discard(pid)  # the pid of a process gone since, handed out again
                by_tag.setdefault(tag, []).append(stat)
                members.add(pid)
            if stat.group in groups:
                by_group.setdefault(stat.group, []).append(stat)
                members.add(pid)
        # A full read forgets the processes that are gone; between full reads, the newcomers that are
        # not ours stay cached (a minute's worth at most).
        self._tags = tags
        self._members = members
        self._newest = newest
        self._reads += 1
        self.stats_read = len(pids)
        return by_tag, by_group

    def _read_tag(self, pid: int) -> str | None:
        self.tags_read += 1
        tag = self.facts.tag(pid)
        return tag if tag is not None and tag.encode().startswith(self._prefix) else None


def started_between(pids: Iterable[int], previous: int, newest: int) -> set[int]:
    """The ``pids`` handed out after ``previous`` up to ``newest``, the kernel's counter having wrapped
    past pid_max if ``newest`` is the smaller (an old pid the counter skipped over may be among them:
    a read too many, never one too few).

    >>> sorted(started_between([5, 300, 301, 302, 900], 300, 302))
    [301, 302]
    >>> sorted(started_between([5, 300, 900], 800, 10))  # wrapped
    [5, 900]
    """
    if previous <= newest:
        return {pid for pid in pids if previous < pid <= newest}
    return {pid for pid in pids if pid > previous or pid <= newest}


class ResourceSampler:
    """Samples the trees of a manager's processes and restarts those above ``maxMemory``.

    ``processes`` returns the manager's processes at each sample (they may change between samples);
    ``dropped`` returns the log lines each consumer dropped. ``interval`` 0 turns sampling off.

    ``on_demand`` (off unless the owner of every reader, the HTTP API, turns it on) samples only while
    the figures are in use: a process has ``maxMemory``, a reader is at work (:meth:`reading`: a
    request, a live stream) or was in the last minute. Otherwise, after the first sample, none at all
    (the cost of a sample grows with the number of processes): the first reader after a quiet spell
    waits for the sample it brings forward (:meth:`fresh`), whose CPU percent covers the whole spell.
    Whoever changes what :meth:`in_use` depends on calls :meth:`wake` (the manager after a reload).
    """

    def __init__(
        self,
        run_id: str,
        processes: Callable[[], Iterable[Sampled]],
        interval: float,
        dropped: Callable[[], Mapping[str, int]] = dict,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._run_id = run_id
        self._processes = processes
        self._dropped = dropped
        self.table = ProcTable(f"{run_id}:")  # its read counts say what the last sample looked at
        self._ticks: dict[tuple[int, int], int] = {}
        self._cgroup_cpu: dict[str, float] = {}  # each cgroup's CPU seconds at the last sample
        self._cpu_ticks: dict[str, int] = {}  # whole ticks, so the counter never drifts
        self._usage: dict[str, TreeUsage] = {}
        self._over: dict[str, int] = {}
        self._last_sample: float | None = None
        self._sample_seconds: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._sampling = asyncio.Lock()
        self._lag_handle: asyncio.TimerHandle | None = None
        self._lag_due = 0.0
        self._lags: collections.deque[float] = collections.deque(maxlen=LAG_TICKS_KEPT)
        self.samples = 0
        self._on_demand = False
        self._readers = 0
        self._read_until = 0.0  # monotonic: the last reader keeps the full rate until then
        self._wake = asyncio.Event()  # a reader came: the sampling loop looks at its pause again
        self.waiting = False  # the sampling loop waits for a reader (or a maxMemory): no sample is due
        self._sampled = asyncio.Event()  # set (and replaced) at the end of each sample

    def __repr__(self) -> str:
        return f"<ResourceSampler interval={self.interval}s samples={self.samples}>"

    def start(self) -> None:
        if self.interval <= 0 or self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._lag_due = loop.time() + LAG_TICK
        self._lag_handle = loop.call_at(self._lag_due, self._lag_tick)
        self._task = asyncio.create_task(self._run(), name="resource sampler")

    async def close(self) -> None:
        """Stop sampling."""
        if self._lag_handle is not None:
            self._lag_handle.cancel()
            self._lag_handle = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            began = self._clock.monotonic()
            try:
                await self.sample()
            except OSError as exc:  # /proc unreadable: report, keep trying
                logger.warning("cannot sample resource use: %s", exc)
            except Exception:  # a bug here must not end sampling (or maxMemory) for good
                logger.exception("resource sample failed")
            if self.in_use():  # a maxMemory added by a reload: the lag probe runs again too
                self._arm_lag()
            await self._until_due(began)

    async def _until_due(self, began: float) -> None:
        """Until the next sample is due: ``interval`` after ``began`` while the figures are in use,
        else until a reader (or a maxMemory) comes and makes them so."""
        while True:
            self._wake.clear()
            if not self.in_use():
                self.waiting = True
                try:
                    await self._wake.wait()
                finally:
                    self.waiting = False
                continue
            left = began + self.interval - self._clock.monotonic()
            if left <= 0:
                return
            await self._pause(left)

    async def _pause(self, seconds: float) -> None:
        """Until ``seconds`` have passed on the clock or the loop is woken."""
        woken = asyncio.ensure_future(self._wake.wait())
        timer = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait([woken, timer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            timer.cancel()
            await asyncio.gather(woken, timer, return_exceptions=True)

    @property
    def on_demand(self) -> bool:
        return self._on_demand

    @on_demand.setter
    def on_demand(self, value: bool) -> None:
        self._on_demand = value
        self._wake.set()  # turned off: every sample again

    def wake(self) -> None:
        """Look again at whether the figures are in use (a reload may have added a ``maxMemory``)."""
        self._wake.set()

    def in_use(self) -> bool:
        """Whether the figures are sampled now (always, unless ``on_demand``)."""
        if not self.on_demand or self._readers or self._clock.monotonic() < self._read_until:
            return True
        return any(process.config.max_memory is not None for process in self._processes())

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Around a reader's work (a request, a live stream): the full rate while it lasts and for
        ``READ_KEEPS_SAMPLING`` seconds after."""
        self._readers += 1
        self._wake.set()
        self._arm_lag()
        try:
            yield
        finally:
            self._readers -= 1
            self._read_until = self._clock.monotonic() + READ_KEEPS_SAMPLING

    async def fresh(self, timeout: float = 5.0) -> None:
        """For a reader about to use the figures: when the last sample is older than two intervals
        (nobody read them for a while), wait for the one this brings forward (``timeout`` at most)."""
        self._read_until = max(self._read_until, self._clock.monotonic() + READ_KEEPS_SAMPLING)
        recent = (
            self._last_sample is not None and self._clock.monotonic() - self._last_sample <= 2 * self.interval
        )
        sampled = self._sampled
        self._wake.set()
        self._arm_lag()
        if self._task is None or recent:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await sampled.wait()

    @property
    def probing_lag(self) -> bool:
        """Whether the event-loop lag probe's timer is set (not while nobody reads the figures)."""
        return self._lag_handle is not None

    def _arm_lag(self) -> None:
        """Start the lag probe again if it stopped while nobody read the figures."""
        if self._task is None or self._lag_handle is not None:
            return
        loop = asyncio.get_running_loop()
        self._lag_due = loop.time() + LAG_TICK
        self._lag_handle = loop.call_at(self._lag_due, self._lag_tick)

    def _lag_tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._lags.append(max(now - self._lag_due, 0.0))
        if not self.in_use():  # nobody reads it: stop until a reader (or a sample in use) comes
            self._lag_handle = None
            return
        self._lag_due = now + LAG_TICK
        self._lag_handle = loop.call_at(self._lag_due, self._lag_tick)

    async def sample(self) -> None:
        """Take one sample now: update every process's ``usage`` and act on ``maxMemory``."""
        async with self._sampling:  # rates are deltas from the previous sample: one at a time
            try:
                await self._sample()
            finally:
                self._sampled.set()
                self._sampled = asyncio.Event()

    async def _sample(self) -> None:
        began = time.perf_counter()
        running = [(process, process.pid) for process in self._processes()]
        groups = {pid for _, pid in running if pid}
        # After a long gap (nobody read the figures) the pid counter may have wrapped past the last
        # pid seen: the newcomers cannot be told from the others.
        full = (
            self._last_sample is not None
            and self._clock.monotonic() - self._last_sample > FULL_SCAN_EVERY * self.interval
        )
        by_tag, by_group, listed, accounted = await asyncio.to_thread(
            self._read, groups, [p for p, _ in running], full
        )
        now = self._clock.monotonic()
        elapsed = now - self._last_sample if self._last_sample is not None else None
        ticks: dict[tuple[int, int], int] = {}
        cgroup_cpus: dict[str, float] = {}
        for process, pid in running:
            process_id = process.config.id
            if not pid or process.pid != pid:  # not running, or restarted during the scan
                process.usage = None
                self._usage.pop(process_id, None)
                self._over.pop(process_id, None)
                continue
            members = {stat.pid: stat for stat in by_tag.get(f"{self._run_id}:{process_id}", ())}
            members.update((stat.pid, stat) for stat in by_group.get(pid, ()))
            members.update((stat.pid, stat) for stat in listed.get(process_id, ()))
            used = 0
            for stat in members.values():
                key = (stat.pid, stat.start)
                used += stat.ticks - self._ticks.get(key, 0)
                ticks[key] = stat.ticks
            cgroup_memory, cgroup_cpu = accounted.get(process_id, (None, None))
            if cgroup_cpu is not None:
                # The cgroup counts what the tree used, processes gone since the last sample too. A
                # smaller figure than last time: a new run's cgroup, counted from zero.
                before = self._cgroup_cpu.get(process_id, 0.0)
                used = round((cgroup_cpu - before if cgroup_cpu >= before else cgroup_cpu) * CLOCK_TICKS)
                cgroup_cpus[process_id] = cgroup_cpu
            total = self._cpu_ticks[process_id] = self._cpu_ticks.get(process_id, 0) + used
            percent = round(used / CLOCK_TICKS / elapsed * 100, 1) if elapsed else None
            memory = (
                cgroup_memory
                if cgroup_memory is not None
                else sum(stat.rss_pages for stat in members.values()) * PAGE_SIZE
            )
            usage = TreeUsage(len(members), percent, memory, total / CLOCK_TICKS)
            process.usage = self._usage[process_id] = usage
            self._check_memory(process, memory)
        self._ticks = ticks
        self._cgroup_cpu = cgroup_cpus
        known = {process.config.id for process, _ in running}
        for forgotten in (self._usage.keys() | self._cpu_ticks.keys()) - known:  # removed by a reload
            self._usage.pop(forgotten, None)
            self._cpu_ticks.pop(forgotten, None)
        self._last_sample = now
        self._sample_seconds = time.perf_counter() - began
        self.samples += 1

    def _read(self, groups: set[int], processes: list[Sampled], full: bool) -> _Read:
        """The scan (of every process if ``full``), the stat lines of the members each containment
        lists, and what each cgroup accounts for (in a worker thread)."""
        by_tag, by_group = self.table.read(groups, full)
        listed: dict[str, list[ProcStat]] = {}
        accounted: dict[str, tuple[int | None, float | None]] = {}
        for process in processes:
            stats = [stat for pid in process.listed_members() if (stat := self.table.facts.stat(pid))]
            if stats:
                listed[process.config.id] = stats
            cgroup = process.accounting()
            if cgroup is not None:
                accounted[process.config.id] = cgroups.usage(cgroup)
        return by_tag, by_group, listed, accounted

    def _check_memory(self, process: Sampled, memory: int) -> None:
        process_id = process.config.id
        limit = process.config.max_memory
        if limit is None or memory <= limit:
            self._over.pop(process_id, None)
            return
        over = self._over[process_id] = self._over.get(process_id, 0) + 1
        if over < OVER_LIMIT_SAMPLES:
            return
        del self._over[process_id]
        reason = f"memory {format_size(memory)} above maxMemory {format_size(limit)}"
        logger.warning("%s: %s; restarting", process_id, reason)
        process.restart_for(reason)  # asks the process's owner, which restarts it; returns at once

    def usage(self) -> dict[str, TreeUsage]:
        """The running processes' trees at the last sample, by process id."""
        return dict(self._usage)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time each process's trees have used, all runs together (counters), by process id."""
        return {process_id: ticks / CLOCK_TICKS for process_id, ticks in self._cpu_ticks.items()}

    def manager_usage(self) -> ManagerUsage:
        """The manager process now (memory, CPU, descriptors, dropped lines) and over the last two
        seconds or so (event-loop lag)."""
        times = os.times()
        return ManagerUsage(
            memory=self.table.facts.own_memory(),
            cpu_seconds=times.user + times.system,
            open_fds=self.table.facts.own_open_fds(),
            loop_lag=max(self._lags) if self._lags else None,
            sample_seconds=self._sample_seconds,
            log_lines_dropped=dict(self._dropped()),
        )


__all__ = ["ManagerUsage", "ResourceSampler", "TreeUsage", "apply_limits"]
