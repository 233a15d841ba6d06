"""The process backend: how the engine waits for processes to exit and reads facts about them.

Two backends, one interface (:class:`Backend`); everything above it is the same:

``linux``
    pidfds (``os.pidfd_open``) for every exit, ``/proc`` for the facts, ``prctl`` for the child
    subreaper. The default where all three work.
``portable``
    Any POSIX system with psutil (macOS, the BSDs, a Linux without those facilities). Exits of its own
    children wake it through kqueue (``KQ_NOTE_EXIT``) where the system has it, else ``SIGCHLD``;
    facts come from psutil; there is no subreaper. See :mod:`processman.engine.portable`.

Which one: ``PROCESSMAN_BACKEND`` (``auto``, ``linux``, ``portable``); ``auto`` takes linux when
every facility it needs is there, else portable, and says which one is missing. The choice is made once
per process (:func:`current`): it says what the operating system offers, which does not change.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from processman.engine import procfs
from processman.engine.facts import Facts
from processman.engine.libc import libc
from processman.engine.linux import LinuxBackend
from processman.engine.portable import PortableBackend
from processman.errors import ProcessmanError

ENVIRONMENT_VARIABLE = "PROCESSMAN_BACKEND"
CHOICES = ("auto", "linux", "portable")
_PR_GET_CHILD_SUBREAPER = 37


class BackendError(ProcessmanError):
    """The backend asked for cannot be used here."""


class Watch(Protocol):
    def cancel(self) -> None:
        """Stop watching; safe to call twice (on the loop's thread)."""
        ...


class Backend(Protocol):
    name: str  # "linux" or "portable", as serve's start-up line and /api/health show it
    reason: str  # why this one, for people: "os.pidfd_open is missing"
    subreaper: bool  # whether it can make the manager the child subreaper

    @property
    def facts(self) -> Facts: ...

    def watch(self, pid: int, callback: Callable[[], None], *, child: bool = False) -> Watch:
        """Call ``callback`` on the running loop when ``pid`` may have exited (``child``: it is a
        child of this process). It may be called more than once, and before the exit: the callback
        checks (``waitpid(pid, WNOHANG)``) and cancels the watch when it is done. A pid already gone
        gets its callback soon. Raises OSError when the watch cannot be made (no descriptors left)."""
        ...

    def on_sigchld(self, callback: Callable[[], None]) -> Watch:
        """Call ``callback`` on the running loop after ``SIGCHLD`` (the orphan reaper); the backend's
        own use of the signal goes on beside it."""
        ...

    async def wait_for_exit(self, pids: Iterable[int], timeout: float | None) -> set[int]:
        """Wait until every pid has exited (or become a zombie), at most ``timeout`` seconds (None: no
        limit). Returns the pids still alive."""
        ...


def _prctl_works() -> str | None:
    """None when prctl can be called; else why not."""
    try:
        prctl = libc().prctl
    except (OSError, AttributeError):
        return "prctl is missing"
    value = ctypes.c_int()
    if prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0) != 0:
        return f"prctl fails ({os.strerror(ctypes.get_errno())})"
    return None


def _pidfd_works() -> str | None:
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return "os.pidfd_open is missing"
    try:
        os.close(pidfd_open(os.getpid()))
    except OSError as exc:
        return f"os.pidfd_open fails ({exc.strerror or exc})"
    return None


def _proc_works() -> str | None:
    """The stat line and the environment of this process, as the linux backend reads every process's."""
    try:
        with open(f"{procfs.PROC}/{os.getpid()}/environ", "rb"):
            pass
    except OSError as exc:
        return f"{procfs.PROC} cannot be read ({exc.strerror or exc})"
    if procfs.read_stat(os.getpid()) is None:
        return f"{procfs.PROC} cannot be read"
    return None


# Each Linux facility and its check; a check returns None when the facility works, else why not.
PROBES: dict[str, Callable[[], str | None]] = {
    "pidfd": _pidfd_works,
    "prctl": _prctl_works,
    "proc": _proc_works,
}


def missing_facilities() -> list[str]:
    """Why the linux backend cannot be used here, one reason per missing facility; [] when it can."""
    if not sys.platform.startswith("linux"):
        return [f"{sys.platform} is not Linux"]
    return [reason for check in PROBES.values() if (reason := check()) is not None]


def choose(environ: Mapping[str, str] = os.environ) -> Backend:
    """The backend ``PROCESSMAN_BACKEND`` asks for (``auto`` when unset). Raises BackendError for an
    unknown name, or for ``linux`` where it cannot be used."""
    choice = (environ.get(ENVIRONMENT_VARIABLE) or "auto").strip().lower()
    if choice not in CHOICES:
        raise BackendError(f"{ENVIRONMENT_VARIABLE}: expected one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "portable":
        return PortableBackend(f"{ENVIRONMENT_VARIABLE}=portable")
    missing = missing_facilities()
    if not missing:
        return LinuxBackend("pidfds, prctl and /proc")
    if choice == "linux":
        raise BackendError(f"the linux backend was asked for but cannot be used here: {'; '.join(missing)}")
    return PortableBackend("; ".join(missing))


@functools.cache
def current() -> Backend:
    """This process's backend, chosen at the first call."""
    return choose()


def describe(backend: Backend) -> str:
    """``portable (os.pidfd_open is missing)``: the backend and why, for a start-up line."""
    return f"{backend.name} ({backend.reason})"
