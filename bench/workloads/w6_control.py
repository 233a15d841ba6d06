"""W6 control latency: 50 status queries with N = 100 children, through the manager's own command-line
client (a new client process each time, as a person or a script types it) and through its API from
one client that stays connected. Settings do not change these paths: defaults only."""

from __future__ import annotations

import functools
import subprocess
import time

from bench import procs
from bench.managers.base import SLEEP, Program
from bench.results import Series
from bench.workloads.context import Context, Subject

SIZE = 100
MS = 1000.0


def run(ctx: Context) -> list[Series]:
    count = 3 if ctx.quick else 50
    out: list[Series] = []
    for subject in ctx.subjects("W6", defaults_only=True):
        cli = ctx.series("W6", f"status via CLI, N={SIZE}", "ms", subject)
        api = ctx.series("W6", f"status via API, N={SIZE}", "ms", subject)
        out += [cli, api]
        once = functools.partial(measure, ctx, subject, count, cli, api)
        ctx.guarded(f"W6 {cli.label} x{count}", [cli, api], once)
    return out


def measure(ctx: Context, subject: Subject, count: int, cli: Series, api: Series) -> None:
    with ctx.manager(*subject) as manager:
        manager.launch([Program("s", (SLEEP, manager.token), count=SIZE)])
        procs.wait_for(lambda: len(procs.sleepers(manager.token)) >= SIZE, 180, "children", 0.1)
        time.sleep(1.0)
        argv = manager.status_argv()
        if argv is None:
            cli.note = "no status command"
        else:
            for _ in range(count):
                started = time.perf_counter()
                done = subprocess.run(
                    argv, capture_output=True, env=manager.environment(), timeout=60, check=False
                )
                cli.values.append((time.perf_counter() - started) * MS)
                if done.returncode != 0:
                    cli.note = (
                        f"exit {done.returncode}: {done.stderr.decode(errors='replace').strip()[-200:]}"
                    )
                    cli.values.clear()
                    break
        times = manager.api_queries(count)
        if times is None:
            api.note = "no API answered"
        else:
            api.values.extend(t * MS for t in times)
        manager.stop()
        manager.wait_exit(30)
