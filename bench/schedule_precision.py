"""How late a due run starts: N jobs due at the same second (a cron minute), embedded processman.

    python bench/schedule_precision.py              # 100 jobs, 2 minutes; bench/results/schedule.json
    python bench/schedule_precision.py --jobs 10 --minutes 1

Each job is ``{"cron": "* * * * *"}`` running ``true``. A run's lateness is when its child was spawned
(the run's ``started``, taken just after the fork) minus the minute it was due at: the timer's wake-up,
the owner's turn on the event loop and the spawn, for every job of the minute in turn. Runs with the
default containment of this machine (cgroups where they can be created).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import json
import math
import statistics
import tempfile
import time

from processman import ManagerOptions, ProcessConfig, ProcessManager
from processman.config import Schedule
from processman.engine.events import Event, RunRecorded

RESULTS = Path(__file__).resolve().parent / "results" / "schedule.json"


async def measure(jobs: int, minutes: int) -> dict[str, object]:
    starts: list[tuple[float, float]] = []  # (due minute, started)

    def on_event(event: Event) -> None:
        if isinstance(event, RunRecorded) and event.run.outcome is None:
            started = event.run.started
            starts.append((math.floor(started / 60) * 60, started))

    schedule = Schedule(cron="* * * * *")
    configs = [ProcessConfig(id=f"job{n}", command="true", schedule=schedule) for n in range(jobs)]
    with tempfile.TemporaryDirectory() as folder:
        manager = ProcessManager(configs, ManagerOptions(state_dir=Path(folder), log_output=False))
        manager.add_listener(on_event)
        async with manager:
            containment = manager.containment.name
            deadline = time.time() + 60 * minutes + 65
            while len(starts) < jobs * minutes and time.time() < deadline:
                await asyncio.sleep(0.5)
    late = sorted(started - due for due, started in starts)
    return {
        "jobs": jobs,
        "minutes": minutes,
        "runs": len(late),
        "containment": containment,
        "median_ms": round(statistics.median(late) * 1000, 2) if late else None,
        "p95_ms": round(late[int(len(late) * 0.95) - 1] * 1000, 2) if late else None,
        "worst_ms": round(late[-1] * 1000, 2) if late else None,
        "first_ms": round(late[0] * 1000, 2) if late else None,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--minutes", type=int, default=2)
    args = parser.parse_args()
    result = asyncio.run(measure(args.jobs, args.minutes))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
