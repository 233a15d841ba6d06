"""W3 restart latency: a healthy child is killed with SIGKILL; the time until its replacement runs.

"Healthy" is each manager's own notion: the child has run longer than the manager's threshold for a
successful start (processman minUptime, supervisord startsecs, PM2 min_uptime), so the restart is
the manager's immediate keep-alive path, not its crash-loop backoff."""

from __future__ import annotations

import functools
import os
import signal
import time

from bench import procs
from bench.managers.base import SLEEP, Program
from bench.results import Series
from bench.workloads.context import Context, Subject

MS = 1000.0


def run(ctx: Context, *, repeats: int | None = None) -> list[Series]:
    out: list[Series] = []
    for subject in ctx.subjects("W3"):
        latency = ctx.series("W3", "restart after SIGKILL", "ms", subject)
        out.append(latency)
        count = repeats if repeats is not None else (1 if ctx.quick else 5)
        once = functools.partial(measure, ctx, subject, count, latency)
        ctx.guarded(f"W3 {latency.label} x{count}", [latency], once)
    return out


def measure(ctx: Context, subject: Subject, count: int, latency: Series) -> None:
    with ctx.manager(*subject) as manager:
        manager.launch([Program("s", (SLEEP, manager.token))])
        watch = procs.NewSleeperWatch(manager.token)
        child = watch.wait((), 60, interval=0.01)
        seen = time.monotonic()
        healthy = manager.healthy_after() + 0.5
        latency.note = f"killed after {healthy:.1f}s of uptime"
        for _ in range(count):
            time.sleep(max(0.0, seen + healthy - time.monotonic()))
            os.kill(child, signal.SIGKILL)
            killed = time.monotonic()
            child = watch.wait({child}, 30)
            seen = time.monotonic()
            latency.values.append((seen - killed) * MS)
        time.sleep(0.5)  # circus 0.19 hangs on SIGTERM right after a restart
        manager.stop()
        manager.wait_exit(30)
