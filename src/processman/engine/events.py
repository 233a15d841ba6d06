"""Events a manager publishes, and the bus that carries them to subscribers without ever blocking."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from processman.engine.runs import Run
from processman.engine.states import Status

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """A process's status, last error or readiness changed (``status == previous`` when only the last
    error or the readiness did)."""

    process_id: str
    status: Status
    previous: Status
    pid: int
    timestamp: float
    restart_count: int
    last_error: str
    ready: bool = False


@dataclass(frozen=True, slots=True)
class ProcessExited:
    process_id: str
    pid: int
    returncode: int | None  # None when killed by a signal
    signal: int | None
    uptime: float
    timestamp: float
    expected: bool  # asked for (stop/restart) rather than a crash


@dataclass(frozen=True, slots=True)
class LogLines:
    """Consecutive lines of one stream: line ``i`` has sequence number ``first_seq + i``.

    With ``partial``, the event holds one line that is not finished: the latest state of a line the
    child keeps redrawing with carriage returns (a progress bar). It replaces the previous partial line
    of the same stream and is itself replaced by the next event of that stream: another partial state,
    or the finished line (the first line of the next event without ``partial``). A partial line is not
    in the ring and has no sequence number of its own (``first_seq`` is the one it will probably get).
    """

    process_id: str
    stream: str  # "stdout" | "stderr" | "system" (processman's own notes)
    first_seq: int
    timestamp: float
    lines: tuple[str, ...]
    partial: bool = False


@dataclass(frozen=True, slots=True)
class ProcessRemoved:
    """A config reload removed the process (its tree is stopped): streams that follow it end."""

    process_id: str
    timestamp: float


@dataclass(frozen=True, slots=True)
class RunRecorded:
    """A run began, ended, or was skipped (``run.outcome`` None: it began). ``keep``: how many runs of
    the process the history keeps (the store trims to it)."""

    process_id: str
    run: Run
    timestamp: float
    keep: int = 100


Event = StatusChanged | ProcessExited | LogLines | ProcessRemoved | RunRecorded
Listener = Callable[[Event], None]


class Subscription:
    """A bounded queue of events. When the consumer falls behind, new events are dropped and counted."""

    def __init__(self, bus: EventBus, maxsize: int, process_id: str | None) -> None:
        self._bus = bus
        self._queue: collections.deque[Event] = collections.deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        self.process_id = process_id
        self.dropped_events = 0
        self.dropped_lines = 0
        self.closed = False

    def _offer(self, event: Event) -> None:
        if self.process_id is not None and event.process_id != self.process_id:
            return
        if len(self._queue) >= self._maxsize:
            self.dropped_events += 1
            if isinstance(event, LogLines) and not event.partial:
                self.dropped_lines += len(event.lines)
                self._bus.dropped_lines += len(event.lines)
            return
        self._queue.append(event)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Event:
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def get_nowait(self) -> Event | None:
        return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        self.closed = True
        self._bus._subscriptions.discard(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventBus:
    """Fan-out of events. Publishing never blocks and never raises because of a subscriber."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Listener] = []
        self.dropped_lines = 0  # by every subscriber that fell behind, since the bus was made

    def subscribe(self, *, maxsize: int = 1000, process_id: str | None = None) -> Subscription:
        """Async consumers: ``with bus.subscribe() as events: async for event in events: ...``."""
        subscription = Subscription(self, maxsize, process_id)
        self._subscriptions.add(subscription)
        return subscription

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Synchronous consumers that must return at once. Returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, event: Event) -> None:
        for subscription in tuple(self._subscriptions):
            subscription._offer(event)
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug is its own: the publisher and the others go on
                logger.exception("an event listener failed on %r", event)

    def close(self) -> None:
        for subscription in tuple(self._subscriptions):
            subscription.close()
