"""uvicorn's HTTP/1.1 protocol with three limits it lacks: a deadline for receiving a whole request, a
ceiling on open connections (past it, the connection that has waited longest for its request is
closed to make room; one at work, a live stream, never is), and a request line of at most 16 KiB.

uvicorn waits forever for a request that never finishes arriving, so slow-loris clients (a header byte
now and then) could hold connections, and the manager's file descriptors, for as long as they like;
the manager needs those descriptors to start children. Once a request has arrived its response may
take as long as it needs: live streams stay open.

h11 refuses a request head over 16 KiB only while it is still arriving; one that arrives whole in a
single read (up to 256 KiB) passed. The connection's parser here refuses a long request line however it
arrives, and uvicorn answers that with its plain 400.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0  # seconds from a request's first byte (or the connection) to its last byte
MAX_CONNECTIONS = 1000
MAX_REQUEST_LINE = 16 * 1024  # bytes of "METHOD TARGET HTTP/1.1", as docs/api.md says
MAX_HEAD = 16 * 1024  # a head still arriving (h11's own default, stated here as a limit we rely on)


def request_line_length(request: h11.Request) -> int:
    return len(request.method) + len(request.target) + len(b"HTTP/") + len(request.http_version) + 2


class LimitedConnection(h11.Connection):
    """h11's server connection that also refuses a request whose line is over ``MAX_REQUEST_LINE``."""

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        event = super().next_event()
        if isinstance(event, h11.Request) and request_line_length(event) > MAX_REQUEST_LINE:
            raise h11.RemoteProtocolError("request line too long", error_status_hint=414)
        return event


class GuardedH11Protocol(H11Protocol):
    request_timeout = REQUEST_TIMEOUT
    max_connections = MAX_CONNECTIONS
    _deadline: asyncio.TimerHandle | None = None
    _since = 0.0  # when the request now awaited began to arrive (or the connection opened)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = LimitedConnection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()
        if len(self.connections) > self.max_connections:
            # Make room by closing the connection that has waited longest for its request (the
            # slow-loris kind); a connection at work (a live stream) is never closed for a newcomer.
            waiting = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and c._waiting]
            oldest = min(waiting, key=lambda c: c._since, default=None)
            if oldest is None or oldest is self:
                logger.warning("%d connections at work; refusing a new one", len(self.connections) - 1)
                transport.close()
            else:
                oldest.transport.close()

    @property
    def _waiting(self) -> bool:
        """Waiting for a request's head or body (not serving one), and not closed yet."""
        idle = self.cycle is None or self.cycle.response_complete
        state = self.conn.their_state
        return not self.transport.is_closing() and (state is h11.SEND_BODY or (state is h11.IDLE and idle))

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            self._arm()  # a request is arriving: keep the deadline of its first byte
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._since = self.loop.time()
            self._deadline = self.loop.call_later(self.request_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        # Still waiting for the head or the body of a request: whoever sends it is too slow.
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(request_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class with these limits (uvicorn takes a class, not an instance)."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"request_timeout": request_timeout, "max_connections": max_connections},
    )
