"""The HTTP API as a runner ``Service`` of ``processman serve``: its port is bound early (a busy one fails
before any process starts), and uvicorn and Starlette load only when it runs, once the processes have
started (about 40 ms of imports the processes no longer wait for)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from processman.api.address import Address, listen
from processman.api.auth import Authenticator
from processman.api.streams import KEEPALIVE

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from processman.engine.manager import ProcessManager

REQUEST_TIMEOUT = 10.0  # seconds from a request's first byte (or the connection) to its last byte
MAX_CONNECTIONS = 1000


class ApiService:
    """Serves :func:`create_app` on ``address`` while ``processman serve`` runs.

    ``bind()`` may be called early (to fail before any process starts, or to learn the port chosen for
    port 0); ``run`` binds otherwise. ``token_hint`` says where the token is, for the startup line.
    Requests must name this address, ``localhost``, an IP address or one of ``allowed_hosts`` as their
    host (see ``middleware.HostCheck``).
    """

    name = "http-api"

    def __init__(
        self,
        address: Address,
        authenticator: Authenticator,
        *,
        dashboard: bool = True,
        token_hint: str = "",
        shutdown_timeout: int = 3,
        keepalive: float = KEEPALIVE,
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.address = address
        self.allowed_hosts = tuple(allowed_hosts)
        self.authenticator = authenticator
        self.dashboard = dashboard
        self.token_hint = token_hint
        self.shutdown_timeout = shutdown_timeout
        self.keepalive = keepalive
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self._socket: socket.socket | None = None
        self.app: Starlette | None = None  # the application, while it runs

    def __repr__(self) -> str:
        return f"<ApiService {self.url} {self.authenticator!r}>"

    @property
    def port(self) -> int:
        """The port listened on (the chosen one, once bound, when asked for port 0)."""
        return self._socket.getsockname()[1] if self._socket is not None else self.address.port

    @property
    def url(self) -> str:
        return Address(self.address.host, self.port).url

    def host_names(self) -> tuple[str, ...]:
        """The names requests may give as their host, besides localhost and IP addresses."""
        return (self.address.host, *self.allowed_hosts)

    def bind(self) -> socket.socket:
        """Open the listening socket now (once). Raises OSError (address in use, not permitted)."""
        if self._socket is None:
            self._socket = listen(self.address)
        return self._socket

    async def run(
        self, manager: ProcessManager, ready: Callable[[], None], request_stop: Callable[[str], None]
    ) -> None:
        from processman.api.server import serve

        try:
            await serve(self, manager, ready)
        finally:
            if self._socket is not None:  # uvicorn closes it too, unless it failed before listening
                self._socket.close()
                self._socket = None
            await self.authenticator.aclose()
