"""Live streams as Server-Sent Events: state changes of every process, and the log of one process.

Both subscribe to the manager before they read its current state, so nothing that happens in between
is lost. A subscriber that falls behind has events dropped by the manager (it never blocks a child);
the streams notice and catch up from the manager's state and log buffer instead of going silent.

Log events carry ``id: <seq>`` (the line's sequence number): a client that reconnects with
``Last-Event-ID`` (or ``after=``) gets every line after it that is still in the buffer, and a
``dropped`` event with the count of lines that are not.

A line the child redraws with carriage returns (a progress bar) comes as ``partial`` events while it
changes (at most five a second), each replacing the previous one of its stream, without an id; the
finished line then comes as an ordinary ``log`` event. Clients that only listen to ``log`` events see
finished lines only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any, Final

from processman.api.sse import format_comment, format_event
from processman.api.wire import (
    exit_event_to_json,
    line_to_json,
    lines_event_to_json,
    run_event_to_json,
    state_to_json,
)
from processman.engine.events import Event, LogLines, ProcessExited, RunRecorded, StatusChanged, Subscription
from processman.engine.manager import ProcessManager
from processman.errors import ProcessNotFound
from processman.logs import LogLine

KEEPALIVE = 15.0
# Tells EventSource clients how soon to reconnect after a dropped connection (milliseconds).
RETRY_MS = 1000
_TIMEOUT: Final = object()


def line_dict(line: LogLine) -> dict[str, Any]:
    return {**line_to_json(line), "seq": line.seq}


def _log_events(lines: Iterable[dict[str, Any]]) -> str:
    return "".join(format_event(json.dumps(line), event="log", event_id=line["seq"]) for line in lines)


class StreamHub:
    """The open streams of one API, so that shutting the API down can end them: an open stream would
    otherwise hold the HTTP server's graceful shutdown until the client goes away."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._subscriptions: set[Subscription] = set()
        self.closed = False
        self.catch_ups = 0  # how often a stream fell behind and caught up from the manager's state

    def __len__(self) -> int:
        return len(self._subscriptions)

    def open(self, manager: ProcessManager, process_id: str | None = None) -> Subscription:
        subscription = manager.subscribe(process_id=process_id, maxsize=self.queue_size)
        if self.closed:
            subscription.close()
        self._subscriptions.add(subscription)
        return subscription

    def release(self, subscription: Subscription) -> None:
        subscription.close()
        self._subscriptions.discard(subscription)

    def close(self) -> None:
        """End every open stream, and every stream opened from now on."""
        self.closed = True
        for subscription in tuple(self._subscriptions):
            subscription.close()


async def _next(subscription: Subscription, keepalive: float) -> Event | object | None:
    """The next event; ``_TIMEOUT`` after ``keepalive`` seconds of quiet; None once closed."""
    try:
        async with asyncio.timeout(keepalive):
            return await subscription.get()
    except TimeoutError:
        return _TIMEOUT
    except StopAsyncIteration:
        return None


async def status_stream(
    manager: ProcessManager, hub: StreamHub, keepalive: float = KEEPALIVE
) -> AsyncGenerator[str, None]:
    """``snapshot`` (the whole list) first, then ``status`` (one process's state) at every change, and
    after an exit's ``status``, ``exit`` (the exit itself, in the shape of ``recentExits``); ``run``
    (a run of the history, as ``/runs`` lists it) when a run begins, ends or is skipped.

    If events were dropped because this client reads slowly, or the set of processes changed (a config
    reload added or removed some), the next event is a fresh ``snapshot``."""
    subscription = hub.open(manager)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        ids = manager.ids
        yield _snapshot(manager)
        dropped = 0
        while (item := await _next(subscription, keepalive)) is not None:
            if item is _TIMEOUT:
                yield format_comment("keep-alive")
            elif subscription.dropped_events != dropped or manager.ids != ids:
                dropped = subscription.dropped_events
                ids = manager.ids
                hub.catch_ups += 1
                yield _snapshot(manager)
            elif isinstance(item, StatusChanged | ProcessExited) and item.process_id in ids:
                state = state_to_json(manager.state(item.process_id))
                text = format_event(json.dumps(state), event="status")
                if isinstance(item, ProcessExited):
                    text += format_event(json.dumps(exit_event_to_json(item)), event="exit")
                yield text
            elif isinstance(item, RunRecorded) and item.process_id in ids:
                yield format_event(json.dumps(run_event_to_json(item)), event="run")
    finally:
        hub.release(subscription)


def _snapshot(manager: ProcessManager) -> str:
    return format_event(json.dumps([state_to_json(state) for state in manager.states()]), event="snapshot")


async def log_stream(
    manager: ProcessManager,
    hub: StreamHub,
    process_id: str,
    *,
    lines: int,
    after: int | None,
    keepalive: float = KEEPALIVE,
) -> AsyncGenerator[str, None]:
    """The last ``lines`` lines (or, with ``after``, every buffered line after that sequence number),
    then each new line as it is written. The caller checks that the process exists: the response has
    begun by the time this runs. The stream ends if a config reload removes the process."""
    subscription = hub.open(manager, process_id)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        if after is not None and after > manager.last_log_seq(process_id):
            after = 0  # a cursor from the future: the server restarted and its numbering began again
        if after is None:
            backlog = manager.logs(process_id, lines)
            cursor = backlog[-1].seq if backlog else manager.last_log_seq(process_id)
            yield _log_events(map(line_dict, backlog))
        else:
            cursor = after
            catch_up, cursor = _catch_up(manager, process_id, cursor)
            yield catch_up
        if partials := manager.partial_lines(process_id):
            yield "".join(map(_partial_events, partials))
        dropped = 0
        while (item := await _next(subscription, keepalive)) is not None:
            if item is _TIMEOUT:
                if process_id not in manager.ids:
                    return
                yield format_comment("keep-alive")
                continue
            if isinstance(item, LogLines) and item.partial:
                yield _partial_events(item)
                continue
            # Any event may be the first after a drop: the queue may have filled with status changes.
            behind = isinstance(item, LogLines) and item.first_seq > cursor + 1
            if subscription.dropped_events != dropped or behind:
                dropped = subscription.dropped_events
                hub.catch_ups += 1
                catch_up, cursor = _catch_up(manager, process_id, cursor)
                yield catch_up
                continue
            if not isinstance(item, LogLines):
                if process_id not in manager.ids:
                    return
                continue
            fresh = [line for line in lines_event_to_json(item) if line["seq"] > cursor]
            if fresh:
                cursor = fresh[-1]["seq"]
                yield _log_events(fresh)
    except ProcessNotFound:
        return  # removed by a config reload while catching up
    finally:
        hub.release(subscription)


def _partial_events(event: LogLines) -> str:
    return "".join(format_event(json.dumps(line), event="partial") for line in lines_event_to_json(event))


def _catch_up(manager: ProcessManager, process_id: str, cursor: int) -> tuple[str, int]:
    """Every buffered line after ``cursor``, preceded by a ``dropped`` event for lines no longer kept."""
    missing = manager.logs_since(process_id, cursor)
    last = manager.last_log_seq(process_id)
    first_kept = missing[0].seq if missing else last + 1
    text = ""
    if first_kept > cursor + 1:
        text = format_event(json.dumps({"count": first_kept - cursor - 1}), event="dropped")
    return text + _log_events(map(line_dict, missing)), (missing[-1].seq if missing else max(cursor, last))


def merged_logs(manager: ProcessManager, ids: Iterable[str], lines: int) -> list[LogLine]:
    """The last ``lines`` lines of several processes together, oldest first (by time, then id)."""
    merged: list[LogLine] = []
    for process_id in ids:
        with contextlib.suppress(ProcessNotFound):  # removed by a reload meanwhile
            merged.extend(manager.logs(process_id, lines))
    merged.sort(key=lambda line: (line.timestamp, line.process_id, line.seq))
    return merged[-lines:] if lines else []


async def merged_log_stream(
    manager: ProcessManager,
    hub: StreamHub,
    members: Callable[[], list[str]],
    *,
    lines: int,
    keepalive: float = KEEPALIVE,
) -> AsyncGenerator[str, None]:
    """Several processes' logs interleaved, as ``pm2 logs`` shows them: the last ``lines`` lines of them
    all, then each new line of any of them. ``members()`` says which processes count, asked again
    when the set of processes changes (a reload adds one to the group, or removes one). A client that
    falls behind gets a ``dropped`` event per process and the lines still buffered; there is no
    resuming with ``Last-Event-ID``: sequence numbers are per process."""
    subscription = hub.open(manager)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        ids = manager.ids
        wanted = set(members())
        backlog = merged_logs(manager, wanted, lines)
        cursors = {process_id: manager.last_log_seq(process_id) for process_id in wanted}
        yield _merged_events(map(line_dict, backlog))
        dropped = 0
        while (item := await _next(subscription, keepalive)) is not None:
            if item is _TIMEOUT:
                yield format_comment("keep-alive")
                continue
            if manager.ids != ids:
                ids = manager.ids
                wanted = set(members())
                cursors = {pid: cursors.get(pid, manager.last_log_seq(pid)) for pid in wanted}
            if subscription.dropped_events != dropped:
                dropped = subscription.dropped_events
                hub.catch_ups += 1
                for process_id in sorted(wanted):
                    text, cursors[process_id] = _merged_catch_up(manager, process_id, cursors[process_id])
                    yield text
                continue
            if not isinstance(item, LogLines) or item.process_id not in wanted:
                continue
            cursor = cursors[item.process_id]
            if item.first_seq > cursor + 1:  # lines of this process were missed: catch up on it
                text, cursors[item.process_id] = _merged_catch_up(manager, item.process_id, cursor)
                yield text
                continue
            fresh = [line for line in lines_event_to_json(item) if line["seq"] > cursor]
            if fresh:
                cursors[item.process_id] = fresh[-1]["seq"]
                yield _merged_events(fresh)
    except ProcessNotFound:
        return
    finally:
        hub.release(subscription)


def _merged_events(lines: Iterable[dict[str, Any]]) -> str:
    # No event ids: a sequence number is one process's, so there is no one cursor to resume from.
    return "".join(format_event(json.dumps(line), event="log") for line in lines)


def _merged_catch_up(manager: ProcessManager, process_id: str, cursor: int) -> tuple[str, int]:
    """As ``_catch_up``, for one process of a merged stream: its ``dropped`` event names the process."""
    missing = manager.logs_since(process_id, cursor)
    last = manager.last_log_seq(process_id)
    first_kept = missing[0].seq if missing else last + 1
    text = ""
    if first_kept > cursor + 1:
        lost = {"count": first_kept - cursor - 1, "processId": process_id}
        text = format_event(json.dumps(lost), event="dropped")
    return text + _merged_events(map(line_dict, missing)), (missing[-1].seq if missing else max(cursor, last))
