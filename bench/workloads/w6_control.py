"""W6 control latency: 50 status queries (20 with 1000 children) with N = 10, 100, 1000 children (the
cost curve), through the manager's own command-line client (a new client process each time, as a
person or a script types it) and through its API from one client that stays connected. Settings do
not change these paths: defaults only."""

from __future__ import annotations

import functools
import subprocess
import time

from bench import procs
from bench.managers.base import SLEEP, Program
from bench.results import Series
from bench.workloads.context import Context, Subject

SIZES = (10, 100, 1000)
MS = 1000.0


def run(ctx: Context) -> list[Series]:
    out: list[Series] = []
    for size in (100,) if ctx.quick else SIZES:
        count = 3 if ctx.quick else 20 if size >= 1000 else 50
        for subject in ctx.subjects("W6", defaults_only=True, size=size):
            cli = ctx.series("W6", f"status via CLI, N={size}", "ms", subject)
            api = ctx.series("W6", f"status via API, N={size}", "ms", subject)
            out += [cli, api]
            once = functools.partial(measure, ctx, subject, size, count, cli, api)
            ctx.guarded(f"W6 N={size} {cli.label} x{count}", [cli, api], once)
    return out


def measure(ctx: Context, subject: Subject, size: int, count: int, cli: Series, api: Series) -> None:
    with ctx.manager(*subject) as manager:
        manager.launch([Program("s", (SLEEP, manager.token), count=size)])
        procs.wait_for(lambda: len(procs.sleepers(manager.token)) >= size, 300, "children", 0.1)
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
