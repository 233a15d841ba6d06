"""Start and stop order from ``dependsOn``.

A process with dependencies waits, before the first spawn of each start, until every dependency meets
its condition; it is ``starting`` meanwhile and its ``lastError`` says what it waits for. Every process
waits on its own, so independent processes start at once. The wait wakes on the manager's events, never
by polling. Conditions, for a dependency named by its entry id (all of an entry's instances must meet it):

- ``started``: spawned and alive (``starting`` while its readiness probe has not passed yet, or
  ``running``);
- ``healthy``: ready, i.e. ``running`` (its readiness probe passed; without one, as soon as it is spawned);
- ``completed``: exited on its own, with any exit code, at least once since the manager started (a stop
  or restart that was asked for does not count, nor does a death by a signal);
- ``completedSuccessfully``: the same, with one of its ``successExitCodes``;
- ``logReady``: a finished line of its own output (stdout or stderr, not processman's notes) matched
  its ``readyLogLine`` (``re.search``) since its latest start, and that run still goes on (``started``);
  each new start needs a new line. A dependency that printed its line and ended meets ``completed``
  instead.

The gate learns ended runs and lines from the bus (``RunRecorded``, ``LogLines``) as they are published,
so a dependant that starts later still sees them. A start is a move into ``starting``. Each pattern is
compiled once and a run's lines are matched only until one matches.

Restarts after a crash or a failed liveness probe do not wait (the loop keeps going); every start does.
On shutdown, dependants are stopped before what they depend on.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, TypeVar

from processman.config import ProcessConfig
from processman.engine.events import Event, EventBus, LogLines, ProcessRemoved, RunRecorded, StatusChanged
from processman.engine.runs import RunOutcome
from processman.engine.states import Status


class Named(Protocol):
    @property
    def config(self) -> ProcessConfig: ...


class Member(Named, Protocol):
    """What the gate reads of a process (a ManagedProcess is one)."""

    @property
    def status(self) -> Status: ...

    @property
    def ready(self) -> bool: ...

    @property
    def pid(self) -> int: ...


class Stoppable(Named, Protocol):
    async def stop(self) -> None: ...


Members = Callable[[], Iterable[Member]]
_P = TypeVar("_P", bound=Named)
_OUTPUT = ("stdout", "stderr")  # the child's own streams ("system" holds processman's notes)


class DependencyGate:
    """Tells whether a process's dependencies are met, and lets it wait until they are."""

    def __init__(self, bus: EventBus | None = None, members: Members = tuple) -> None:
        self._members = members
        # The exit codes of the runs that ended on their own, by process id, since the manager started.
        self._exit_codes: dict[str, set[int]] = {}
        # logReady: the processes whose current run printed their line; the pattern of each process
        # whose current run has not yet; every pattern compiled once, by its text.
        self._log_ready: set[str] = set()
        self._listening: dict[str, re.Pattern[str]] = {}
        self._compiled: dict[str, re.Pattern[str]] = {}
        # Waiters by the process ids and entry ids whose changes wake them.
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        if bus is not None:
            bus.add_listener(self._on_event)

    def unmet(self, depends_on: Mapping[str, str]) -> list[str]:
        """The dependencies not met yet, as ``"db (healthy)"``."""
        named = _by_name(self._members())
        waiting = []
        for name, condition in depends_on.items():
            members = named.get(name, [])
            if not members:
                waiting.append(f"{name} ({condition}: no such process)")
            elif condition == "logReady" and any(m.config.ready_log_line is None for m in members):
                waiting.append(f"{name} (logReady: it has no readyLogLine)")  # only possible from code
            elif not all(self._meets(member, condition) for member in members):
                waiting.append(f"{name} ({condition})")
        return waiting

    async def wait(self, config: ProcessConfig, report: Callable[[str], None]) -> None:
        """Return once the dependencies of ``config`` are met. ``report`` hears what is still awaited
        each time that changes, and "" once nothing is. Cancel the wait to give up (a stop)."""
        shown = ""
        keys = {*config.depends_on, config.id}
        while unmet := self.unmet(config.depends_on):
            reason = "waiting for " + ", ".join(unmet)
            if reason != shown:
                shown = reason
                report(reason)
            await self._change_of(keys)
        if shown:
            report("")

    def notify(self, process_id: str) -> None:
        """Process ``process_id`` changed in a way a condition may depend on: wake who waits on it."""
        for key in {process_id, process_id.partition(":")[0]}:
            for waiter in self._waiters.pop(key, ()):
                if not waiter.done():
                    waiter.set_result(None)

    async def _change_of(self, keys: set[str]) -> None:
        waiter = asyncio.get_running_loop().create_future()
        for key in keys:
            self._waiters.setdefault(key, set()).add(waiter)
        try:
            await waiter
        finally:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[key]

    def _on_event(self, event: Event) -> None:
        if isinstance(event, LogLines):
            self._on_lines(event)
        elif isinstance(event, RunRecorded):
            # A run that ended on its own with an exit code: not stopped, not timed out, not skipped.
            run = event.run
            if run.outcome in (RunOutcome.SUCCEEDED, RunOutcome.FAILED) and run.returncode is not None:
                self._exit_codes.setdefault(event.process_id, set()).add(run.returncode)
                self.notify(event.process_id)
        elif isinstance(event, StatusChanged):
            if event.status is Status.STARTING and event.previous is not Status.STARTING:
                self._started(event.process_id)
            self.notify(event.process_id)
        elif isinstance(event, ProcessRemoved):
            self._exit_codes.pop(event.process_id, None)
            self._log_ready.discard(event.process_id)
            self._listening.pop(event.process_id, None)
            self.notify(event.process_id)

    def _started(self, process_id: str) -> None:
        """A new start: its logReady line must come again, from this run."""
        self._log_ready.discard(process_id)
        self._listening.pop(process_id, None)
        # Read at each start, so a reloaded readyLogLine applies from the next start.
        text = next((m.config.ready_log_line for m in self._members() if m.config.id == process_id), None)
        if text is not None:
            pattern = self._compiled.get(text)
            if pattern is None:
                pattern = self._compiled[text] = re.compile(text)  # the config checked it compiles
            self._listening[process_id] = pattern

    def _on_lines(self, event: LogLines) -> None:
        # Called for every batch of output: return at once unless this run still awaits its line.
        pattern = self._listening.get(event.process_id)
        if pattern is None or event.partial or event.stream not in _OUTPUT:
            return
        if any(pattern.search(line) for line in event.lines):
            del self._listening[event.process_id]
            self._log_ready.add(event.process_id)
            self.notify(event.process_id)

    def _meets(self, member: Member, condition: str) -> bool:
        process_id = member.config.id
        if condition == "completed":
            return process_id in self._exit_codes
        if condition == "completedSuccessfully":
            codes = self._exit_codes.get(process_id, ())
            return any(code in codes for code in member.config.success_exit_codes)
        if condition == "logReady":
            return process_id in self._log_ready and _started(member)
        if condition == "healthy":
            return member.status is Status.RUNNING and member.ready
        return _started(member)


def _started(member: Member) -> bool:
    return member.pid != 0 and member.status in (Status.STARTING, Status.RUNNING)


async def stop_in_order(processes: Iterable[Stoppable]) -> None:
    """Stop every process, each after the processes that depend on it, everything else in parallel."""
    processes = list(processes)
    named = _by_name(processes)
    needs: dict[str, set[str]] = {}
    for process in processes:
        wanted = (other for name in process.config.depends_on for other in named.get(name, ()))
        needs[process.config.id] = {other.config.id for other in wanted}
    dependants: dict[str, set[str]] = {process_id: set() for process_id in needs}
    for process_id, dependencies in needs.items():
        for dependency in dependencies:
            dependants[dependency].add(process_id)
    loop = asyncio.get_running_loop()
    stopped = {process_id: loop.create_future() for process_id in needs}

    async def stop(process: Stoppable) -> None:
        process_id = process.config.id
        # A dependant that is also one of our own dependencies is a cycle (only possible from code,
        # the loader rejects them): waiting on it would never end, so those stop together.
        upstream = _reachable(process_id, needs)
        waiting = [stopped[other] for other in dependants[process_id] if other not in upstream]
        try:
            if waiting:
                await asyncio.wait(waiting)
            await process.stop()
        finally:
            stopped[process_id].set_result(None)

    await asyncio.gather(*(stop(process) for process in processes))


def _by_name(processes: Iterable[_P]) -> dict[str, list[_P]]:
    """Processes by id and by entry id (a dependency on an entry means all of its instances)."""
    named: dict[str, list[_P]] = {}
    for process in processes:
        named.setdefault(process.config.id, []).append(process)
        if process.config.entry != process.config.id:
            named.setdefault(process.config.entry, []).append(process)
    return named


def _reachable(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(edges.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return seen
