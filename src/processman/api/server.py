"""The HTTP server of ``processman serve``: uvicorn running the API beside the manager, for the
:class:`~processman.api.service.ApiService` (which imports this module only when it runs).

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
from collections.abc import Callable, Generator
from email.utils import formatdate

from processman.api import _uvicorn  # noqa: F401  # first: uvicorn without watchfiles

# isort: split
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from processman.api.app import create_app
from processman.api.protocol import guarded_protocol
from processman.api.service import ApiService
from processman.engine.manager import ProcessManager
from processman.engine.resources import ResourceSampler

logger = logging.getLogger("processman")


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


async def serve(service: ApiService, manager: ProcessManager, ready: Callable[[], None]) -> None:
    """Serve :func:`create_app` on the service's socket until cancelled."""
    sock = service.bind()
    service.app = app = create_app(
        manager,
        service.authenticator,
        dashboard=service.dashboard,
        keepalive=service.keepalive,
        allowed_hosts=service.host_names(),
    )
    config = uvicorn.Config(
        per_request(app, manager.resources, lambda: server.renew_date()),
        lifespan="off",  # the runner runs the manager
        log_config=None,  # only the CLI configures logging
        # Our own line says where the API listens; uvicorn's start and stop lines only with -v.
        log_level=logging.INFO if logger.isEnabledFor(logging.DEBUG) else logging.WARNING,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=service.shutdown_timeout,
        # A deadline for each request to arrive, and a ceiling on connections (slow-loris).
        http=guarded_protocol(service.request_timeout, service.max_connections),
    )

    def started() -> None:
        hint = f" (token in {service.token_hint})" if service.token_hint else ""
        logger.info("API listening on %s%s", service.url, hint)
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
