"""Readiness and liveness of one run of a child.

After the spawn, the readiness probe (if any) runs every ``interval`` until it passes: only then is the
run ready. From then on the liveness probe (if any) runs every ``interval``; ``failureThreshold``
failures in a row make the run unhealthy, and its process stops the run's tree and handles the exit like
a crash, with the probe's reason as the exit's reason.

The monitor owns no process state: it reports through a :class:`HealthReport`, and its process decides
and writes. It lives exactly as long as the run (its process cancels it when the run ends).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from processman.config import Probe, ProcessConfig, mask_text
from processman.durations import format_duration
from processman.engine.clock import Clock
from processman.engine.probes import Prober, ProbeSite

logger = logging.getLogger(__name__)


class HealthReport(Protocol):
    """What a health monitor tells the process it watches."""

    def note(self, text: str) -> None:
        """A line for the process's log (the ``system`` stream)."""

    def not_ready(self, reason: str) -> None:
        """The readiness probe has not passed yet, for this reason ("": no longer waiting)."""

    def became_ready(self) -> None:
        """The readiness probe passed."""

    def unhealthy(self, reason: str) -> None:
        """The liveness probe failed ``failureThreshold`` times in a row: the run must be stopped."""


class HealthMonitor:
    """Probes one run of a process. :meth:`run` is its whole life."""

    def __init__(
        self,
        config: ProcessConfig,
        report: HealthReport,
        prober: Prober,
        site: Callable[[], ProbeSite],
        clock: Clock,
    ) -> None:
        self.config = config
        self._report = report
        self._prober = prober
        self._site_factory = site
        self._site: ProbeSite | None = None
        self._clock = clock
        self._started = clock.monotonic()

    def __repr__(self) -> str:
        return f"<HealthMonitor {self.config.id!r}>"

    @staticmethod
    def needed(config: ProcessConfig) -> bool:
        return config.readiness is not None or config.liveness is not None

    async def run(self) -> None:
        readiness, liveness = self.config.readiness, self.config.liveness
        if readiness is not None:
            await self._wait_until_ready(readiness)
        if liveness is not None:
            await self._watch_liveness(liveness)

    async def _wait_until_ready(self, probe: Probe) -> None:
        await self._clock.sleep(probe.initial_delay)
        shown = None
        while (reason := await self._probe(probe)) is not None:
            if reason != shown:  # a slow start writes one line per new reason, not one per probe
                shown = reason
                self._report.not_ready(reason)
                self._report.note(f"not ready yet: {reason}")
            await self._clock.sleep(probe.interval)
        if shown is not None:
            self._report.not_ready("")
        self._report.note(f"ready after {format_duration(self._clock.monotonic() - self._started)}")
        self._report.became_ready()

    async def _watch_liveness(self, probe: Probe) -> None:
        await self._clock.sleep(probe.initial_delay)
        failures = 0
        while True:
            reason = await self._probe(probe)
            if reason is None:
                failures = 0
            else:
                failures += 1
                if failures < probe.failure_threshold:
                    self._report.note(
                        f"liveness probe failed ({failures}/{probe.failure_threshold}): {reason}"
                    )
                else:
                    times = "1 time" if failures == 1 else f"{failures} times"
                    failure = f"liveness probe failed {times}: {reason}"
                    self._report.note(f"{failure}; restarting")
                    self._report.unhealthy(failure)
                    return
            await self._clock.sleep(probe.interval)

    async def _probe(self, probe: Probe) -> str | None:
        """None when healthy, else the reason, with credentials in its URL or command masked (it is
        shown in lastError and the log)."""
        if probe.kind == "command" and self._site is None:
            self._site = self._site_factory()
        reason = await self._prober.run(probe, self._site)
        return None if reason is None else mask_text(reason)
