"""Notifications: tells a webhook (JSON, Slack, Discord), a command or an email address (through
PocketBase's mail settings) when a process crashes, gives up, recovers, restarts in a storm or is
restarted for its memory.

The engine is never held up: the notifier hears events through a bus listener that only classifies
them and appends to a bounded queue (the oldest notification is dropped, and counted, when it is full).
Its own task waits a moment so that what happens at once (a crash and the give-up after it, ten
processes failing together) goes out as one message per target, then hands each target's share to
that target's lane: one delivery task per target, with retries and a growing delay, so a dead target
holds back only itself. What reaches a lane while it retries waits in its bounded queue (the oldest is
dropped, and counted, when full) and goes out together with the next try. Failures are logged and
counted (``/metrics``). At shutdown the manager lets the notifier flush for a few seconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processman.config.model import ProcessConfig
from processman.config.notify import NotifyTarget
from processman.engine.events import Event, EventBus, ProcessExited, RunRecorded, StatusChanged
from processman.engine.runs import RunOutcome
from processman.engine.states import Status
from processman.logs import format_timestamp

logger = logging.getLogger(__name__)

# Sends one email: (address, subject, text). Raises when it cannot.
EmailSender = Callable[[str, str, str], Awaitable[None]]

DISCORD_LIMIT = 2000  # characters of a Discord message
SLACK_LIMIT = 3900  # Slack cuts a text block above 4,000 characters
# ExitRecord.reason of a restart above maxMemory (engine.resources): "memory 600 MB above maxMemory ...".
_MEMORY_REASON = "above maxMemory"


@dataclass(frozen=True)
class Notification:
    """One thing worth telling: ``event`` is one of ``config.notify.NOTIFY_EVENTS``."""

    event: str
    process_id: str
    timestamp: float
    message: str  # one line for people
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "process": self.process_id,
            "time": format_timestamp(self.timestamp),
            "message": self.message,
            **self.details,
        }


@dataclass(frozen=True)
class NotifierOptions:
    coalesce: float = 1.0  # seconds to wait for more notifications before sending
    max_pending: int = 500  # notifications waiting; beyond, the oldest are dropped
    attempts: int = 5  # tries per delivery
    first_retry: float = 2.0  # delay before the second try; doubles
    timeout: float = 10.0  # one try of a webhook, a command or an email
    flush: float = 5.0  # at shutdown, how long what is queued or retried may still take


class NotifyStats:
    """What was delivered, by target (as ``NotifyTarget.describe()`` names it)."""

    def __init__(self) -> None:
        self.sent: collections.Counter[str] = collections.Counter()  # deliveries that succeeded
        self.failed: collections.Counter[str] = collections.Counter()  # deliveries given up
        self.retried: collections.Counter[str] = collections.Counter()  # tries that failed
        self.dropped = 0  # notifications dropped from a full queue


class _Lane:
    """One target's deliveries: what waits for it, and the task delivering (None when idle)."""

    def __init__(self) -> None:
        self.queue: collections.deque[Notification] = collections.deque()
        self.task: asyncio.Task[None] | None = None


class Notifier:
    """Watches a manager's events and delivers notifications to their targets.

    ``state`` gives a process's current state and ``config`` its config (None once removed);
    ``targets`` are the top-level targets (every process), to which each process's own ``notify`` is
    added.
    """

    def __init__(
        self,
        bus: EventBus,
        state: Callable[[str], Any],
        config: Callable[[str], ProcessConfig | None],
        targets: Iterable[NotifyTarget] = (),
        *,
        email: EmailSender | None = None,
        options: NotifierOptions | None = None,
    ) -> None:
        self._bus = bus
        self._state = state
        self._config = config
        self.targets: tuple[NotifyTarget, ...] = tuple(targets)
        self.email = email
        self.options = options or NotifierOptions()
        self.stats = NotifyStats()
        self._pending: collections.deque[tuple[Notification, NotifyTarget]] = collections.deque()
        self._wake = asyncio.Event()
        self._troubled: set[str] = set()  # crashed or failed, not recovered yet
        self._recovery: dict[str, asyncio.TimerHandle] = {}
        self._exits: dict[str, collections.deque[float]] = {}  # unexpected exits, for storms
        self._storming: set[tuple[str, NotifyTarget]] = set()
        self._host = socket.gethostname()
        self._lanes: dict[NotifyTarget, _Lane] = {}
        self._tasks: asyncio.TaskGroup | None = None  # owns the lanes' tasks while run() runs
        self._hurry = asyncio.Event()  # set by flush(): no more coalescing
        self._progress = asyncio.Event()  # set whenever busy may have turned false
        self._warned_email = False

    def __repr__(self) -> str:
        return f"<Notifier targets={len(self.targets)} waiting={len(self._pending)}>"

    @property
    def busy(self) -> bool:
        """Notifications wait or are being delivered."""
        return bool(self._pending) or any(lane.task is not None for lane in self._lanes.values())

    async def flush(self, timeout: float | None = None) -> bool:
        """Sends what waits at once and waits, at most ``timeout`` (``options.flush``) seconds, until
        nothing waits or is being delivered; True when everything went out (or was given up)."""
        self._hurry.set()
        try:
            async with asyncio.timeout(self.options.flush if timeout is None else timeout):
                while self.busy:
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            logger.warning("shutting down with notifications still unsent: %s", self._unsent())
            return False
        return True

    def _unsent(self) -> str:
        waiting = [n for n, _ in self._pending]
        waiting += [n for lane in self._lanes.values() for n in lane.queue]
        return "; ".join(n.message for n in waiting) or "deliveries in progress"

    # ---- the listener: classify and queue, nothing more ---------------------------------------------

    async def run(self) -> None:
        """Listens and delivers until cancelled."""
        remove = self._bus.add_listener(self._on_event)
        self._hurry.clear()  # a manager started again coalesces again
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                while True:
                    await self._wake.wait()
                    # What happens together goes out together (unless a shutdown is flushing).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.options.coalesce):
                            await self._hurry.wait()
                    self._wake.clear()
                    batch, self._pending = self._pending, collections.deque()
                    self._hand_out(batch)
        finally:
            self._tasks = None
            for lane in self._lanes.values():
                lane.task = None  # cancelled with the group
            remove()
            for handle in self._recovery.values():
                handle.cancel()

    def _on_event(self, event: Event) -> None:
        # Inside the engine's publish: return at once, never raise.
        try:
            if isinstance(event, StatusChanged) and event.status is not event.previous:
                if self._told(event.process_id):
                    self._on_status(event)
            elif isinstance(event, ProcessExited) and self._told(event.process_id):
                self._on_exit(event)
            elif isinstance(event, RunRecorded) and self._told(event.process_id):
                self._on_run(event)
        except Exception:
            logger.exception("cannot make a notification of %r", event)

    def _told(self, process_id: str) -> bool:
        """Whether anyone hears about this process (most setups have no targets at all)."""
        if self.targets:
            return True
        config = self._config(process_id)
        return config is not None and bool(config.notify)

    def _on_status(self, event: StatusChanged) -> None:
        process_id = event.process_id
        if event.status is Status.CRASHED and self._is_job(process_id):
            return  # a job waiting to retry a run: its failed run is told as runFailed
        if event.status is Status.CRASHED or event.status is Status.FAILED:
            self._cancel_recovery(process_id)
            self._troubled.add(process_id)
            state = self._state(process_id)
            details: dict[str, Any] = {"restartCount": event.restart_count, "lastError": event.last_error}
            if state is not None and state.exits:
                last = state.exits[-1]
                details.update(exitCode=last.returncode, signal=last.signal, lastLines=list(last.last_lines))
            if event.status is Status.CRASHED:
                message = f"{process_id} crashed: {event.last_error}"
                self._notify("crashed", process_id, event.timestamp, message, details)
            else:
                message = f"{process_id} gave up: {event.last_error}"
                self._notify("failed", process_id, event.timestamp, message, details)
        elif event.status is Status.RUNNING and process_id in self._troubled:
            state = self._state(process_id)
            if state is None:
                return
            # Recovered once it stays up as long as a healthy run lasts (minUptime): a crash loop
            # does not recover at every start.
            pid = event.pid
            delay = state.config.min_uptime
            self._cancel_recovery(process_id)
            self._recovery[process_id] = asyncio.get_running_loop().call_later(
                delay, self._check_recovered, process_id, pid, delay
            )
        elif event.status is Status.STOPPED:
            self._cancel_recovery(process_id)
            self._troubled.discard(process_id)  # stopped on purpose: nothing to recover from

    def _is_job(self, process_id: str) -> bool:
        config = self._config(process_id)
        return config is not None and config.is_job

    def _on_run(self, event: RunRecorded) -> None:
        """runFailed: a run of a job that failed or timed out (each attempt, retries included)."""
        run = event.run
        if run.outcome not in (RunOutcome.FAILED, RunOutcome.TIMED_OUT) or not self._is_job(event.process_id):
            return
        message = f"{event.process_id}: run {run.number} failed: {run.reason}"
        details: dict[str, Any] = {
            "run": run.number,
            "trigger": str(run.trigger),
            "outcome": str(run.outcome),
            "exitCode": run.returncode,
            "signal": run.signal,
            "lastLines": list(run.last_lines),
        }
        self._notify("runFailed", event.process_id, event.timestamp, message, details)

    def _check_recovered(self, process_id: str, pid: int, uptime: float) -> None:
        self._recovery.pop(process_id, None)
        state = self._state(process_id)
        if state is None or state.status is not Status.RUNNING or state.pid != pid:
            return
        self._troubled.discard(process_id)
        message = f"{process_id} recovered: running again for {uptime:g}s (pid {pid})"
        details = {"pid": pid, "restartCount": state.restart_count}
        self._notify("recovered", process_id, time.time(), message, details)

    def _cancel_recovery(self, process_id: str) -> None:
        handle = self._recovery.pop(process_id, None)
        if handle is not None:
            handle.cancel()

    def _on_exit(self, event: ProcessExited) -> None:
        process_id = event.process_id
        state = self._state(process_id)
        if state is None:
            return
        if event.expected:
            reason = state.exits[-1].reason if state.exits else ""
            if _MEMORY_REASON in reason:
                message = f"{process_id} restarted: {reason}"
                details = {"reason": reason, "pid": event.pid}
                self._notify("memoryRestart", process_id, event.timestamp, message, details)
            return
        exits = self._exits.setdefault(process_id, collections.deque(maxlen=1000))
        exits.append(event.timestamp)
        for target in self._targets_of(state.config.notify):
            if "restartStorm" not in target.events:
                continue
            recent = sum(1 for when in exits if when > event.timestamp - target.storm_window)
            key = (process_id, target)
            if recent < target.storm_restarts:
                self._storming.discard(key)  # calm again: the next storm is told
            elif key not in self._storming:
                self._storming.add(key)
                window = f"{target.storm_window:g}s"
                message = f"{process_id} is in a restart storm: {recent} unexpected exits within {window}"
                details = {
                    "exits": recent,
                    "window": target.storm_window,
                    "restartCount": state.restart_count,
                }
                self._queue(
                    Notification("restartStorm", process_id, event.timestamp, message, details), target
                )

    def _targets_of(self, own: Iterable[NotifyTarget]) -> list[NotifyTarget]:
        return list(dict.fromkeys((*self.targets, *own)))  # a target in both places is told once

    def _notify(
        self, event: str, process_id: str, timestamp: float, message: str, details: Mapping[str, Any]
    ) -> None:
        state = self._state(process_id)
        own = state.config.notify if state is not None else ()
        notification = Notification(event, process_id, timestamp, message, details)
        for target in self._targets_of(own):
            if event in target.events:
                self._queue(notification, target)

    def _queue(self, notification: Notification, target: NotifyTarget) -> None:
        if len(self._pending) >= self.options.max_pending:
            self._pending.popleft()
            self._dropped()
        self._pending.append((notification, target))
        self._wake.set()

    def _dropped(self) -> None:
        self.stats.dropped += 1
        if self.stats.dropped == 1 or self.stats.dropped % 100 == 0:
            logger.warning(
                "notifications are coming faster than they can be sent: %d dropped", self.stats.dropped
            )

    # ---- delivery ----------------------------------------------------------------------------------

    def _hand_out(self, batch: Iterable[tuple[Notification, NotifyTarget]]) -> None:
        """Puts each notification in its target's lane and starts the lanes that are idle."""
        assert self._tasks is not None, "run() runs"
        for notification, target in batch:
            lane = self._lanes.setdefault(target, _Lane())
            if len(lane.queue) >= self.options.max_pending:  # a dead target drops, never piles up
                lane.queue.popleft()
                self._dropped()
            lane.queue.append(notification)
        for target, lane in self._lanes.items():
            if lane.queue and lane.task is None:
                lane.task = self._tasks.create_task(
                    self._drain(target, lane), name=f"notify {target.describe()}"
                )
        self._progress.set()

    async def _drain(self, target: NotifyTarget, lane: _Lane) -> None:
        """A lane's task: delivers what its target has waiting, together, until nothing is left."""
        try:
            while lane.queue:
                notifications = list(lane.queue)
                lane.queue.clear()
                await self._deliver(target, notifications)
        finally:
            lane.task = None
            if not lane.queue and self._lanes.get(target) is lane:
                del self._lanes[target]  # a target removed from the config leaves nothing behind
            self._progress.set()

    async def _deliver(self, target: NotifyTarget, notifications: list[Notification]) -> None:
        name = target.describe()
        delay = self.options.first_retry
        for attempt in range(1, self.options.attempts + 1):
            try:
                async with asyncio.timeout(self.options.timeout):
                    await self._send(target, notifications)
            except Exception as exc:  # a delivery never ends the notifier
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if attempt == self.options.attempts:
                    self.stats.failed[name] += 1
                    logger.error(
                        "could not notify %s after %d tries (%s); dropped: %s",
                        name,
                        attempt,
                        problem,
                        "; ".join(n.message for n in notifications),
                    )
                    return
                self.stats.retried[name] += 1
                logger.warning("could not notify %s (%s); trying again in %gs", name, problem, delay)
                await asyncio.sleep(delay)
                delay *= 2
            else:
                self.stats.sent[name] += 1
                logger.info(
                    "notified %s: %s", name, ", ".join(f"{n.process_id} {n.event}" for n in notifications)
                )
                return

    async def _send(self, target: NotifyTarget, notifications: list[Notification]) -> None:
        if target.kind == "webhook":
            await self._post(target, notifications)
        elif target.kind == "command":
            await self._run_command(target, notifications)
        else:
            if self.email is None:
                raise RuntimeError("email needs PocketBase mode (processman runs without a PocketBase)")
            await self.email(target.target, self.subject(notifications), self.text(notifications))

    def body(self, notifications: list[Notification]) -> dict[str, Any]:
        """The JSON of a webhook (format json) and of a command's stdin."""
        return {"source": "processman", "host": self._host, "events": [n.to_json() for n in notifications]}

    def subject(self, notifications: list[Notification]) -> str:
        if len(notifications) == 1:
            return f"[processman] {notifications[0].message}"[:200]
        return f"[processman] {len(notifications)} events on {self._host}"

    def text(self, notifications: list[Notification]) -> str:
        lines = [f"processman on {self._host}:"]
        for n in notifications:
            lines.append(f"- {format_timestamp(n.timestamp)} {n.message}")
            last = n.details.get("lastLines")
            if last:
                lines.extend(f"    {line}" for line in list(last)[-5:])
        return "\n".join(lines)

    async def _post(self, target: NotifyTarget, notifications: list[Notification]) -> None:
        import httpx  # only when a webhook is used

        if target.format == "slack":
            payload: dict[str, Any] = {"text": self.text(notifications)[:SLACK_LIMIT]}
        elif target.format == "discord":
            payload = {"content": self.text(notifications)[:DISCORD_LIMIT]}
        else:
            payload = self.body(notifications)
        async with httpx.AsyncClient(timeout=self.options.timeout, follow_redirects=False) as client:
            response = await client.post(target.target, json=payload)
        if response.status_code >= 300:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")

    async def _run_command(self, target: NotifyTarget, notifications: list[Notification]) -> None:
        data = json.dumps(self.body(notifications)).encode()
        process = await asyncio.create_subprocess_exec(
            *target.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, stderr = await process.communicate(data)
        finally:
            if process.returncode is None:  # timed out or cancelled: no command is left behind
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process.returncode != 0:
            tail = stderr.decode("utf-8", "replace").strip()[-200:]
            raise RuntimeError(f"exit code {process.returncode}" + (f": {tail}" if tail else ""))
