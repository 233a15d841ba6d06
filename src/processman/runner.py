"""``processman serve``: wires config, manager and services (API server, PocketBase bridge) together,
and owns the signals. A first Ctrl+C, SIGTERM or SIGHUP stops every process tree through the stop
ladder; a second Ctrl+C forces (every tree gets SIGKILL at once), a repeated SIGTERM or SIGHUP does not.

As PID 1 (a container's init) the kernel drops every signal whose handler is the default, so serve holds
them pending (blocked) from its first line until its handlers exist, and a stop asked for by SIGTERM
(``docker stop``) exits 0. Orphans are reaped as everywhere else (the manager's ``adopt_orphans``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from processman.config import LoadedConfig, load_config
from processman.engine.backend import describe
from processman.engine.events import LogLines
from processman.engine.manager import ManagerOptions, ProcessManager
from processman.engine.posix import TagScanner, send_signal
from processman.environment import PocketBaseInfo
from processman.notify import EmailSender
from processman.preflight import check_environment

logger = logging.getLogger("processman")

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def running_as_init() -> bool:
    return os.getpid() == 1


def exit_code_for(signum: int) -> int:
    """128 + the signal, as a shell reports it. As PID 1, SIGTERM is how a container is asked to end
    (``docker stop``, Kubernetes): an orderly stop is a success there, so 0, not "killed by SIGTERM"."""
    if signum == signal.SIGTERM and running_as_init():
        return 0
    return 128 + signum


class Service(Protocol):
    """Something that runs beside the manager for the whole serve (the HTTP API, the PocketBase bridge).

    ``run`` is cancelled when serve stops, after every process has stopped. It calls ``ready()`` once it
    is up. It may call ``request_stop()`` to end serve (the parent PocketBase went away)."""

    name: str

    async def run(
        self, manager: ProcessManager, ready: Callable[[], None], request_stop: Callable[[str], None]
    ) -> None: ...


@dataclass
class ServeSettings:
    config_path: Path
    data_dir: Path
    pocketbase: PocketBaseInfo | None = None
    services: list[Service] = field(default_factory=list)
    watch_config: bool = True  # apply changes to the config file while running
    output_echo: Callable[[LogLines], None] | None = None  # prints child output (None: not shown)
    log_drops: Callable[[], Mapping[str, int]] | None = None  # lines a console dropped, by consumer
    email_sender: EmailSender | None = None  # sends "email" notifications (PocketBase mode)

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "processman"


def report_config(loaded: LoadedConfig) -> None:
    """Log what loading found: the manager runs whatever is valid."""
    if not loaded.exists:
        logger.info("no config file at %s; running with no processes", loaded.path)
        return
    for problem in loaded.problems:
        log = logger.error if problem.severity == "error" else logger.warning
        log("%s", problem)
    # What they name must exist too; the engine says why each of these fails when it tries to start it.
    missing = check_environment(loaded, os.environ)
    if missing:
        logger.warning(
            "%d process(es) configured in %s; %d cannot start: %s",
            len(loaded.processes),
            loaded.path,
            len(missing),
            ", ".join(problem.entry for problem in missing),
        )
        return
    logger.info("%d process(es) configured in %s", len(loaded.processes), loaded.path)


class Runner:
    """Runs serve: the manager, then the services in a task group, until a stop is requested.

    Signals are handled here and nowhere else. The first SIGINT, SIGTERM or SIGHUP starts one orderly
    stop (every tree through its stop ladder); the exit code is 128 + that signal (SIGTERM as PID 1: 0).
    Only Ctrl+C forces: a SIGINT while the stop runs sends SIGKILL to every tree at once. A repeated
    SIGTERM or SIGHUP does not, since a dead parent delivers its death signal more than once (once per
    thread of PocketBase).
    """

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._stop = asyncio.Event()
        self._stop_signal: int | None = None
        self.exit_code = 0
        self.manager: ProcessManager | None = None

    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            logger.info("stopping: %s", reason)
        self._stop.set()

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stop_signal is None:
            self._stop_signal = signum
            if not self._stop.is_set():
                self.exit_code = exit_code_for(signum)
            again = " again" if signum == signal.SIGINT else ""
            self.request_stop(f"{name} received; stopping every process (press Ctrl+C{again} to force)")
        elif signum == signal.SIGINT:
            logger.warning("%s received again: killing every process now", name)
            self._force_kill()
        else:
            logger.info("%s received again: already stopping (press Ctrl+C to force)", name)

    def _force_kill(self) -> None:
        if self.manager is None:
            return
        self.manager.kill_all_now()
        pids = TagScanner().tagged_with_prefix(f"{self.manager.run_id}:")
        groups = [state.pid for state in self.manager.states() if state.pid]
        send_signal(pids, None, signal.SIGKILL)
        for group in groups:
            send_signal((), group, signal.SIGKILL)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        # Handled from here on: what came while they were held (or blocked by whoever started us) now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        try:
            loaded = load_config(self.settings.config_path)
            report_config(loaded)
            options = ManagerOptions(
                state_dir=self.settings.state_dir,
                pocketbase=self.settings.pocketbase,
                adopt_orphans=True,
                watch_ignore=(self.settings.data_dir,),
                config_path=self.settings.config_path,
                watch_config=self.settings.watch_config,
                log_output=self.settings.output_echo is not None,
                output_echo=self.settings.output_echo,
                log_drops=self.settings.log_drops,
                notify=loaded.notify,
                email_sender=self.settings.email_sender,
            )
            self.manager = manager = ProcessManager(loaded.processes, options)
            # Only the HTTP API reads the figures here, and it says when: sample slowly otherwise.
            manager.resources.on_demand = True
            await manager.start()
            logger.info("backend: %s", describe(manager.backend))
            logger.info("containment: %s (%s)", manager.containment.name, manager.containment.where)
            try:
                await self._run_services(manager)
            finally:
                await manager.close()
            logger.info("stopped")
            return self.exit_code
        finally:
            for signum in SIGNALS:
                loop.remove_signal_handler(signum)

    async def _run_services(self, manager: ProcessManager) -> None:
        """The services run in a task group until a stop is requested. The processes stop first, while
        the services still run (the API answers and shows them stopping); then the services are
        cancelled. A service that fails or ends by itself requests that stop at once, exit code 1."""
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._run_service(service, manager), name=service.name)
                for service in self.settings.services
            ]
            await self._stop.wait()
            await manager.stop_all()
            for task in tasks:
                task.cancel()

    async def _run_service(self, service: Service, manager: ProcessManager) -> None:
        try:
            await service.run(manager, lambda: None, self.request_stop)
        except asyncio.CancelledError:
            raise
        except (Exception, SystemExit) as exc:  # SystemExit: a server that gives up the way a CLI does
            logger.error("%s failed: %s", service.name, exc, exc_info=exc)
            self._fail(f"{service.name} failed")
        else:
            if not self._stop.is_set():
                logger.error("%s ended unexpectedly", service.name)
                self._fail(f"{service.name} ended")

    def _fail(self, reason: str) -> None:
        if not self._stop.is_set():
            self.exit_code = 1
        self.request_stop(reason)
