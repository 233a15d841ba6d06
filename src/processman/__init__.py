"""processman: supervise the sidecar processes of a PocketBase application, or of any application.

The public names are imported on first use, so that ``import processman`` (and with it the command-line
client, which needs none of the engine) starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processman.config import ConfigProblem, LoadedConfig, Probe, ProcessConfig, load_config
    from processman.engine.events import LogLines, ProcessExited, StatusChanged, Subscription
    from processman.engine.manager import ManagerOptions, ProcessManager
    from processman.engine.process import ProcessState
    from processman.engine.states import Desired, Status
    from processman.environment import PocketBaseInfo
    from processman.errors import (
        ConfigError,
        DuplicateProcess,
        ProcessAlreadyRunning,
        ProcessmanError,
        ProcessNotFound,
    )
    from processman.logs import LogLine

__version__ = "0.1.0"

# The module each public name lives in.
_MODULES = {
    "ConfigError": "processman.errors",
    "ConfigProblem": "processman.config",
    "Desired": "processman.engine.states",
    "DuplicateProcess": "processman.errors",
    "LoadedConfig": "processman.config",
    "LogLine": "processman.logs",
    "LogLines": "processman.engine.events",
    "ManagerOptions": "processman.engine.manager",
    "PocketBaseInfo": "processman.environment",
    "Probe": "processman.config",
    "ProcessAlreadyRunning": "processman.errors",
    "ProcessConfig": "processman.config",
    "ProcessExited": "processman.engine.events",
    "ProcessManager": "processman.engine.manager",
    "ProcessNotFound": "processman.errors",
    "ProcessState": "processman.engine.process",
    "ProcessmanError": "processman.errors",
    "Status": "processman.engine.states",
    "StatusChanged": "processman.engine.events",
    "Subscription": "processman.engine.events",
    "load_config": "processman.config",
}

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "Desired",
    "DuplicateProcess",
    "LoadedConfig",
    "LogLine",
    "LogLines",
    "ManagerOptions",
    "PocketBaseInfo",
    "Probe",
    "ProcessAlreadyRunning",
    "ProcessConfig",
    "ProcessExited",
    "ProcessManager",
    "ProcessNotFound",
    "ProcessState",
    "ProcessmanError",
    "Status",
    "StatusChanged",
    "Subscription",
    "load_config",
]


if not TYPE_CHECKING:  # hidden from type checkers: they see the imports above, and flag unknown names

    def __getattr__(name: str) -> Any:
        module = _MODULES.get(name)
        if module is None:
            raise AttributeError(f"module 'processman' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip this function
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
