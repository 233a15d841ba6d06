"""The supervisor's side of the PocketBase hooks: a service that runs beside the manager.

It registers the API's port with PocketBase (``POST /api/pm/register``), ships log batches to
``/api/pm/ingest`` through the :class:`LogMirror`, pushes state changes to ``/api/pm/broadcast`` for the
realtime topic ``pm/events``, and ends the serve when PocketBase goes away. Every call carries the shared
secret the hook started the supervisor with.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import httpx

from processman.api.wire import exit_event_to_json, run_event_to_json, state_to_json, status_event_to_json
from processman.engine.events import (
    Event,
    LogLines,
    ProcessExited,
    ProcessRemoved,
    RunRecorded,
    StatusChanged,
)
from processman.engine.manager import ProcessManager
from processman.environment import PocketBaseInfo
from processman.errors import ProcessNotFound
from processman.logs import format_timestamp
from processman.pocketbase.mirror import LogMirror
from processman.pocketbase.parent import wait_for_parent_exit

logger = logging.getLogger(__name__)

EVENTS_TOPIC = "pm/events"
REGISTER_RETRY = 0.05  # PocketBase binds its port as it starts the hook: it answers within moments
REGISTER_REFUSED_RETRY = 1.0
MAX_EVENTS = 1000
EVENTS_PER_REQUEST = 100


def event_message(
    event: StatusChanged | ProcessExited | RunRecorded, manager: ProcessManager
) -> dict[str, Any]:
    """The data of a ``pm/events`` realtime message: the event as ``/api/pm/events`` sends it, and with a
    status change the process's whole state."""
    if isinstance(event, ProcessExited):
        return exit_event_to_json(event)
    if isinstance(event, RunRecorded):
        return run_event_to_json(event)
    data = status_event_to_json(event)
    with contextlib.suppress(ProcessNotFound):  # removed meanwhile: the event still goes out
        data["state"] = state_to_json(manager.state(event.process_id))
    return data


class PocketBaseBridge:
    """Runs beside the manager during ``processman pocketbase supervise`` (see ``runner.Service``).

    ``api_port`` is the port the HTTP API is bound to (bind it before the runner starts).
    """

    name = "pocketbase bridge"

    def __init__(
        self,
        pocketbase: PocketBaseInfo,
        secret: str,
        api_port: int,
        mirror: LogMirror,
        *,
        watch_parent: bool = True,
    ) -> None:
        self.pocketbase = pocketbase
        self.secret = secret
        self.api_port = api_port
        self.mirror = mirror
        self.watch_parent = watch_parent
        self.registered = False
        self.events_sent = 0
        self.events_dropped = 0
        self._events: collections.deque[dict[str, Any]] = collections.deque()
        self._events_ready = asyncio.Event()
        self._manager: ProcessManager | None = None
        self._failing = False
        self._stopping = False

    def __repr__(self) -> str:
        state = "registered" if self.registered else "not registered"
        return f"<PocketBaseBridge {self.pocketbase.url} {state}>"

    def stats(self) -> dict[str, Any]:
        """What reached PocketBase and what did not. Sent with every delivery; PocketBase shows the last
        one at ``GET /api/pm/bridge``."""
        return {
            "logs": {**self.mirror.stats(), "linesPerSecond": self.mirror.limits.lines_per_second},
            "events": {"sent": self.events_sent, "dropped": self.events_dropped},
            "updated": format_timestamp(time.time()),
        }

    async def run(
        self, manager: ProcessManager, ready: Callable[[], None], request_stop: Callable[[str], None]
    ) -> None:
        self._manager = manager
        # The sidecars started before this service: pass on what they wrote so far, then everything
        # new. Nothing awaits in between, so no line is missed or repeated.
        for process_id in manager.ids:
            self.mirror.add_history(manager.logs_since(process_id, 0))
        remove_listener = manager.events.add_listener(self._on_event)
        self.mirror.bind(asyncio.get_running_loop())
        headers = {"X-PM-Secret": self.secret}
        try:
            async with (
                httpx.AsyncClient(base_url=self.pocketbase.url, headers=headers, timeout=10.0) as client,
                asyncio.TaskGroup() as tasks,
            ):
                if self.watch_parent:
                    tasks.create_task(self._watch_parent(request_stop), name="watch PocketBase")
                await self._register(client, self.api_port)
                ready()
                tasks.create_task(self._ship_logs(client), name="ship logs to PocketBase")
                tasks.create_task(self._ship_events(client), name="push events to PocketBase")
        finally:
            remove_listener()

    # ---- events from the manager -----------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        # Called inside the engine's publish: it must return at once and never raise.
        try:
            if isinstance(event, LogLines):
                self.mirror.add_output(event)
                return
            if self._manager is None or isinstance(event, ProcessRemoved):
                return
            if len(self._events) >= MAX_EVENTS:
                self._events.popleft()
                self.events_dropped += 1
            self._events.append(event_message(event, self._manager))
            self._events_ready.set()
        except Exception:
            logger.exception("cannot pass an event to PocketBase: %r", event)

    # ---- the tasks -------------------------------------------------------------------------------

    async def _watch_parent(self, request_stop: Callable[[str], None]) -> None:
        reason = await wait_for_parent_exit()
        self._stopping = True  # PocketBase's server is down already: deliveries fail from now on
        request_stop(reason)

    async def _register(self, client: httpx.AsyncClient, port: int) -> None:
        body = {"port": port, "pid": os.getpid()}
        started = time.monotonic()
        warned = False
        while True:
            try:
                response = await client.post("/api/pm/register", json=body)
            except httpx.HTTPError as exc:
                if not warned and time.monotonic() - started > 5:
                    logger.warning(
                        "PocketBase at %s does not answer yet (%s); still trying", self.pocketbase.url, exc
                    )
                    warned = True
                await asyncio.sleep(REGISTER_RETRY)
                continue
            if response.status_code == 204:
                self.registered = True
                logger.info(
                    "registered with PocketBase at %s (API on 127.0.0.1:%d)", self.pocketbase.url, port
                )
                return
            if not warned:
                logger.error(
                    "PocketBase at %s refused the registration (HTTP %d: %s); are the hooks installed "
                    "(processman pocketbase install) and is this the PocketBase that started processman?",
                    self.pocketbase.url,
                    response.status_code,
                    response.text[:200],
                )
                warned = True
            await asyncio.sleep(REGISTER_REFUSED_RETRY)

    async def _ship_logs(self, client: httpx.AsyncClient) -> None:
        interval = self.mirror.limits.interval
        while True:
            batch = await self.mirror.next_batch()
            sent_at = time.monotonic()
            if not await self._post(client, "/api/pm/ingest", {"lines": batch, "stats": self.stats()}):
                self.mirror.lost(batch)
            # The pace between batches is the rate limit.
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - sent_at)))

    async def _ship_events(self, client: httpx.AsyncClient) -> None:
        while True:
            await self._events_ready.wait()
            self._events_ready.clear()
            while self._events:
                count = min(len(self._events), EVENTS_PER_REQUEST)
                messages = [{"topic": EVENTS_TOPIC, "data": self._events.popleft()} for _ in range(count)]
                body = {"messages": messages, "stats": self.stats()}
                if await self._post(client, "/api/pm/broadcast", body):
                    self.events_sent += count
                else:
                    self.events_dropped += count

    async def send_email(self, to: str, subject: str, text: str) -> None:
        """An email notification, sent by PocketBase with its own mail settings (Settings > Mail).
        Raises when PocketBase cannot send it (no SMTP server configured, the server refused)."""
        headers = {"X-PM-Secret": self.secret}
        async with httpx.AsyncClient(base_url=self.pocketbase.url, headers=headers, timeout=30.0) as client:
            response = await client.post(
                "/api/pm/notify-email", json={"to": to, "subject": subject, "text": text}
            )
        if response.status_code >= 300:
            raise RuntimeError(
                f"PocketBase could not send the email (HTTP {response.status_code}): {response.text[:300]}"
            )

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> bool:
        """One delivery; failures are logged once per outage (PocketBase stops its server before it
        stops processman, so the last messages of a shutdown cannot be delivered)."""
        try:
            response = await client.post(path, json=body)
        except httpx.HTTPError as exc:
            self._failed(f"{path}: {exc or type(exc).__name__}")
            return False
        if response.status_code >= 300:
            self._failed(f"{path}: HTTP {response.status_code}: {response.text[:200]}")
            return False
        if self._failing:
            logger.info("PocketBase answers again")
            self._failing = False
        return True

    def _failed(self, what: str) -> None:
        if self._stopping:
            logger.debug("not delivered while PocketBase stops: %s", what)
        elif not self._failing:
            logger.warning(
                "cannot reach PocketBase (%s); what it should show is dropped until it answers again (the "
                "complete output stays in processman's log files)",
                what,
            )
            self._failing = True
