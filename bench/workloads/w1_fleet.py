"""W1 fleet start and stop: N children of ``sleep`` (N = 10, 100, 1000: the cost curve); the time from
launching the manager until all N are alive, then from a normal stop (SIGTERM to the manager) until all
are gone, and until the manager has exited too with nothing of it left (what ``docker stop`` and
``systemctl stop`` wait for)."""

from __future__ import annotations

import functools
import time

from bench import procs
from bench.managers.base import SLEEP, Program
from bench.results import Series
from bench.workloads.context import Context, Subject

POLL = 0.025  # a /proc scan of ~1000 processes costs a few ms: don't steal the managers' CPU
STOP_LIMIT = 60.0  # a stop still going after this is recorded at this value, with a note
SIZES = (10, 100, 1000)


def run(ctx: Context) -> list[Series]:
    out: list[Series] = []
    for size in (10, 100) if ctx.quick else SIZES:
        for subject in ctx.subjects("W1", size=size):
            start = ctx.series("W1", f"start, N={size}", "s", subject)
            stop = ctx.series("W1", f"stop, N={size}", "s", subject)
            gone = ctx.series("W1", f"stop until the manager has exited, N={size}", "s", subject)
            out += [start, stop, gone]
            for rep in range(ctx.repeats(3)):
                once = functools.partial(measure, ctx, subject, size, start, stop, gone)
                ctx.guarded(f"W1 N={size} {start.label} #{rep + 1}", [start, stop, gone], once)
    return out


def measure(ctx: Context, subject: Subject, size: int, start: Series, stop: Series, gone: Series) -> None:
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
        own = manager.own_pids()  # the manager and its helpers (a guardian, a daemon, a stats process)
        asked = time.monotonic()
        manager.stop()
        children_gone: float | None = None

        def everything_gone() -> bool:
            nonlocal children_gone
            if children_gone is None:
                if procs.sleepers(manager.token):
                    return False
                children_gone = time.monotonic()
            # A zombie main process has exited: the harness, its parent, reaps it below.
            return not any(procs.alive(pid) for pid in own)

        try:
            ended = procs.wait_for(everything_gone, STOP_LIMIT, "the children and the manager to go", POLL)
        except procs.Timeout:
            limit = f"{STOP_LIMIT:.0f} s"
            if children_gone is None:
                left = len(procs.sleepers(manager.token))
                stop.values.append(STOP_LIMIT)  # censored: the real figure is larger
                stop.note = f"{left} children still running {limit} after SIGTERM: counted as {limit}"
            else:
                stop.values.append(children_gone - asked)
            gone.values.append(STOP_LIMIT)
            gone.note = f"{manager.name} or a helper still running {limit} after SIGTERM: counted as {limit}"
            return
        assert children_gone is not None
        stop.values.append(children_gone - asked)
        gone.values.append(ended - asked)
        if not manager.wait_exit(30):
            gone.note = f"{manager.name} was still running 30 s after SIGTERM (killed)"
