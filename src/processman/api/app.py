"""The control API as an ASGI application, alone or mounted into a host's application.

Standalone (what ``processman serve`` runs)::

    app = create_app(manager, AdminToken(token))

Embedded in a Starlette or FastAPI app that runs the manager in its lifespan::

    api = ControlAPI(manager, AdminToken(token))
    app = Starlette(routes=[api.mount("/api/pm"), ...], lifespan=...)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from processman.api.auth import Authenticator
from processman.api.errors import EXCEPTION_HANDLERS
from processman.api.middleware import MAX_BODY, BodyLimit, FrameGuard, HostCheck, RequireAuth
from processman.api.routes import Endpoints
from processman.api.streams import KEEPALIVE, StreamHub
from processman.api.wire import containment_to_json
from processman.engine.manager import ProcessManager

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "web" / "static"
PUBLIC_PATHS = ("/auth-info", "/openapi.json")


class ControlAPI:
    """The ``/api/pm`` routes (SPEC 8) with their auth, limits and error shape, as one ASGI app.

    Its routes are relative (``/list``, ``/{id}/start``): mount it at ``/api/pm``. Every route but
    ``/auth-info`` and ``/openapi.json`` needs a credential that ``authenticator`` allows.
    :meth:`close_streams` ends the live streams; call it when the host shuts down, or the HTTP
    server waits for their clients to leave.
    """

    def __init__(
        self,
        manager: ProcessManager,
        authenticator: Authenticator,
        *,
        max_body: int = MAX_BODY,
        keepalive: float = KEEPALIVE,
    ) -> None:
        self.manager = manager
        self.authenticator = authenticator
        self.streams = StreamHub()
        endpoints = Endpoints(manager, authenticator, self.streams, keepalive)
        self.app = Starlette(
            routes=endpoints.routes(),
            middleware=[
                Middleware(BodyLimit, max_bytes=max_body),
                Middleware(RequireAuth, authenticator=authenticator, public=PUBLIC_PATHS),
            ],
            exception_handlers=EXCEPTION_HANDLERS,
        )

    def __repr__(self) -> str:
        return f"<ControlAPI {self.authenticator!r} streams={len(self.streams)}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    @property
    def routes(self) -> list[BaseRoute]:
        return self.app.routes

    def mount(self, path: str = "/api/pm") -> Mount:
        return Mount(path, app=self)

    def close_streams(self) -> None:
        self.streams.close()


def health(manager: ProcessManager) -> Callable[[Request], Awaitable[Response]]:
    async def answer(request: Request) -> Response:
        data = containment_to_json(manager)
        return JSONResponse({"message": "API is healthy.", "code": 200, "data": data})

    return answer


def create_app(
    manager: ProcessManager,
    authenticator: Authenticator,
    *,
    dashboard: bool = True,
    max_body: int = MAX_BODY,
    keepalive: float = KEEPALIVE,
    allowed_hosts: Iterable[str] = (),
) -> Starlette:
    """The whole HTTP surface of ``processman serve``: ``/api/pm/*`` (the control API),
    ``/api/health``, and the dashboard at ``/`` (static files, open without a credential: they hold no
    secret; the API they call does). ``app.state.control_api`` is the mounted :class:`ControlAPI`.

    No response may be framed by another site, and a request must name an IP address, ``localhost`` or
    one of ``allowed_hosts`` (``"*"``: any) as its ``Host`` (see ``middleware.HostCheck``)."""
    api = ControlAPI(manager, authenticator, max_body=max_body, keepalive=keepalive)
    routes: list[BaseRoute] = [Route("/api/health", health(manager), methods=["GET"]), api.mount("/api/pm")]
    if dashboard and DASHBOARD_DIR.is_dir():
        routes.append(Mount("/", app=StaticFiles(directory=DASHBOARD_DIR, html=True), name="dashboard"))
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(FrameGuard),
            Middleware(HostCheck, allowed=allowed_hosts),
            Middleware(BodyLimit, max_bytes=max_body),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.control_api = api
    return app
