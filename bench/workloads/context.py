"""What every workload shares: the peers, a scratch folder, tokens, the managers to run, repeat counts,
and the guarantee that every manager and every child is gone after each run, even on failure."""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs
from bench.managers import ALL, Manager
from bench.peers import Peers
from bench.results import Better, Series

Subject = tuple[type[Manager], str]


class Leftovers(RuntimeError):
    """Processes of a finished run were still alive (they have been killed; the run is suspect)."""


@dataclass
class Context:
    peers: Peers
    scratch: Path
    quick: bool = False
    managers: tuple[type[Manager], ...] = ALL
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)
    _prefix: int = field(default_factory=lambda: random.randint(1000, 9999))
    _counter: int = 0
    _runs: int = 0
    tokens: list[str] = field(default_factory=list)
    live: list[Manager] = field(default_factory=list)

    def token(self) -> str:
        """A number no other run uses: every workload process carries it on its command line."""
        self._counter += 1
        value = f"{self._prefix}{self._counter:05d}"
        self.tokens.append(value)
        return value

    def repeats(self, full: int) -> int:
        return 1 if self.quick else full

    def subjects(self, workload: str, *, defaults_only: bool = False, size: int = 0) -> list[Subject]:
        """The managers and variants that run ``workload`` (with ``size`` children: those whose
        ``max_fleet`` allows it)."""
        found = []
        for kind in self.managers:
            if workload not in kind.workloads or size > kind.max_fleet:
                continue
            for variant in kind.variants[:1] if defaults_only else kind.variants:
                if kind.runs(workload, variant):
                    found.append((kind, variant))
        return found

    def make(self, kind: type[Manager], variant: str) -> Manager:
        self._runs += 1
        workdir = self.scratch / f"{self._runs:03d}-{kind.name}-{variant}"
        manager = kind(self.peers, workdir, variant, self.token())
        self.live.append(manager)
        return manager

    def release(self, manager: Manager) -> None:
        manager.cleanup()
        if manager in self.live:
            self.live.remove(manager)

    @contextlib.contextmanager
    def manager(self, kind: type[Manager], variant: str) -> Iterator[Manager]:
        manager = self.make(kind, variant)
        try:
            yield manager
        finally:
            self.release(manager)
            self.check_clean()

    def release_all(self) -> None:
        for manager in list(self.live):
            self.release(manager)

    def sweep(self) -> int:
        """Kill whatever any run of this harness left: processes carrying one of our tokens or a path
        in our scratch folder. Returns how many were found."""
        tokens = [t.encode() for t in self.tokens]
        scratch = str(self.scratch).encode()

        def ours(words: list[bytes]) -> bool:
            return procs.carries(words, scratch) or any(procs.carries(words, t) for t in tokens)

        return procs.kill_matching(ours)

    def check_clean(self) -> None:
        left = self.sweep()
        if left:
            raise Leftovers(f"{left} process(es) of a finished run were still alive; they were killed")

    def series(
        self, workload: str, metric: str, unit: str, subject: Subject, better: Better = "lower"
    ) -> Series:
        kind, variant = subject
        return Series(
            workload, metric, unit, kind.name, variant, better=better, label=kind.label_for(variant)
        )

    def guarded(self, what: str, series: Sequence[Series], run: Callable[[], None]) -> None:
        """Run one repetition; a failure is noted in the series (and logged) instead of ending the suite."""
        started = time.monotonic()
        try:
            run()
        except (
            procs.Timeout,
            Leftovers,
            OSError,
            ValueError,
            RuntimeError,
            subprocess.SubprocessError,
        ) as exc:
            self.log(f"  {what}: FAILED: {exc}")
            for item in series:
                if str(exc) not in item.note:
                    item.note = (item.note + "; " if item.note else "") + str(exc)
        else:
            self.log(f"  {what}: done in {time.monotonic() - started:.1f}s")
