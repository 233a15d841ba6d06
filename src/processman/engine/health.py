"""Readiness and liveness of one run of a child.

After the spawn, the readiness probe (if any) runs every ``interval`` until it passes: only then is the
process ``running`` and ready. From then on the liveness probe (if any) runs every ``interval``;
``failureThreshold`` failures in a row stop the run's tree, and the supervise loop handles the exit
like a crash, with the probe's reason as the exit's reason. The monitor lives exactly as long as the run:
the supervise loop closes it when the child exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from processman.config import Probe
from processman.durations import format_duration
from processman.engine.probes import ProbeSite

if TYPE_CHECKING:
    from processman.engine.process import ManagedProcess, SpawnContext


class HealthMonitor:
    """Probes one run of a process. Without a readiness probe the run is ready at once (``on_ready``
    is called from the constructor); without any probe no task is created."""

    def __init__(
        self,
        process: ManagedProcess,
        context: SpawnContext,
        *,
        on_ready: Callable[[], None],
        kill: Callable[[], Awaitable[None]],
    ) -> None:
        self.config = config = process.config
        self._process = process
        self._context = context
        self._site: ProbeSite | None = None
        self._on_ready = on_ready
        self._kill = kill
        self._started = time.monotonic()
        self.ready = False
        # Why the liveness probe ended the run; set before the tree is stopped.
        self.failure: str | None = None
        self._task: asyncio.Task[None] | None = None
        context.dependencies.notify(config.id)  # "started" dependants may go on
        if config.readiness is None:
            self._became_ready()
        if config.readiness is not None or config.liveness is not None:
            self._task = asyncio.create_task(self._run(), name=f"health {config.id}")

    def __repr__(self) -> str:
        return f"<HealthMonitor {self.config.id!r} ready={self.ready} failure={self.failure!r}>"

    async def close(self) -> None:
        """End the probes. A run the liveness probe is stopping is let finish stopping first."""
        task, self._task = self._task, None
        if task is None:
            return
        if self.failure is None:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        readiness, liveness = self.config.readiness, self.config.liveness
        if readiness is not None:
            await self._wait_until_ready(readiness)
        if liveness is not None:
            await self._watch_liveness(liveness)

    async def _wait_until_ready(self, probe: Probe) -> None:
        await asyncio.sleep(probe.initial_delay)
        shown = None
        while (reason := await self._probe(probe)) is not None:
            if reason != shown:  # a slow start writes one line per new reason, not one per probe
                shown = reason
                self._process.last_error = f"not ready yet: {reason}"
                self._note(self._process.last_error)
            await asyncio.sleep(probe.interval)
        if shown is not None and self._process.last_error == f"not ready yet: {shown}":
            self._process.last_error = ""
        self._note(f"ready after {format_duration(time.monotonic() - self._started)}")
        self._became_ready()

    async def _watch_liveness(self, probe: Probe) -> None:
        await asyncio.sleep(probe.initial_delay)
        failures = 0
        while True:
            reason = await self._probe(probe)
            if reason is None:
                failures = 0
            else:
                failures += 1
                if failures < probe.failure_threshold:
                    self._note(f"liveness probe failed ({failures}/{probe.failure_threshold}): {reason}")
                else:
                    # The supervise loop logs the exit with this reason once the tree is gone.
                    times = "1 time" if failures == 1 else f"{failures} times"
                    self.failure = f"liveness probe failed {times}: {reason}"
                    self._note(f"{self.failure}; restarting")
                    await self._kill()
                    return
            await asyncio.sleep(probe.interval)

    async def _probe(self, probe: Probe) -> str | None:
        if probe.kind == "command" and self._site is None:
            context = self._context
            self._site = ProbeSite(
                cwd=self.config.cwd,
                env=self._process.environment(),
                owned_pids=context.owned_pids,
                on_reaped=lambda: context.on_reaped(),
            )
        return await self._context.prober.run(probe, self._site)

    def _note(self, text: str) -> None:
        self._process.output.note(text)

    def _became_ready(self) -> None:
        self.ready = True
        self._on_ready()
        self._context.dependencies.notify(self.config.id)
