"""ASGI middleware of the control API: a request body limit and the credential check."""

from __future__ import annotations

from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processman.api.auth import Authenticator, Verdict
from processman.api.errors import error_response

MAX_BODY = 64 * 1024

_REFUSALS = {
    Verdict.UNAUTHORIZED: (401, None),
    Verdict.FORBIDDEN: (403, None),
    Verdict.UNAVAILABLE: (503, "The token could not be verified: PocketBase is unreachable."),
}


def route_path(scope: Scope) -> str:
    """The path below the point where the app is mounted (``/list`` for ``/api/pm/list``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class BodyLimit:
    """Answers 413 to a request body over ``max_bytes``, before any route sees it.

    No route takes a large body, so the body is read here (at most ``max_bytes``) and handed on:
    a chunked upload without a Content-Length is cut off just as early as a declared one."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await error_response(400, "Invalid Content-Length header.")(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"Request body too large: the limit is {self.max_bytes} bytes."
        await error_response(413, message)(scope, receive, send)


class RequireAuth:
    """Lets a request through only when the authenticator allows it; ``public`` paths are open."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, public: Collection[str] = ()) -> None:
        self.app = app
        self.authenticator = authenticator
        self.public = frozenset(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in self.public:
            await self.app(scope, receive, send)
            return
        verdict = await self.authenticator.authenticate(Headers(scope=scope))
        if verdict is Verdict.ALLOWED:
            await self.app(scope, receive, send)
            return
        status, message = _REFUSALS[verdict]
        response = error_response(status, message)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="processman"'
        await response(scope, receive, send)
