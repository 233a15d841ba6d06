"""supervisord in the foreground (``-n``), one ``[program]`` per program with ``numprocs``."""

from __future__ import annotations

import time
import xmlrpc.client
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.managers.base import Manager, Program, free_port


class Supervisord(Manager):
    name = "supervisord"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.port = free_port()
        self.config_path = self.workdir / "supervisord.conf"
        self.log_dir = self.workdir / "logs"

    def write_config(self, programs: Sequence[Program]) -> None:
        self.log_dir.mkdir(exist_ok=True)
        lines = [
            "[supervisord]",
            f"logfile={self.workdir / 'supervisord.log'}",
            f"pidfile={self.workdir / 'supervisord.pid'}",
            f"childlogdir={self.log_dir}",
            "nodaemon=true",
            "",
            # supervisorctl and the XML-RPC API talk to this server (loopback only).
            "[inet_http_server]",
            f"port=127.0.0.1:{self.port}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=http://127.0.0.1:{self.port}",
            "",
        ]
        for program in programs:
            lines += [
                f"[program:{program.name}]",
                "command=" + " ".join(program.argv),
                f"numprocs={program.count}",
                "process_name=%(program_name)s_%(process_num)d",
            ]
            if program.cwd is not None:
                lines.append(f"directory={program.cwd}")
            if self.variant == "tuned":
                # The documented way to stop a child's whole process group, not only the child.
                lines += ["stopasgroup=true", "killasgroup=true", "stopwaitsecs=5"]
            lines.append("")
        self.config_path.write_text("\n".join(lines))

    def launch_argv(self) -> list[str]:
        return [str(self.peers.bin("supervisord")), "-n", "-c", str(self.config_path)]

    def healthy_after(self) -> float:
        return 1.0  # startsecs

    def status_argv(self) -> list[str] | None:
        return [str(self.peers.bin("supervisorctl")), "-c", str(self.config_path), "status"]

    def api_queries(self, count: int) -> list[float] | None:
        server = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{self.port}/RPC2")
        times = []
        for _ in range(count):
            started = time.perf_counter()
            server.supervisor.getAllProcessInfo()
            times.append(time.perf_counter() - started)
        return times

    def log_files(self, program: Program) -> list[Path]:
        return sorted(self.log_dir.glob(f"{program.name}_*-stdout---supervisor-*.log*"))
