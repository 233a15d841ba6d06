"""W1 fleet start and stop: N children of ``sleep``; the time from launching the manager until all N are
alive, then from a normal stop (SIGTERM to the manager) until all are gone."""

from __future__ import annotations

import functools
import time

from bench import procs
from bench.managers.base import SLEEP, Program
from bench.results import Series
from bench.workloads.context import Context, Subject

POLL = 0.025  # a /proc scan of ~1000 processes costs a few ms: don't steal the managers' CPU
STOP_LIMIT = 60.0  # a stop still going after this is recorded at this value, with a note


def run(ctx: Context) -> list[Series]:
    out: list[Series] = []
    for size in (100,) if ctx.quick else (100, 500):
        for subject in ctx.subjects("W1"):
            start = ctx.series("W1", f"start, N={size}", "s", subject)
            stop = ctx.series("W1", f"stop, N={size}", "s", subject)
            out += [start, stop]
            for rep in range(ctx.repeats(3)):
                once = functools.partial(measure, ctx, subject, size, start, stop)
                ctx.guarded(f"W1 N={size} {start.label} #{rep + 1}", [start, stop], once)
    return out


def measure(ctx: Context, subject: Subject, size: int, start: Series, stop: Series) -> None:
    with ctx.manager(*subject) as manager:
        manager.launch([Program("s", (SLEEP, manager.token), count=size)])
        up = procs.wait_for(
            lambda: len(procs.sleepers(manager.token)) >= size,
            180,
            f"{size} children of {manager.label}",
            POLL,
        )
        start.values.append(up - manager.launched_at)
        time.sleep(0.5)
        asked = time.monotonic()
        manager.stop()
        try:
            gone = procs.wait_for(
                lambda: not procs.sleepers(manager.token), STOP_LIMIT, "children to stop", POLL
            )
        except procs.Timeout:
            left = len(procs.sleepers(manager.token))
            stop.values.append(STOP_LIMIT)  # censored: the real figure is larger
            limit = f"{STOP_LIMIT:.0f} s"
            stop.note = f"{left} children still running {limit} after SIGTERM: counted as {limit}"
            return
        stop.values.append(gone - asked)
        if not manager.wait_exit(30):
            stop.note = f"{manager.name} was still running 30 s after SIGTERM (killed)"
