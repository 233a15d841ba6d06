"""W7 reload latency (processman devMode, PM2 watch): save a file in the watched folder; the time until
the new process runs. By default processman folds a burst of saves into one restart with a 500 ms
window (SPEC 7; tuned: ``watchDebounce`` 50 ms); PM2 does not debounce (watch_delay 0)."""

from __future__ import annotations

import functools
import time

from bench import procs
from bench.managers.base import SLEEP, Program
from bench.results import Series
from bench.workloads.context import Context, Subject

MS = 1000.0
SETTLE = 1.5  # a watcher is ready, and one save's restart is over, before the next save


def run(ctx: Context) -> list[Series]:
    count = 2 if ctx.quick else 5
    out: list[Series] = []
    for subject in ctx.subjects("W7"):
        latency = ctx.series("W7", "reload after a save", "ms", subject)
        out.append(latency)
        once = functools.partial(measure, ctx, subject, count, latency)
        ctx.guarded(f"W7 {latency.label} x{count}", [latency], once)
    return out


def measure(ctx: Context, subject: Subject, count: int, latency: Series) -> None:
    with ctx.manager(*subject) as manager:
        app = manager.workdir / "app"
        app.mkdir()
        source = app / "main.py"
        source.write_text("VERSION = 0\n")
        manager.launch([Program("app", (SLEEP, manager.token), cwd=app, watch=True)])
        watch = procs.NewSleeperWatch(manager.token)
        child = watch.wait((), 60, interval=0.01)
        for version in range(1, count + 1):
            time.sleep(SETTLE)
            source.write_text(f"VERSION = {version}\n")
            saved = time.monotonic()
            child = watch.wait({child}, 30)
            latency.values.append((time.monotonic() - saved) * MS)
        manager.stop()
        manager.wait_exit(30)
