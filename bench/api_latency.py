"""Latency of the control API with 200 processes: GET /api/pm/list and GET /api/pm/{id}/logs.

    python bench/api_latency.py                     # 200 processes, 500 requests per route
    python bench/api_latency.py --processes 500 --requests 1000 --json results.json

It starts a real ``processman serve`` on a free 127.0.0.1 port with N small Python children that each
wrote 1000 lines, then times sequential requests from one keep-alive client (p50, p90, p99, max).
It does this twice: with quiet children, and with every child writing 10 lines a second, so the
server is also capturing output while it answers. SPEC 8 (seed SC-005) asks for well under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

TOKEN = "bench-token-0123456789abcdefghijklmnop"
# 1000 lines at once, then (when the rate is above 0) a line every 1/rate seconds; python -S keeps the
# 200 children small, and one process per child means no fork per line.
CHILD = """
import sys, time
rate = float(sys.argv[1])
sys.stdout.write("".join(f"backlog line {i} of a sidecar that talks a little\\n" for i in range(1000)))
sys.stdout.flush()
i = 1000
while True:
    time.sleep(1 / rate if rate else 3600)
    print(f"live line {i}", flush=True)
    i += 1
"""


@dataclass
class Timing:
    scenario: str
    route: str
    requests: int
    bytes: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(round(fraction * (len(ordered) - 1)), len(ordered) - 1)]


def start_server(folder: Path, processes: int, rate: float) -> tuple[subprocess.Popen[bytes], str]:
    config = [
        {"id": f"sidecar-{n:03d}", "command": sys.executable, "args": ["-S", "-c", CHILD, str(rate)]}
        for n in range(processes)
    ]
    (folder / "pb_processes.json").write_text(json.dumps(config))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(folder), "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PROCESSMAN_TOKEN": TOKEN},
    )
    return server, f"http://127.0.0.1:{port}"


def wait_ready(client: httpx.Client, server: subprocess.Popen[bytes], processes: int) -> None:
    """Every process running and every backlog written (the last process has 1000 lines)."""
    deadline = time.monotonic() + 120
    last = f"sidecar-{processes - 1:03d}"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"processman serve exited with {server.returncode}")
        try:
            states = client.get("/api/pm/list").json()
            running = sum(state["status"] == "running" for state in states)
            lines = client.get(f"/api/pm/{last}/logs", params={"lines": 1000}).json()
            if running == processes and len(lines) == 1000:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not get ready within 120 s")


def measure(
    client: httpx.Client, scenario: str, route: str, path: str, params: dict[str, str], count: int
) -> Timing:
    for _ in range(20):  # warm-up: connections, caches
        client.get(path, params=params).raise_for_status()
    times: list[float] = []
    size = 0
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(path, params=params)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        size = len(response.content)
    return Timing(
        scenario,
        route,
        count,
        size,
        round(statistics.median(times), 2),
        round(percentile(times, 0.90), 2),
        round(percentile(times, 0.99), 2),
        round(max(times), 2),
    )


def run_scenario(scenario: str, processes: int, rate: float, count: int) -> list[Timing]:
    folder = Path(tempfile.mkdtemp(prefix="processman-api-bench-"))
    server, url = start_server(folder, processes, rate)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30, trust_env=False) as client:
            wait_ready(client, server, processes)
            middle = f"/api/pm/sidecar-{processes // 2:03d}/logs"
            return [
                measure(client, scenario, "GET /api/pm/list", "/api/pm/list", {}, count),
                measure(client, scenario, "GET /api/pm/{id}/logs (100 lines)", middle, {}, count),
                measure(
                    client, scenario, "GET /api/pm/{id}/logs?lines=1000", middle, {"lines": "1000"}, count
                ),
            ]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--requests", type=int, default=500, help="timed requests per route")
    parser.add_argument("--rate", type=float, default=10.0, help="lines/s per child in the second scenario")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    results = run_scenario("quiet children", args.processes, 0, args.requests)
    chatty = f"each child writing {args.rate:g} lines/s"
    results += run_scenario(chatty, args.processes, args.rate, args.requests)

    print(
        f"\nprocessman control API, {args.processes} processes, {args.requests} sequential requests per route"
    )
    cores = os.cpu_count()
    print(f"{cores} cores; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    row = "{:<32} {:<36} {:>8} {:>8} {:>8} {:>8} {:>8}"
    print(row.format("scenario", "route", "bytes", "p50 ms", "p90 ms", "p99 ms", "max ms"))
    for t in results:
        figures = (f"{t.p50_ms:.2f}", f"{t.p90_ms:.2f}", f"{t.p99_ms:.2f}", f"{t.max_ms:.2f}")
        print(row.format(t.scenario, t.route, t.bytes, *figures))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(t) for t in results], indent=2))


if __name__ == "__main__":
    main()
