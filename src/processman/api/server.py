"""The HTTP server of ``processman serve``: uvicorn running the API beside the manager, as a runner
``Service``.

Signals stay with processman's runner: uvicorn's own handlers are never installed, so Ctrl+C goes
through the runner's stop ladder, and the server is shut down by cancelling the service after every
process has stopped. Live streams are ended first, so open ones never hold the shutdown up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from email.utils import formatdate

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from processman.api.app import create_app
from processman.api.auth import Authenticator
from processman.api.protocol import MAX_CONNECTIONS, REQUEST_TIMEOUT, guarded_protocol
from processman.api.streams import KEEPALIVE
from processman.engine.manager import ProcessManager
from processman.engine.resources import ResourceSampler

logger = logging.getLogger("processman")

DEFAULT_ADDRESS = "127.0.0.1:8091"


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self}"


def parse_address(text: str) -> Address:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1). Port 0 picks a free one.

    >>> parse_address("0.0.0.0:9000"), parse_address("8091"), parse_address("[::1]:80")
    (Address(host='0.0.0.0', port=9000), Address(host='127.0.0.1', port=8091), Address(host='::1', port=80))
    """
    expected = f"expected HOST:PORT such as {DEFAULT_ADDRESS}, got {text!r}"
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = "", text.strip()
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{expected}: the port must be a number from 0 to 65535")
    if any(c.isspace() or c in "[]/" for c in host):
        raise ValueError(expected)
    return Address(host, int(port))


def listen(address: Address) -> socket.socket:
    """A listening TCP socket. Its protocol must say TCP: asyncio turns Nagle's algorithm off
    (TCP_NODELAY) only on sockets that do, and with Nagle on, a response written in two parts (head,
    then body) waits for the client's delayed ACK: 40 ms added to every request."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (the runner owns signals) that tells when it listens, and
    that sleeps while idle: uvicorn's own main loop wakes ten times a second to look at
    ``should_exit`` and renew the Date header; this one waits for ``should_exit``, and the header is
    renewed by the requests themselves (:meth:`renew_date`)."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        self._exit = asyncio.Event()
        super().__init__(config)
        self._on_started = on_started
        self._date_second = -1

    def renew_date(self) -> None:
        """Make the Date header of the responses about to be sent current (to the second)."""
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            date = [(b"date", formatdate(second, usegmt=True).encode())] if self.config.date_header else []
            # In place: the request being handled already holds this list.
            self.server_state.default_headers[:] = [*date, *self.config.encoded_headers]

    @property  # an attribute in uvicorn: as a property, setting it wakes the main loop
    def should_exit(self) -> bool:
        return self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit.set()
        else:
            self._exit.clear()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.renew_date()
        await super().startup(sockets)
        if self.started:
            self._on_started()

    async def main_loop(self) -> None:
        await self._exit.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, without its pause of 0.1 s for open connections when there is none: a
        tenth of a second of every stop, which ``docker stop`` and ``systemctl stop`` wait for."""
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)
            return
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()


def per_request(app: ASGIApp, sampler: ResourceSampler, renew_date: Callable[[], None]) -> ASGIApp:
    """Before each request: the Date header is renewed, and the request counts as a reader of the
    resource figures (see ``ResourceSampler.on_demand``): after a while without one, it first waits
    for a fresh sample (a few milliseconds)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        renew_date()
        with sampler.reading():
            await sampler.fresh()
            await app(scope, receive, send)

    return wrapped


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
        sock = self.bind()
        self.app = app = create_app(
            manager,
            self.authenticator,
            dashboard=self.dashboard,
            keepalive=self.keepalive,
            allowed_hosts=self.host_names(),
        )
        config = uvicorn.Config(
            per_request(app, manager.resources, lambda: server.renew_date()),
            lifespan="off",  # the runner runs the manager
            log_config=None,  # only the CLI configures logging
            # Our own line says where the API listens; uvicorn's start and stop lines only with -v.
            log_level=logging.INFO if logger.isEnabledFor(logging.DEBUG) else logging.WARNING,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=self.shutdown_timeout,
            # A deadline for each request to arrive, and a ceiling on connections (slow-loris).
            http=guarded_protocol(self.request_timeout, self.max_connections),
        )

        def started() -> None:
            hint = f" (token in {self.token_hint})" if self.token_hint else ""
            logger.info("API listening on %s%s", self.url, hint)
            ready()

        server = _Server(config, started)
        # Every reader of the figures comes through here: sample at the full rate only while they read.
        on_demand, manager.resources.on_demand = manager.resources.on_demand, True
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            app.state.control_api.close_streams()
            server.should_exit = True
            with contextlib.suppress(Exception):
                await serving
            raise
        finally:
            manager.resources.on_demand = on_demand  # serve's runner may want it on without the API
            sock.close()  # uvicorn closes it too, unless it failed before listening
            self._socket = None
            await self.authenticator.aclose()
