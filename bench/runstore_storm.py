"""What the run-history database costs under a restart storm, embedded processman.

    python bench/runstore_storm.py      # 10 processes, 10 s each way, 3 times; bench/results/runstore.json
    python bench/runstore_storm.py --processes 5 --seconds 5 --repeats 1

Each process runs ``true`` with ``minUptime: 0`` (every run counts as healthy, so it is restarted at
once) and ``keepRuns: 20``: a restart storm. It runs with the database (``state_dir/runs.sqlite3``,
written by its own thread) and without it (the store is not opened; log files are written both
times), alternately, ``--repeats`` times. Restart latency is when a run's child was spawned minus when
the run before it ended (the ``exit`` event's time): the reaping, the run's record, the restart
decision and the spawn. At the end, the database's size and its rows per process show whether
``keepRuns`` bounds it.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import json
import logging
import sqlite3
import statistics
import tempfile
import time
from typing import Any

from processman import ManagerOptions, ProcessConfig, ProcessManager
from processman.engine.events import Event, ProcessExited, RunRecorded
from processman.engine.runstore import FILE_NAME

RESULTS = Path(__file__).resolve().parent / "results" / "runstore.json"
KEEP_RUNS = 20


async def storm(processes: int, seconds: float, with_store: bool) -> dict[str, Any]:
    ended: dict[str, float] = {}
    latencies: list[float] = []

    def on_event(event: Event) -> None:
        if isinstance(event, ProcessExited):
            ended[event.process_id] = event.timestamp
        elif isinstance(event, RunRecorded) and event.run.outcome is None:
            last = ended.pop(event.process_id, None)
            if last is not None:
                latencies.append(event.run.started - last)

    configs = [
        ProcessConfig(id=f"storm{n}", command="true", min_uptime=0.0, keep_runs=KEEP_RUNS)
        for n in range(processes)
    ]
    with tempfile.TemporaryDirectory() as folder:
        manager = ProcessManager(configs, ManagerOptions(state_dir=Path(folder), log_output=False))
        if not with_store:

            async def no_store(path: Path) -> None:
                return None

            manager._open_run_store = no_store  # type: ignore[method-assign]  # the one difference
        manager.add_listener(on_event)
        async with manager:
            await asyncio.sleep(seconds)
        database = Path(folder) / FILE_NAME
        size = database.stat().st_size if database.exists() else 0
        rows: dict[str, int] = {}
        if database.exists():
            with sqlite3.connect(database) as connection:
                query = "SELECT process_id, COUNT(*) FROM runs GROUP BY process_id"
                rows = dict(connection.execute(query).fetchall())
    latencies.sort()
    ms = [value * 1000 for value in latencies]
    return {
        "store": with_store,
        "restarts": len(ms),
        "median_ms": round(statistics.median(ms), 3) if ms else None,
        "p95_ms": round(ms[int(len(ms) * 0.95) - 1], 3) if ms else None,
        "database_bytes": size,
        "most_rows_per_process": max(rows.values(), default=0),
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the repetitions; the database's largest size and row count."""
    return {
        "restarts_per_s": round(statistics.median(r["restarts"] for r in runs) / runs[0]["seconds"], 1),
        "median_ms": round(statistics.median(r["median_ms"] for r in runs), 3),
        "p95_ms": round(statistics.median(r["p95_ms"] for r in runs), 3),
        "database_bytes": max(r["database_bytes"] for r in runs),
        "most_rows_per_process": max(r["most_rows_per_process"] for r in runs),
        "repetitions": runs,
    }


def measure(processes: int, seconds: float, repeats: int) -> dict[str, Any]:
    logging.disable(logging.WARNING)  # every run logs its exit: thousands of lines
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for _ in range(repeats):  # alternately, so that the machine's other work falls on both
        for with_store in (True, False):
            result = asyncio.run(storm(processes, seconds, with_store))
            runs[with_store].append({**result, "seconds": seconds})
    return {
        "processes": processes,
        "seconds": seconds,
        "repeats": repeats,
        "keep_runs": KEEP_RUNS,
        "with_store": summary(runs[True]),
        "without_store": summary(runs[False]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = measure(args.processes, args.seconds, args.repeats)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
