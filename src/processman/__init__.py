"""processman: supervise the sidecar processes of a PocketBase application, or of any application."""

from processman.config import ConfigProblem, LoadedConfig, ProcessConfig, load_config
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
