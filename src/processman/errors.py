"""The exception tree of processman.

    ProcessmanError
    ├── ConfigError            the configuration cannot be used at all (unreadable file, bad JSON)
    ├── ProcessNotFound        no process has that id
    ├── ProcessAlreadyRunning  start asked of a process that is starting or running
    ├── SpawnError             a child could not be started (missing program, no descriptors left)
    ├── DuplicateProcess       register() with an id that is already registered
    ├── ManagerNotRunning      a process was asked to start before its manager started, or while it
    │                          shuts down
    ├── NotRunnable            run asked of a process kept alive (it has no single run)
    ├── IllegalTransition      the engine tried a status change its table forbids (a bug, never user input)
    ├── AlreadyRunningElsewhere another manager owns the same state folder
    ├── SignalRefused          an unknown signal, or SIGKILL/SIGSTOP without force (they bypass the
    │                          stop ladder)
    └── ProcessNotRunning      a signal for a process that has no running process to receive it

Foreign errors (OSError, json.JSONDecodeError) are translated where they enter, with ``raise ... from``.
Only the CLI turns these into exit codes.
"""

from __future__ import annotations


class ProcessmanError(Exception):
    """Base class of every error processman raises on purpose."""


class ConfigError(ProcessmanError):
    """The configuration file cannot be read or parsed."""


class ProcessNotFound(ProcessmanError):
    def __init__(self, process_id: str) -> None:
        super().__init__(f"no process with id {process_id!r}")
        self.process_id = process_id


class ProcessAlreadyRunning(ProcessmanError):
    def __init__(self, process_id: str) -> None:
        super().__init__(f"process {process_id!r} is already running")
        self.process_id = process_id


class SpawnError(ProcessmanError):
    """A child could not be started; nothing of it is left running. The message says why in words a
    user can act on."""


class DuplicateProcess(ProcessmanError):
    def __init__(self, process_id: str) -> None:
        super().__init__(f"a process with id {process_id!r} is already registered")
        self.process_id = process_id


class ManagerNotRunning(ProcessmanError):
    def __init__(self, process_id: str) -> None:
        super().__init__(f"process {process_id!r} cannot start: its manager is not running (call start())")
        self.process_id = process_id


class IllegalTransition(ProcessmanError):
    pass


class AlreadyRunningElsewhere(ProcessmanError):
    pass


class SignalRefused(ProcessmanError):
    """A signal that cannot be sent as asked; the message says why."""


class ProcessNotRunning(ProcessmanError):
    def __init__(self, process_id: str) -> None:
        super().__init__(f"process {process_id!r} is not running: there is no process to signal")
        self.process_id = process_id


class NotRunnable(ProcessmanError):
    """``run`` asked of a process that is kept alive: it has no single runs to start."""

    def __init__(self, process_id: str) -> None:
        super().__init__(
            f'process {process_id!r} is kept alive (restart "always", no schedule): it has no single run '
            "to start; use start or restart"
        )
        self.process_id = process_id
