"""Start and stop order from ``dependsOn``.

A process with dependencies waits, before the first spawn of each start, until every dependency meets
its condition; it is ``starting`` meanwhile and its ``lastError`` says what it waits for. Every process
waits on its own, so independent processes start at once. The wait wakes on the manager's events, never
by polling. Conditions, for a dependency named by its entry id (all of an entry's instances must meet it):

- ``started``: spawned and alive (``starting`` while its readiness probe has not passed yet, or
  ``running``);
- ``healthy``: ready, i.e. ``running`` (its readiness probe passed; without one, as soon as it is spawned);
- ``completed``: exited on its own with code 0 at least once since the manager started.

Restarts after a crash or a failed liveness probe do not wait (the loop keeps going); every start does.
On shutdown, dependants are stopped before what they depend on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, TypeVar

from processman.config import ProcessConfig
from processman.engine.events import Event, EventBus, ProcessExited, StatusChanged
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


class DependencyGate:
    """Tells whether a process's dependencies are met, and lets it wait until they are."""

    def __init__(self, bus: EventBus | None = None, members: Members = tuple) -> None:
        self._members = members
        self._completed: set[str] = set()
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
        if isinstance(event, ProcessExited):
            if event.returncode == 0 and not event.expected:
                self._completed.add(event.process_id)
            self.notify(event.process_id)
        elif isinstance(event, StatusChanged):
            self.notify(event.process_id)

    def _meets(self, member: Member, condition: str) -> bool:
        if condition == "completed":
            return member.config.id in self._completed
        if condition == "healthy":
            return member.status is Status.RUNNING and member.ready
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
