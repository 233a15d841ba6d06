"""honcho (a Procfile runner, like foreman): no restarts, no client, no watch; it applies to fleet start,
idle cost, log throughput and tree cleanup. Its only record of output is its own stdout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.managers.base import Manager, Program


class Honcho(Manager):
    name = "honcho"
    variants = ("defaults",)
    workloads = frozenset({"W1", "W2", "W4", "W5"})
    has_cli = False
    # One Python process per child (3 MB each): 1000 children are 1000 interpreters starting at once.
    max_fleet = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.procfile = self.workdir / "Procfile"
        self._concurrency: list[str] = []

    def write_config(self, programs: Sequence[Program]) -> None:
        lines = []
        self._concurrency = []
        for program in programs:
            command = " ".join(program.argv)
            if program.cwd is not None:
                command = f"cd {program.cwd} && exec {command}"
            lines.append(f"{program.name}: {command}")
            self._concurrency.append(f"{program.name}={program.count}")
        self.procfile.write_text("\n".join(lines) + "\n")

    def launch_argv(self) -> list[str]:
        argv = [str(self.peers.bin("honcho")), "start", "-f", str(self.procfile), "-d", str(self.workdir)]
        if self._concurrency:
            argv += ["-c", ",".join(self._concurrency)]
        return argv

    def log_files(self, program: Program) -> list[Path]:
        return [self.workdir / "manager.out"]
