"""The control API: HTTP routes over a ``ProcessManager``, their authentication, live streams, and the
uvicorn service that serves them during ``processman serve``."""

from processman.api import _uvicorn  # noqa: F401  # first: uvicorn without watchfiles
from processman.api.app import ControlAPI, create_app
from processman.api.auth import (
    AdminToken,
    AnyOf,
    Authenticator,
    PocketBaseSuperuser,
    SharedSecret,
    Verdict,
)
from processman.api.server import Address, ApiService, parse_address

__all__ = [
    "Address",
    "AdminToken",
    "AnyOf",
    "ApiService",
    "Authenticator",
    "ControlAPI",
    "PocketBaseSuperuser",
    "SharedSecret",
    "Verdict",
    "create_app",
    "parse_address",
]
