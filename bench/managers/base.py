"""What every manager adapter does: write its config, launch, stop, be killed, be asked for status, and
be cleaned up without leaving a single process behind.

A manager runs in its own scratch folder. ``variant`` is ``defaults`` (only what the job needs) or
``tuned`` (what the manager's documentation recommends for the job); a manager whose defaults already
are its recommendations has only ``defaults``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TextIO

from bench import procs
from bench.peers import Peers

SLEEP = "/usr/bin/sleep" if os.path.exists("/usr/bin/sleep") else "/bin/sleep"


@dataclass(frozen=True)
class Program:
    """One supervised program, ``count`` copies of it (numprocs/numprocesses where the manager has it)."""

    name: str
    argv: tuple[str, ...]
    count: int = 1
    cwd: Path | None = None
    watch: bool = False  # restart on changes under cwd (W7)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def manager_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The harness's environment without what would change how children write (PYTHONUNBUFFERED)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "PROCESSMAN_TAG")}
    env.update(extra or {})
    return env


class Manager(ABC):
    name: ClassVar[str]
    variants: ClassVar[tuple[str, ...]] = ("defaults", "tuned")
    workloads: ClassVar[frozenset[str]] = frozenset({"W1", "W2", "W3", "W4", "W5", "W6"})
    # W6: the manager has a status command and an API
    has_cli: ClassVar[bool] = True
    # The largest fleet it runs in the cost curve (W1, W2, W6 at N = 10, 100, 1000).
    max_fleet: ClassVar[int] = 1000

    def __init__(self, peers: Peers, workdir: Path, variant: str, token: str) -> None:
        if variant not in self.variants:
            raise ValueError(f"{self.name}: unknown variant {variant!r}; expected one of {self.variants}")
        self.peers = peers
        self.workdir = workdir
        self.variant = variant
        self.token = token
        self.process: subprocess.Popen[bytes] | None = None
        self.launched_at = 0.0
        self._output: TextIO | None = None
        self._known_own: set[int] = set()
        workdir.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        pid = self.process.pid if self.process else 0
        return f"<{type(self).__name__} {self.variant} pid={pid} dir={self.workdir}>"

    @property
    def label(self) -> str:
        return self.label_for(self.variant)

    @classmethod
    def label_for(cls, variant: str) -> str:
        return cls.name if len(cls.variants) == 1 else f"{cls.name} ({variant})"

    @classmethod
    def runs(cls, workload: str, variant: str) -> bool:
        """Whether this variant takes part in the workload (every variant runs every workload of
        ``workloads`` unless a manager says otherwise)."""
        return workload in cls.workloads

    # ---- what each manager defines ---------------------------------------------------------------

    @abstractmethod
    def write_config(self, programs: Sequence[Program]) -> None: ...

    @abstractmethod
    def launch_argv(self) -> list[str]: ...

    def environment(self) -> dict[str, str]:
        return manager_environment()

    def healthy_after(self) -> float:
        """How long a child must have run before the manager counts it as a successful start."""
        return 1.0

    def status_argv(self) -> list[str] | None:
        """One status query through the manager's own command-line client."""
        return None

    def api_queries(self, count: int) -> list[float] | None:
        """``count`` status queries through the manager's API from one client; seconds each."""
        return None

    def log_files(self, program: Program) -> list[Path]:
        """Every file that holds the program's stdout, rotated ones included."""
        return []

    # ---- the life of one manager run -------------------------------------------------------------

    def launch(self, programs: Sequence[Program], *, stdout_to_null: bool = False) -> None:
        self.write_config(programs)
        self._output = open(self.workdir / "manager.out", "w")  # noqa: SIM115 - closed in cleanup()
        self.launched_at = time.monotonic()
        self.process = subprocess.Popen(
            self.launch_argv(),
            cwd=self.workdir,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if stdout_to_null else self._output,
            stderr=self._output,
            start_new_session=True,
        )

    def main_pid(self) -> int:
        """The manager's main process (pm2: its daemon, not the CLI that launched it)."""
        if self.process is None:
            raise RuntimeError(f"{self.name} was not launched")
        return self.process.pid

    def own_pids(self) -> set[int]:
        """The manager's own processes: its main process and every descendant that is not a workload
        process (a process carrying the token) or below one."""
        try:
            root = self.main_pid()
        except (RuntimeError, procs.Timeout):
            return set()
        tree = procs.descendants([root])
        workload = {pid for pid in tree if procs.carries(procs.argv(pid), self.token.encode())}
        below = procs.descendants(workload)
        own = {root, *(tree - workload - below)}
        alive = {pid for pid in own if procs.alive(pid)}
        self._known_own |= alive
        return alive

    def stop(self) -> None:
        """A normal stop: SIGTERM to the main process, as an init system or a container runtime does."""
        procs.kill([self.main_pid()], signal.SIGTERM)

    def kill_main(self) -> None:
        """SIGKILL to the main process only (its helpers are left to do what they were built for)."""
        procs.kill([self.main_pid()], signal.SIGKILL)

    def wait_exit(self, timeout: float) -> bool:
        pid = self.main_pid()
        try:
            procs.wait_for(lambda: not procs.alive(pid), timeout, f"{self.name} to exit")
        except procs.Timeout:
            return False
        if self.process is not None and self.process.pid == pid:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(1)
        return True

    def markers(self) -> list[str]:
        """Strings on the command line of every process of this run (a helper orphaned when the
        manager was killed is found by these)."""
        return [str(self.workdir), self.token]

    def cleanup(self) -> None:
        """Kill the manager, its helpers and every process of this run; safe to call at any time."""
        own = self._known_own | self.own_pids()
        procs.kill(own)
        markers = [marker.encode() for marker in self.markers()]
        procs.kill_matching(lambda words: any(procs.carries(words, marker) for marker in markers))
        procs.kill(pid for pid in own if procs.alive(pid))
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        if self._output is not None:
            self._output.close()
            self._output = None
