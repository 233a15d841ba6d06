"""The control API: HTTP routes over a ``ProcessManager``, their authentication, live streams, and the
uvicorn service that serves them during ``processman serve``.

Its names load on first use: ``serve`` binds the API's port before its processes start and imports
uvicorn and Starlette only after (see :mod:`processman.api.service`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processman.api.address import Address as Address
    from processman.api.address import parse_address as parse_address
    from processman.api.app import ControlAPI as ControlAPI
    from processman.api.app import create_app as create_app
    from processman.api.auth import AdminToken as AdminToken
    from processman.api.auth import AnyOf as AnyOf
    from processman.api.auth import Authenticator as Authenticator
    from processman.api.auth import PocketBaseSuperuser as PocketBaseSuperuser
    from processman.api.auth import SharedSecret as SharedSecret
    from processman.api.auth import Verdict as Verdict
    from processman.api.service import ApiService as ApiService

_WHERE = {
    "Address": "address",
    "parse_address": "address",
    "ControlAPI": "app",
    "create_app": "app",
    "AdminToken": "auth",
    "AnyOf": "auth",
    "Authenticator": "auth",
    "PocketBaseSuperuser": "auth",
    "SharedSecret": "auth",
    "Verdict": "auth",
    "ApiService": "service",
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
