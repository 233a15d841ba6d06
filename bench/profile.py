"""Profile processman where it falls short: py-spy samples ``processman serve`` while a workload's action
runs, and the samples are summed per function (own time and inclusive time).

    python bench/profile.py stop     # W1: stopping 500 children
    python bench/profile.py logs     # W4: 500,000 lines through the log pipeline
    python bench/profile.py list     # W6: 200 GET /api/pm/list with 100 children
    python bench/profile.py idle     # W2: what runs while 100 children sleep
    python bench/profile.py memory   # W2: what the serve process's memory is made of

Reports go to bench/results/profile-<action>.txt (py-spy comes from the peers' venv).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import collections
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable

from bench import procs
from bench.managers.base import SLEEP, Manager, Program
from bench.managers.processman import Processman, processman_python
from bench.peers import BENCH_DIR, ensure_peers
from bench.workloads.context import Context
from bench.workloads.w4_logs import WRITER

RESULTS = BENCH_DIR / "results"
LINE_NUMBER = re.compile(r":\d+\)$")  # "f (file.py:12)" -> "f (file.py)": a function, not a line


def summarise(raw: Path, top: int = 25) -> str:
    """py-spy's raw output is one line per distinct stack: ``frame;frame;frame count``."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [LINE_NUMBER.sub(")", frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples of running code (idle waits left out)", "", "own time (the function itself):"]
    lines += [f"  {100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive time (the function or what it called):"]
    lines += [f"  {100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


def sample(manager: Manager, action: Callable[[], None], raw: Path, pyspy: Path) -> None:
    spy = subprocess.Popen(
        [
            str(pyspy),
            "record",
            "--pid",
            str(manager.main_pid()),
            "--rate",
            "500",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
            "--threads",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # py-spy attaches
    try:
        action()
    finally:
        spy.send_signal(signal.SIGINT)
        _, error = spy.communicate(timeout=60)
    if not raw.exists():
        raise RuntimeError(f"py-spy wrote nothing: {error.decode(errors='replace').strip()[-300:]}")


def profile_stop(ctx: Context, manager: Manager) -> Callable[[], None]:
    manager.launch([Program("s", (SLEEP, manager.token), count=500)])
    procs.wait_for(lambda: len(procs.sleepers(manager.token)) >= 500, 120, "500 children")
    time.sleep(1.0)

    def action() -> None:
        asked = time.monotonic()
        manager.stop()
        procs.wait_for(lambda: not procs.sleepers(manager.token), 120, "children to stop")
        ctx.log(f"stopped 500 children in {time.monotonic() - asked:.2f}s")
        time.sleep(0.3)

    return action


def profile_logs(ctx: Context, manager: Manager) -> Callable[[], None]:
    report = manager.workdir / "writer.time"
    go = manager.workdir / "go"
    # The writer waits for a file before writing, so py-spy is attached first.
    waiter = (
        "import os, runpy, sys, time\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
        "sys.argv = sys.argv[2:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    argv = (sys.executable, "-c", waiter, str(go), str(WRITER), "500000", str(report), manager.token)
    manager.launch([Program("w4", argv)], stdout_to_null=True)
    time.sleep(2.0)

    def action() -> None:
        go.write_text("")
        procs.wait_for(report.exists, 300, "the writer")
        ctx.log(f"writer took {float(report.read_text()):.3f}s")
        time.sleep(2.0)

    return action


def profile_list(ctx: Context, manager: Manager) -> Callable[[], None]:
    manager.launch([Program("s", (SLEEP, manager.token), count=100)])
    procs.wait_for(lambda: len(procs.sleepers(manager.token)) >= 100, 120, "100 children")
    time.sleep(2.0)

    def action() -> None:
        times = manager.api_queries(200) or []
        if times:
            ctx.log(f"200 list queries, median {sorted(times)[len(times) // 2] * 1000:.1f} ms")

    return action


def profile_idle(ctx: Context, manager: Manager) -> Callable[[], None]:
    manager.launch([Program("s", (SLEEP, manager.token), count=100)])
    procs.wait_for(lambda: len(procs.sleepers(manager.token)) >= 100, 120, "100 children")
    time.sleep(3.0)

    def action() -> None:
        before = procs.usage(manager.own_pids()).cpu
        time.sleep(30.0)
        ctx.log(f"30 s idle: {procs.usage(manager.own_pids()).cpu - before:.3f} CPU seconds")

    return action


MEMORY_PROBE = r"""
import os, sys
def usage():
    with open(f"/proc/{os.getpid()}/smaps_rollup") as f:
        return {l.split(":")[0]: int(l.split()[1]) / 1024 for l in f if l.split(":")[0] in ("Rss", "Pss")}
last = usage()
print(f"{'interpreter':34} RSS {last['Rss']:5.1f} MB  PSS {last['Pss']:5.1f} MB")
for name in sys.argv[1:]:
    __import__(name)
    now = usage()
    print(f"{'+ import ' + name:34} RSS {now['Rss']:5.1f} MB  PSS {now['Pss']:5.1f} MB"
          f"  (RSS +{now['Rss'] - last['Rss']:.1f}, PSS +{now['Pss'] - last['Pss']:.1f})")
    last = now
print(f"{len(sys.modules)} modules loaded")
"""

# In the order serve needs them; each line shows what that import adds on top of the ones before.
MEMORY_MODULES = [
    "ssl",
    "asyncio",
    "click",
    "processman.engine.manager",
    "processman.runner",
    "starlette.applications",
    "uvicorn",  # which imports watchfiles for its --reload supervisor
    "processman.api.app",
    "processman.cli",
    "processman.cli.serve",
]


def profile_memory(ctx: Context) -> str:
    manager = ctx.make(Processman, "defaults")
    try:
        manager.launch([Program("s", (SLEEP, manager.token), count=100)])
        procs.wait_for(lambda: len(procs.sleepers(manager.token)) >= 100, 120, "100 children")
        time.sleep(3.0)
        lines = ["processes of processman serve (N=100):"]
        for pid in sorted(manager.own_pids()):
            usage = procs.usage([pid])
            name = b" ".join(procs.argv(pid)[:4]).decode(errors="replace")[:70]
            lines.append(f"  pid {pid}: PSS {usage.pss / 1e6:5.1f} MB, RSS {usage.rss / 1e6:5.1f} MB  {name}")
    finally:
        ctx.release(manager)
    probe = subprocess.run(
        [processman_python(), "-c", MEMORY_PROBE, *MEMORY_MODULES],
        capture_output=True,
        text=True,
        check=False,
    )
    lines += ["", "resident memory as serve's imports are loaded one by one:", probe.stdout + probe.stderr]
    return "\n".join(lines)


ACTIONS: dict[str, Callable[[Context, Manager], Callable[[], None]]] = {
    "stop": profile_stop,
    "logs": profile_logs,
    "list": profile_list,
    "idle": profile_idle,
}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=[*ACTIONS, "memory"])
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # so the finally below still cleans up
    peers = ensure_peers()
    scratch = Path(tempfile.mkdtemp(prefix="pmprofile-"))
    ctx = Context(peers, scratch, managers=(Processman,))
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"profile-{args.action}.txt"
    try:
        if args.action == "memory":
            text = profile_memory(ctx)
        else:
            manager = ctx.make(Processman, "defaults")
            raw = scratch / "raw.txt"
            sample(manager, ACTIONS[args.action](ctx, manager), raw, peers.bin("py-spy"))
            text = summarise(raw)
    finally:
        ctx.release_all()
        ctx.sweep()
        shutil.rmtree(scratch, ignore_errors=True)
    target.write_text(text + "\n")
    print(text)
    print(f"\nwritten to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
