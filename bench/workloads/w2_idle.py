"""W2 idle cost: with N children running (N = 10, 100, 1000: the cost curve), the manager's own memory
(all its processes, not the children) and the CPU seconds it spends over an idle period.

All managers idle at the same time: an idle manager barely runs, CPU time is counted per process, and
memory does not depend on the neighbours, so this costs one idle period per repetition instead of one
per manager."""

from __future__ import annotations

import functools
import time

from bench import procs
from bench.managers.base import SLEEP, Manager, Program
from bench.results import Series
from bench.workloads.context import Context

SIZES = (10, 100, 1000)
MB = 1_000_000


def run(ctx: Context) -> list[Series]:
    idle = 5.0 if ctx.quick else 30.0
    out: list[Series] = []
    for size in (100,) if ctx.quick else SIZES:
        table: dict[str, list[Series]] = {}
        series: list[Series] = []
        for subject in ctx.subjects("W2", size=size):
            row = [
                ctx.series("W2", f"memory (PSS), N={size}", "MB", subject),
                ctx.series("W2", f"memory (RSS), N={size}", "MB", subject),
                ctx.series("W2", f"CPU over {idle:.0f}s idle, N={size}", "s", subject),
            ]
            table[subject[0].label_for(subject[1])] = row
            series += row
        out += series
        # N=100 is the headline figure: three repetitions; the other sizes of the curve two.
        for rep in range(ctx.repeats(3 if size == 100 else 2)):
            once = functools.partial(measure, ctx, idle, size, table)
            ctx.guarded(f"W2 N={size} all managers #{rep + 1}", series, once)
    return out


def measure(ctx: Context, idle: float, size: int, table: dict[str, list[Series]]) -> None:
    managers: list[Manager] = []
    try:
        for kind, variant in ctx.subjects("W2", size=size):
            manager = ctx.make(kind, variant)
            managers.append(manager)
            manager.launch([Program("s", (SLEEP, manager.token), count=size)])
        for manager in managers:
            up = functools.partial(all_up, manager, size)
            procs.wait_for(up, 300, f"{size} children of {manager.label}", 0.1)
        time.sleep(1.0 if ctx.quick else 5.0)  # let start-up work finish
        before = {manager.label: procs.usage(manager.own_pids()).cpu for manager in managers}
        time.sleep(idle)
        for manager in managers:
            own = manager.own_pids()
            usage = procs.usage(own)
            pss, rss, cpu = table[manager.label]
            pss.values.append(usage.pss / MB)
            rss.values.append(usage.rss / MB)
            cpu.values.append(usage.cpu - before[manager.label])
            pss.note = f"{len(own)} process(es)"
    finally:
        for manager in managers:
            ctx.release(manager)
        ctx.check_clean()


def all_up(manager: Manager, size: int) -> bool:
    return len(procs.sleepers(manager.token)) >= size
