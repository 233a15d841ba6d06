"""ASGI middleware of the control API: a request body limit and the credential check; and of the
standalone server: no framing by other sites, and only the host names it answers to (DNS rebinding)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection, Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processman.api.auth import Authenticator, Verdict
from processman.api.errors import error_response

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
FRAME_ANCESTORS = "frame-ancestors 'none'"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

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


class FrameGuard:
    """No page of the server may be shown in another site's frame (clickjacking): every response gets
    ``X-Frame-Options: DENY`` and ``frame-ancestors 'none'`` in its Content-Security-Policy, added to a
    policy the response already has."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _no_framing(list(message.get("headers", [])))
            await send(message)

        await self.app(scope, receive, guarded)


def _no_framing(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    kept = [(name, value) for name, value in headers if name.lower() != b"x-frame-options"]
    policies = [value.decode("latin-1") for name, value in kept if name.lower() == b"content-security-policy"]
    if not any("frame-ancestors" in policy for policy in policies):
        # Each policy sent is enforced; extending the first keeps them all and adds the rule once.
        kept = [(name, value) for name, value in kept if name.lower() != b"content-security-policy"]
        policies = (
            [policies[0].rstrip("; ") + "; " + FRAME_ANCESTORS, *policies[1:]]
            if policies
            else [FRAME_ANCESTORS]
        )
        kept += [(b"content-security-policy", policy.encode("latin-1")) for policy in policies]
    return [*kept, (b"x-frame-options", b"DENY")]


def host_name(header: str) -> str:
    """The name in a Host header, lower case, without port, brackets or final dot.

    >>> host_name("LocalHost:8091"), host_name("[::1]:80"), host_name("pm.example.org.")
    ('localhost', '::1', 'pm.example.org')
    """
    text = header.strip().lower()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    else:
        name, sep, port = text.rpartition(":")
        if sep and port.isdigit() and ":" not in name:
            text = name
    return text.rstrip(".")


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Answers 421 to a request whose ``Host`` names a host this server does not answer to.

    A web page can point its own name at 127.0.0.1 (DNS rebinding) and then reach the server as if it
    were the same site; its requests still carry that name. Allowed: an IP address (a rebinding page
    cannot name one), ``localhost``, and the names in ``allowed`` (``*`` allows any). The port is not
    checked: it cannot tell a rebinding page apart, and a forwarded port (ssh -L, docker -p) changes it.
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str] = ()) -> None:
        self.app = app
        names = {host_name(name) for name in allowed if name.strip()}
        self.any_host = "*" in names
        self.names = LOOPBACK_NAMES | names

    def allows(self, header: str) -> bool:
        name = host_name(header)
        return self.any_host or name in self.names or _is_address(name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if host is None or self.allows(host):  # no Host at all: HTTP/1.0, never a browser
            await self.app(scope, receive, send)
            return
        shown = host if len(host) <= 100 else host[:100] + "..."
        logger.debug("refused a request for host %r", shown)
        message = (
            f"Host {shown!r} is not allowed: this server answers to its IP addresses, localhost and the "
            "names given with --allowed-host."
        )
        await error_response(421, message)(scope, receive, send)
