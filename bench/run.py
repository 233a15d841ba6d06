"""Run processman and its peers on the same workloads, on this machine, in one run.

    python bench/run.py                 # everything (~25 min), then docs/benchmarks.md and the charts
    python bench/run.py --quick         # one repetition, smaller sizes (~3 min); docs untouched
    python bench/run.py --only W1,W4    # some workloads; merged into bench/results/latest.json
    python bench/run.py --report        # no measuring: rewrite the docs from bench/results/latest.json
    python bench/run.py --only W1,W2,W3,W4,W5 --managers processman,processman-portable --no-docs
                                        # the portable backend beside the linux one (docs untouched)

Peers are installed on first use into bench/.peers/ (see bench/peers.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import atexit
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from types import FrameType

from bench import machine, report
from bench.managers import ALL, by_name
from bench.peers import BENCH_DIR, REPO_DIR, ensure_peers
from bench.results import Results, Series
from bench.workloads import (
    w1_fleet,
    w2_idle,
    w3_restart,
    w4_logs,
    w5_tree,
    w6_control,
    w7_reload,
)
from bench.workloads.context import Context

WORKLOADS: dict[str, Callable[[Context], list[Series]]] = {
    "W1": w1_fleet.run,
    "W2": w2_idle.run,
    "W3": w3_restart.run,
    "W4": w4_logs.run,
    "W5": w5_tree.run,
    "W6": w6_control.run,
    "W7": w7_reload.run,
}
RESULTS_DIR = BENCH_DIR / "results"
DOC = REPO_DIR / "docs" / "benchmarks.md"
CHART = REPO_DIR / "docs" / "benchmarks.png"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one repetition and smaller sizes (~3 min)")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W4")
    parser.add_argument("--managers", default="", help="comma-separated managers (default: all)")
    parser.add_argument("--report", action="store_true", help="only rewrite the docs from the saved results")
    parser.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write docs/benchmarks.md and .png (default: yes for a full run, no for --quick)",
    )
    args = parser.parse_args(argv)
    chosen = [w.strip().upper() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        parser.error(
            f"--only: unknown workload(s) {', '.join(unknown)}; expected some of {', '.join(WORKLOADS)}"
        )
    args.workloads = chosen
    try:
        args.kinds = tuple(by_name(n.strip()) for n in args.managers.split(",") if n.strip()) or ALL
    except ValueError as exc:
        parser.error(f"--managers: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    peers = ensure_peers()
    if args.report:
        saved = RESULTS_DIR / "latest.json"
        if not saved.exists():
            print(f"{saved} does not exist: run the benchmarks first", file=sys.stderr)
            return 1
        report.write(Results.load(saved), DOC, CHART, peers)
        print(f"wrote {DOC} and {CHART}")
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="pmbench-"))
    ctx = Context(peers, scratch, quick=args.quick, managers=args.kinds)

    def clean_up() -> None:
        ctx.release_all()
        ctx.sweep()
        shutil.rmtree(scratch, ignore_errors=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    atexit.register(clean_up)
    signal.signal(signal.SIGTERM, on_signal)
    results = Results(meta=machine.describe(peers, quick=args.quick))
    target = RESULTS_DIR / ("latest-quick.json" if args.quick else "latest.json")
    partial = args.workloads != list(WORKLOADS) or args.kinds != ALL
    merged = Results.load(target) if target.exists() and partial else Results()
    started = time.monotonic()
    try:
        for name in args.workloads:
            ctx.log(f"== {name}")
            began, load = time.monotonic(), os.getloadavg()[0]
            done = Results(meta=results.meta, series=WORKLOADS[name](ctx))
            ctx.log(f"== {name} took {time.monotonic() - began:.0f}s")
            # Other work on the machine shows here: the figures of a loaded machine are less exact.
            results.meta.setdefault("load", {})[name] = [round(load, 2), round(os.getloadavg()[0], 2)]
            results.meta["duration_s"] = round(time.monotonic() - started)
            results.meta["commit_at_end"] = machine.commit()
            merged.replace_workloads(done)
            merged.save(target)  # after each workload: an interrupted run keeps what it measured
    finally:
        clean_up()
    ctx.log(f"results: {target}")
    print(report.table_text(merged))
    if args.docs if args.docs is not None else not args.quick:
        report.write(merged, DOC, CHART, peers)
        ctx.log(f"wrote {DOC} and {CHART}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
