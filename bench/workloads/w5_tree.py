"""W5 tree cleanup: 20 children, each with a grandchild in its process group and a double-forked
daemon in a session of its own (60 processes). Stop the manager normally, or kill it with SIGKILL, and
count the survivors 5 seconds later.

The escape cases: 20 children, each with two descendants that hide as real programs do (40 hidden
processes; ``children/escape.py``): one leaves its session and drops ``PROCESSMAN_TAG``, one leaves its
session and rewrites its process title (``setproctitle``, which wipes its environment). They are
counted by the pid files they write, since nothing else names them.

Survivors are counted, not timed, so all managers run side by side: one 5 s wait per repetition."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from pathlib import Path

from bench import procs
from bench.managers.base import SLEEP, Manager, Program
from bench.results import Series
from bench.workloads.context import Context

CHILDREN = 20
TREE = Path(__file__).resolve().parent.parent / "children" / "tree.py"
ESCAPE = Path(__file__).resolve().parent.parent / "children" / "escape.py"
CASES = {
    "stop": "survivors after a normal stop",
    "sigkill": "survivors after SIGKILL of the manager",
    "escape-stop": "hidden survivors after a normal stop",
    "escape-sigkill": "hidden survivors after SIGKILL of the manager",
}


def run(ctx: Context) -> list[Series]:
    wait = 5.0
    out: list[Series] = []
    for case, metric in CASES.items():
        table: dict[str, Series] = {}
        for subject in ctx.subjects("W5"):
            size = CHILDREN * 2 if case.startswith("escape") else CHILDREN * 3
            item = ctx.series("W5", f"{metric} ({size} processes)", "processes", subject)
            table[item.label] = item
            out.append(item)
        for rep in range(ctx.repeats(3)):
            once = functools.partial(measure, ctx, case, wait, table)
            ctx.guarded(f"W5 {case} #{rep + 1}", list(table.values()), once)
    return out


def members(manager: Manager) -> int:
    """Live workload processes: the Python children, their grandchildren and the daemons (not the shell
    honcho wraps each command in)."""
    count = 0
    for pid in procs.with_token(manager.token):
        words = procs.argv(pid)  # [] when it exited meanwhile
        if words and not words[0].endswith(b"sh"):
            count += 1
    return count


def hidden(folder: Path) -> list[int]:
    """The live hidden descendants, from the pid files they wrote."""
    pids = [int(name.rsplit("-", 1)[1]) for name in os.listdir(folder)] if folder.is_dir() else []
    return [pid for pid in pids if procs.alive(pid)]


def measure(ctx: Context, case: str, wait: float, table: dict[str, Series]) -> None:
    managers: list[Manager] = []
    escape = case.startswith("escape")
    folders: dict[str, Path] = {}
    try:
        for kind, variant in ctx.subjects("W5"):
            manager = ctx.make(kind, variant)
            managers.append(manager)
            if escape:
                folder = folders[manager.label] = ctx.scratch / f"hidden-{manager.token}"
                argv: tuple[str, ...] = (sys.executable, str(ESCAPE), SLEEP, manager.token, str(folder))
            else:
                argv = (sys.executable, str(TREE), SLEEP, manager.token)
            manager.launch([Program("tree", argv, count=CHILDREN)])
        for manager in managers:
            if escape:
                ready = functools.partial(lambda f: len(hidden(f)) >= CHILDREN * 2, folders[manager.label])
                procs.wait_for(ready, 120, f"{CHILDREN * 2} hidden processes under {manager.label}", 0.1)
            else:
                full = functools.partial(lambda m: members(m) >= CHILDREN * 3, manager)
                procs.wait_for(full, 120, f"{CHILDREN * 3} processes under {manager.label}", 0.1)
        time.sleep(0.5)
        helpers = {manager.label: manager.own_pids() - {manager.main_pid()} for manager in managers}
        for manager in managers:
            if case == "stop":
                manager.stop()
            else:
                manager.kill_main()
        time.sleep(wait)
        for manager in managers:
            item = table[manager.label]
            item.values.append(len(hidden(folders[manager.label])) if escape else members(manager))
            left = [pid for pid in helpers[manager.label] if procs.alive(pid)]
            if left:
                item.note = f"{len(left)} of the manager's own helper process(es) still running"
    finally:
        for manager in managers:
            ctx.release(manager)
        for folder in folders.values():  # nothing else can find them
            for pid in hidden(folder):
                os.kill(pid, signal.SIGKILL)
        ctx.check_clean()
