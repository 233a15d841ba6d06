"""circusd with an ini file, one ``[watcher]`` per program with ``numprocesses``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.managers.base import Manager, Program, free_port

# Runs in the peers' venv, where circus is installed: N "status" calls from one client.
API_CLIENT = r"""
import json, sys, time
from circus.client import CircusClient
client = CircusClient(endpoint=sys.argv[1], timeout=10)
times = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    answer = client.call({"command": "status", "properties": {}})
    times.append(time.perf_counter() - started)
    assert answer["status"] == "ok", answer
client.stop()
print(json.dumps(times))
"""


class Circus(Manager):
    name = "circus"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.pubsub = f"tcp://127.0.0.1:{free_port()}"
        self.stats = f"tcp://127.0.0.1:{free_port()}"
        self.config_path = self.workdir / "circus.ini"
        self.log_dir = self.workdir / "logs"

    def write_config(self, programs: Sequence[Program]) -> None:
        self.log_dir.mkdir(exist_ok=True)
        lines = [
            "[circus]",
            f"endpoint = {self.endpoint}",
            f"pubsub_endpoint = {self.pubsub}",
            f"stats_endpoint = {self.stats}",
        ]
        if self.variant == "tuned":
            # circusd notices dead processes only every check_delay seconds (default 5).
            lines.append("check_delay = 0.1")
        lines.append("")
        for program in programs:
            lines += [
                f"[watcher:{program.name}]",
                f"cmd = {program.argv[0]}",
                "args = " + " ".join(program.argv[1:]),
                f"numprocesses = {program.count}",
                # Without a stream circus discards the output: a file is the least a job needs.
                "stdout_stream.class = FileStream",
                f"stdout_stream.filename = {self.log_dir / (program.name + '.out.log')}",
                "stderr_stream.class = FileStream",
                f"stderr_stream.filename = {self.log_dir / (program.name + '.err.log')}",
            ]
            if program.cwd is not None:
                lines.append(f"working_dir = {program.cwd}")
            if self.variant == "tuned":
                # The documented way to stop a child's children too.
                lines += ["stop_children = true", "graceful_timeout = 5"]
            lines.append("")
        self.config_path.write_text("\n".join(lines))

    def markers(self) -> list[str]:
        return [*super().markers(), self.endpoint]  # circusd-stats carries only the endpoint

    def launch_argv(self) -> list[str]:
        return [str(self.peers.bin("circusd")), str(self.config_path)]

    def status_argv(self) -> list[str] | None:
        return [str(self.peers.bin("circusctl")), "--endpoint", self.endpoint, "status"]

    def api_queries(self, count: int) -> list[float] | None:
        done = subprocess.run(
            [str(self.peers.python), "-c", API_CLIENT, self.endpoint, str(count)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        times: list[float] = json.loads(done.stdout)
        return times

    def log_files(self, program: Program) -> list[Path]:
        return sorted(self.log_dir.glob(f"{program.name}.out.log*"))
