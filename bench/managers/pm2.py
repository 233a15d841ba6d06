"""PM2 with an ecosystem file, in its own PM2_HOME. ``pm2 start`` spawns the daemon and returns; the
daemon ("God") is the manager from then on. Its defaults are already what its documentation recommends
for these jobs (tree kill on, no restart delay, watch delay 0), so it runs with defaults only."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import procs
from bench.managers.base import Manager, Program, manager_environment

API_CLIENT = r"""
const pm2 = require(process.argv[1]);
const count = Number(process.argv[2]);
const times = [];
pm2.connect(true, (error) => {
  if (error) { console.error(error); process.exit(1); }
  const next = () => {
    if (times.length >= count) { console.log(JSON.stringify(times)); pm2.disconnect(); return; }
    const started = process.hrtime.bigint();
    pm2.list((listError) => {
      if (listError) { console.error(listError); process.exit(1); }
      times.push(Number(process.hrtime.bigint() - started) / 1e9);
      next();
    });
  };
  next();
});
"""


class Pm2(Manager):
    name = "pm2"
    variants = ("defaults",)
    workloads = frozenset({"W1", "W2", "W3", "W4", "W5", "W6", "W7"})
    # It stops its apps one after another: 500 took a minute, the harness's limit for a stop, so 1000
    # would be recorded as the limit itself, three times over (about ten minutes of the run).
    max_fleet = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.home = self.workdir / "home"
        self.config_path = self.workdir / "ecosystem.config.js"
        self._daemon: int | None = None

    def write_config(self, programs: Sequence[Program]) -> None:
        apps: list[dict[str, Any]] = []
        for program in programs:
            for index in range(program.count):
                app: dict[str, Any] = {
                    "name": program.name if program.count == 1 else f"{program.name}-{index}",
                    "script": program.argv[0],
                    "args": list(program.argv[1:]),
                    # Run the executable itself, not through node.
                    "interpreter": "none",
                }
                if program.cwd is not None:
                    app["cwd"] = str(program.cwd)
                if program.watch:
                    app["watch"] = True
                apps.append(app)
        self.config_path.write_text("module.exports = " + json.dumps({"apps": apps}, indent=1) + ";\n")

    def launch_argv(self) -> list[str]:
        return [str(self.peers.pm2), "start", str(self.config_path)]

    def environment(self) -> dict[str, str]:
        return manager_environment({"PM2_HOME": str(self.home)})

    def main_pid(self) -> int:
        if self._daemon is None:
            pid_file = self.home / "pm2.pid"
            procs.wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 60, "pm2 daemon")
            self._daemon = int(pid_file.read_text().strip())
        return self._daemon

    def own_pids(self) -> set[int]:
        own = super().own_pids()
        if self.process is not None and procs.alive(self.process.pid):
            own.add(self.process.pid)  # the CLI, while it is still launching
        return own

    def healthy_after(self) -> float:
        return 1.0  # min_uptime

    def status_argv(self) -> list[str] | None:
        return [str(self.peers.pm2), "jlist"]

    def api_queries(self, count: int) -> list[float] | None:
        done = subprocess.run(
            ["node", "-e", API_CLIENT, str(self.peers.pm2_module), str(count)],
            capture_output=True,
            text=True,
            timeout=120,
            env=self.environment(),
            check=True,
        )
        times: list[float] = json.loads(done.stdout.strip().splitlines()[-1])
        return times

    def log_files(self, program: Program) -> list[Path]:
        return sorted((self.home / "logs").glob(f"{program.name}-out.log*"))
