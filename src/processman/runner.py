"""``processman serve``: wires config, manager and services (API server, PocketBase bridge) together,
and owns the signals. A first Ctrl+C or SIGTERM stops every process tree through the stop ladder; a
second one forces: every tree gets SIGKILL at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from processman.config import LoadedConfig, load_config
from processman.engine.events import LogLines
from processman.engine.manager import ManagerOptions, ProcessManager
from processman.engine.posix import TagScanner, send_signal
from processman.environment import PocketBaseInfo

logger = logging.getLogger("processman")


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
    logger.info("%d process(es) configured in %s", len(loaded.processes), loaded.path)


class Runner:
    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._stop = asyncio.Event()
        self._signal_count = 0
        self.exit_code = 0
        self.manager: ProcessManager | None = None

    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            logger.info("stopping: %s", reason)
        self._stop.set()

    def _on_signal(self, signum: int) -> None:
        self._signal_count += 1
        name = signal.Signals(signum).name
        if self._signal_count == 1:
            self.exit_code = 128 + signum
            self.request_stop(f"{name} received; stopping every process (press Ctrl+C again to force)")
        else:
            logger.warning("%s received again: killing every process now", name)
            self._force_kill()

    def _force_kill(self) -> None:
        if self.manager is None:
            return
        self.manager.kill_all_now()
        pids = TagScanner().tagged_with_prefix(f"{self.manager.run_id}:")
        groups = [state.pid for state in self.manager.states() if state.pid]
        send_signal(pids, None, signal.SIGKILL)
        for group in groups:
            send_signal((), group, signal.SIGKILL)

    async def run(self, on_ready: Callable[[], Awaitable[None]] | None = None) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._on_signal, signum)
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
            )
            self.manager = manager = ProcessManager(loaded.processes, options)
            # Only the HTTP API reads the figures here, and it says when: sample slowly otherwise.
            manager.resources.on_demand = True
            await manager.start()
            logger.info("containment: %s (%s)", manager.containment.name, manager.containment.where)
            try:
                await self._run_services(manager, on_ready)
            finally:
                await manager.close()
            logger.info("stopped")
            return self.exit_code
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)

    async def _run_services(
        self, manager: ProcessManager, on_ready: Callable[[], Awaitable[None]] | None
    ) -> None:
        tasks: list[asyncio.Task[Any]] = []
        readiness = []
        for service in self.settings.services:
            ready = asyncio.Event()
            readiness.append(ready)
            tasks.append(
                asyncio.create_task(service.run(manager, ready.set, self.request_stop), name=service.name)
            )
        stop_wait: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        all_ready: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*(r.wait() for r in readiness)))
        try:
            await asyncio.wait([stop_wait, all_ready, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if on_ready is not None and not self._stop.is_set():
                await on_ready()
            await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    logger.error("%s failed: %s", task.get_name(), task.exception())
                    self.exit_code = 1
        finally:
            await manager.stop_all()
            for future in (*tasks, stop_wait, all_ready):
                future.cancel()
            # Await everything cancelled, so no exception is left unretrieved.
            for future in (*tasks, stop_wait, all_ready):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await future
