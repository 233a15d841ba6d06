"""Error responses in PocketBase's shape: ``{"status": 404, "message": "Process not found.", "data": {}}``.

Every error the API sends goes through :func:`error_response`, so clients (the dashboard, the CLI, the
PocketBase hooks) parse one shape whatever went wrong: routing, auth, limits or the manager.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from processman.errors import (
    ManagerNotRunning,
    NotRunnable,
    ProcessAlreadyRunning,
    ProcessNotFound,
    ProcessNotRunning,
    SignalRefused,
)

# The messages PocketBase itself uses for the same situations, so a client sees one vocabulary.
MESSAGES = {
    400: "Something went wrong while processing your request.",
    401: "The request requires valid record authorization token.",
    403: "The authorized record is not allowed to perform this action.",
    404: "The requested resource wasn't found.",
    405: "Method not allowed.",
    413: "Request entity too large.",
    421: "Misdirected request.",
    500: "Something went wrong while processing your request.",
    503: "Service unavailable.",
}


class ApiError(Exception):
    """Raised by routes; becomes an error response. ``data`` carries field errors, as in PocketBase:
    ``{"lines": {"code": "validation_invalid_lines", "message": "..."}}``."""

    def __init__(self, status: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data or {}


def error_response(status: int, message: str | None = None, data: dict[str, Any] | None = None) -> Response:
    text = message or MESSAGES.get(status, "Request failed.")
    body = {"status": status, "message": text, "data": data or {}}
    return JSONResponse(body, status_code=status)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.data)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no route: 404, wrong method: 405) in the same shape."""
    assert isinstance(exc, HTTPException)
    response = error_response(exc.status_code, MESSAGES.get(exc.status_code, exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def handle_not_found(request: Request, exc: Exception) -> Response:
    """Ids are never echoed back: the message is the same whatever was asked for."""
    return error_response(404, "Process not found.")


async def handle_already_running(request: Request, exc: Exception) -> Response:
    # 400, as SPEC 8 and the clients that parse it say.
    return error_response(400, "Process is already running.")


async def handle_signal_refused(request: Request, exc: Exception) -> Response:
    return error_response(
        400, str(exc), {"signal": {"code": "validation_invalid_value", "message": str(exc)}}
    )


async def handle_not_running(request: Request, exc: Exception) -> Response:
    return error_response(400, "Process is not running.")


async def handle_not_runnable(request: Request, exc: Exception) -> Response:
    """``run`` of a service that is kept alive: it has no single run; 409 says why."""
    return error_response(409, str(exc))


async def handle_manager_not_running(request: Request, exc: Exception) -> Response:
    """A start or run while the manager shuts down (or before it runs): try again later."""
    return error_response(503, "The process manager is shutting down or not running.")


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    return error_response(500)


EXCEPTION_HANDLERS = {
    ApiError: handle_api_error,
    HTTPException: handle_http_exception,
    ProcessNotFound: handle_not_found,
    ProcessAlreadyRunning: handle_already_running,
    SignalRefused: handle_signal_refused,
    ProcessNotRunning: handle_not_running,
    NotRunnable: handle_not_runnable,
    ManagerNotRunning: handle_manager_not_running,
    Exception: handle_unexpected,
}
