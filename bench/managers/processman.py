"""processman itself, run the way a user runs it: ``processman serve`` in the foreground."""

from __future__ import annotations

import http.client
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.managers.base import Manager, Program, free_port, manager_environment
from bench.peers import REPO_DIR

# Defaults from SPEC 1-2: a run shorter than minUptime (10s) is a failed start and waits for backoff.
DEFAULT_MIN_UPTIME = 10.0


def processman_python() -> str:
    """The project's own interpreter (processman is installed there), else the harness's."""
    venv = REPO_DIR / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


class Processman(Manager):
    name = "processman"
    # tags: the defaults with PROCESSMAN_CONTAINMENT=tags, what containment costs (W1 and W5 only).
    variants = ("defaults", "tuned", "tags")
    workloads = frozenset({"W1", "W2", "W3", "W4", "W5", "W6", "W7"})
    _compiled = False

    @classmethod
    def runs(cls, workload: str, variant: str) -> bool:
        return workload in cls.workloads and (variant != "tags" or workload in ("W1", "W5"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.port = free_port()
        self.admin_token = secrets.token_urlsafe(32)
        self.data_dir = self.workdir / "data"
        self._cli: bool | None = None

    def write_config(self, programs: Sequence[Program]) -> None:
        entries: list[dict[str, Any]] = []
        for program in programs:
            for index in range(program.count):
                entry: dict[str, Any] = {
                    "id": program.name if program.count == 1 else f"{program.name}-{index}",
                    "command": program.argv[0],
                    "args": list(program.argv[1:]),
                }
                if program.cwd is not None:
                    entry["cwd"] = str(program.cwd)
                if program.watch:
                    entry["devMode"] = True
                if self.variant == "tuned":
                    # A child that ran 1s is healthy: restart at once, and retry fast if it was not.
                    entry.update(minUptime="1s", backoff="100ms", stopTimeout="5s")
                    if program.watch:  # a short window: the first save restarts almost at once
                        entry["watchDebounce"] = "50ms"
                entries.append(entry)
        self.config_path = self.workdir / "pb_processes.json"
        self.config_path.write_text(json.dumps(entries, indent=1))

    def launch_argv(self) -> list[str]:
        return [
            processman_python(),
            "-m",
            "processman",
            "serve",
            "--config",
            str(self.config_path),
            "--dir",
            str(self.data_dir),
            "--http",
            f"127.0.0.1:{self.port}",
            # Tuned runs as a service whose log files are the record (as supervisord's are): no echo.
            *(["--no-echo"] if self.variant == "tuned" else []),
        ]

    def environment(self) -> dict[str, str]:
        extra = {"PROCESSMAN_TOKEN": self.admin_token}
        if self.variant == "tags":
            extra["PROCESSMAN_CONTAINMENT"] = "tags"
        return manager_environment(extra)

    def launch(self, programs: Sequence[Program], *, stdout_to_null: bool = False) -> None:
        Processman.compile_once()
        super().launch(programs, stdout_to_null=stdout_to_null)

    @classmethod
    def compile_once(cls) -> None:
        """Byte-compile processman, as installing it does: a checkout run with PYTHONDONTWRITEBYTECODE
        would compile every module at every start (slower, and more memory)."""
        if cls._compiled:
            return
        cls._compiled = True
        source = REPO_DIR / "src" / "processman"
        if source.is_dir():
            subprocess.run(
                [processman_python(), "-m", "compileall", "-q", str(source)], capture_output=True, check=False
            )

    def cleanup(self) -> None:
        super().cleanup()
        self._remove_run_cgroup()

    def _remove_run_cgroup(self) -> None:
        """The harness's cleanup kills the guardian with the manager, so nothing else removes the run's
        cgroups (the next serve in the same folder would): left, they pile up over runs, a thousand
        for one W2 at N=1000, and every later cgroup operation on the machine walks past them. The
        clean-up is that next serve's, run by processman's interpreter (the harness's may lack it)."""
        try:
            recorded = json.loads((self.data_dir / "processman" / "run.json").read_text()).get("cgroup")
        except (OSError, ValueError):
            return
        if not isinstance(recorded, str) or not Path(recorded).exists():  # a normal stop removed it
            return
        code = (
            "import asyncio, sys\n"
            "from processman.engine.containment import clean_up_previous_cgroup\n"
            "asyncio.run(clean_up_previous_cgroup(sys.argv[1]))\n"
        )
        subprocess.run([processman_python(), "-c", code, recorded], check=False, timeout=60)

    def healthy_after(self) -> float:
        return 1.0 if self.variant == "tuned" else DEFAULT_MIN_UPTIME

    def log_files(self, program: Program) -> list[Path]:
        folder = self.data_dir / "processman" / "logs"
        return sorted(folder.glob(f"{program.name}.out.log*"))

    def _has_cli(self) -> bool:
        if self._cli is None:
            probe = subprocess.run(
                [processman_python(), "-m", "processman", "list", "--help"],
                capture_output=True,
                check=False,
            )
            self._cli = probe.returncode == 0 and b"--json" in probe.stdout
        return self._cli

    def status_argv(self) -> list[str] | None:
        if not self._has_cli():
            return None
        return [
            processman_python(),
            "-m",
            "processman",
            "list",
            "--json",
            "--url",
            f"http://127.0.0.1:{self.port}",
        ]

    def api_queries(self, count: int) -> list[float] | None:
        """``GET /api/pm/list`` over one kept-alive connection, as a dashboard or a script would."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        times = []
        try:
            for _ in range(count):
                started = time.perf_counter()
                connection.request("GET", "/api/pm/list", headers=headers)
                response = connection.getresponse()
                body = response.read()
                times.append(time.perf_counter() - started)
                if response.status != 200:
                    return None
                json.loads(body)
        except OSError:
            return None
        finally:
            connection.close()
        return times


class ProcessmanPortable(Processman):
    """processman with its portable process backend (psutil, SIGCHLD, no pidfds, no /proc reads of its
    own, no subreaper) on the same machine, so what the backend costs is known. Only asked for by name
    (``--managers processman,processman-portable``): it measures processman, not a peer."""

    name = "processman-portable"
    workloads = frozenset({"W1", "W2", "W3", "W4", "W5"})

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "PROCESSMAN_BACKEND": "portable"}
