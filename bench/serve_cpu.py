"""Where ``processman serve`` spends its own CPU, measured exactly (``schedstat``, nanoseconds), not by
the 10 ms ticks of ``/proc/PID/stat``:

    python bench/serve_cpu.py idle            # 100 sleeping children, 30 s: CPU per thread of serve
    python bench/serve_cpu.py idle --children 1000    # the same with 1000 children
    python bench/serve_cpu.py burst           # W4's 500,000-line burst: serve's CPU, echo on and off
    python bench/serve_cpu.py idle --seconds 10 -- --http off    # extra arguments go to serve

``idle`` waits 5 s after the children are up, then sums serve's and its guardian's threads over
the idle period. ``burst`` starts W4's writer 1.5 s after serve (so serve's start-up is not counted)
and reads serve's CPU just before the burst and once the writer reports its time.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence

from bench.managers.base import free_port
from bench.managers.processman import processman_python
from bench.workloads.w4_logs import WRITER

TOKEN = "serve-cpu-token-0123456789abcdefghij"


def thread_cpu(pid: int) -> dict[str, float]:
    """Seconds on CPU of each thread of ``pid``, by ``pid/tid name``."""
    found: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            nanoseconds = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except OSError:
            continue
        found[f"{pid}/{tid} {name}"] = nanoseconds / 1e9
    return found


def children(pid: int) -> list[tuple[int, str]]:
    out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(pid)], capture_output=True, text=True)
    return [(int(line.split()[0]), line.split()[1]) for line in out.stdout.splitlines() if line.strip()]


def start_serve(
    folder: Path, entries: list[dict[str, object]], extra: Sequence[str]
) -> subprocess.Popen[bytes]:
    config = folder / "pb_processes.json"
    config.write_text(json.dumps(entries))
    argv = [processman_python(), "-m", "processman", "serve", "--config", str(config), "--dir", str(folder)]
    if "--http" not in extra:
        argv += ["--http", f"127.0.0.1:{free_port()}"]
    environment = {**os.environ, "PROCESSMAN_TOKEN": TOKEN}
    return subprocess.Popen(
        [*argv, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment
    )


def stop(serve: subprocess.Popen[bytes]) -> None:
    serve.send_signal(signal.SIGTERM)
    serve.wait(60)


def idle(seconds: float, count: int, extra: Sequence[str]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        entries: list[dict[str, object]] = [
            {"id": f"s{i}", "command": "sleep", "args": ["3600"]} for i in range(count)
        ]
        serve = start_serve(Path(scratch), entries, extra)
        try:
            deadline = time.monotonic() + 120
            while sum(1 for _, name in children(serve.pid) if name == "sleep") < count:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the {count} children did not start within 120 s")
                time.sleep(0.2)
            time.sleep(5.0)
            pids = [serve.pid, *(pid for pid, name in children(serve.pid) if name != "sleep")]
            before = {key: value for pid in pids for key, value in thread_cpu(pid).items()}
            time.sleep(seconds)
            after = {key: value for pid in pids for key, value in thread_cpu(pid).items()}
        finally:
            stop(serve)
    for key, value in after.items():
        print(f"  {key:40} {(value - before.get(key, 0.0)) * 1000:7.1f} ms")
    total = sum(after.values()) - sum(before.get(key, 0.0) for key in after)
    print(f"serve and its guardian, {seconds:.0f} s idle with {count} children: {total:.3f} CPU s")


def burst(lines: int, repeats: int, extra: Sequence[str]) -> None:
    for echo in ("--echo", "--no-echo"):
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as scratch:
                report = Path(scratch) / "writer.time"
                writer = f"sleep 1.5; exec {sys.executable} {WRITER} {lines} {report} 000000000"
                serve = start_serve(
                    Path(scratch), [{"id": "w4", "command": "sh", "args": ["-c", writer]}], [echo, *extra]
                )
                try:
                    time.sleep(1.2)
                    before = sum(thread_cpu(serve.pid).values())
                    while not report.exists():
                        time.sleep(0.01)
                    time.sleep(0.5)  # what is still in the pipe
                    used = sum(thread_cpu(serve.pid).values()) - before
                finally:
                    stop(serve)
                print(f"{echo:10} writer {float(report.read_text()):.3f} s   serve's CPU on it {used:.3f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["idle", "burst"])
    parser.add_argument("--seconds", type=float, default=30.0, help="idle: how long to measure")
    parser.add_argument("--children", type=int, default=100, help="idle: how many sleeping children")
    parser.add_argument("--lines", type=int, default=500_000, help="burst: lines the writer writes")
    parser.add_argument("--repeats", type=int, default=3, help="burst: runs with the echo on, and off")
    parser.add_argument("extra", nargs="*", help="arguments for serve (after --)")
    args = parser.parse_args(argv)
    if args.mode == "idle":
        idle(args.seconds, args.children, args.extra)
    else:
        burst(args.lines, args.repeats, args.extra)


if __name__ == "__main__":
    main()
