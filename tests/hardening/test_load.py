"""The manager under load: 500 processes, 100 concurrent API clients, 20 open log streams."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

from processman.api.sse import EventParser
from tests.hardening.conftest import TOKEN, Record, Scale, Serve, child, tagged, wait_for

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def test_500_processes(serve_factory: Callable[..., Serve], figures: Record) -> None:
    count = 500
    processes = [
        {"id": f"p{i:03d}", "command": "sh", "args": ["-c", "echo up; exec sleep 3600"]} for i in range(count)
    ]
    began = time.monotonic()
    serve = serve_factory(processes)

    def all_running() -> dict[str, dict[str, Any]] | None:
        states = serve.states()
        return states if all(s["status"] == "running" for s in states.values()) else None

    states = wait_for(all_running, 60, "500 processes running", interval=0.2)
    up = time.monotonic() - began
    assert list(states) == [p["id"] for p in processes]  # config order
    assert len({s["pid"] for s in states.values()}) == count
    run_id = serve.run_id()
    assert len(tagged(f"{run_id}:")) == count
    usage = serve.usage()
    with serve.client() as client:
        latencies = []
        for _ in range(20):
            sent = time.perf_counter()
            assert client.get("/api/pm/list").status_code == 200
            latencies.append(time.perf_counter() - sent)
        log = client.get("/api/pm/p499/logs", params={"lines": 10}).json()
        assert [line["content"] for line in log] == ["up"]
        sent = time.perf_counter()
        assert client.post("/api/pm/p250/restart").status_code == 200
        restart = time.perf_counter() - sent
    began = time.monotonic()
    assert serve.stop(timeout=60) == 143
    stopped = time.monotonic() - began
    assert tagged(f"{run_id}:") == []
    figures("500 processes: serve start to all running", f"{up:.1f} s")
    figures(
        "500 processes: manager RSS, fds",
        f"{usage.rss_mb:.1f} MB ({usage.rss / count / 1024:.0f} KB a process), {usage.fds} fds",
    )
    figures(
        "500 processes: GET /list (500 states)",
        f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms",
    )
    figures("500 processes: one restart among 500", f"{restart * 1000:.0f} ms")
    figures("500 processes: SIGTERM to every tree gone", f"{stopped:.1f} s")


TICKER = """
import itertools, time
for i in itertools.count():
    print(f"tick {i}", flush=True)
    time.sleep(0.01)
"""


async def test_100_concurrent_api_clients(
    serve_factory: Callable[..., Serve], scale: Scale, figures: Record
) -> None:
    duration = scale.pick(5.0, 30.0)
    serve = serve_factory(
        [
            child("ticker", TICKER),
            child("steady", "import time\ntime.sleep(3600)"),
            child("victim", "import time\ntime.sleep(3600)"),
        ]
    )
    steady = serve.states()["steady"]["pid"]
    before = serve.usage()
    latencies: list[float] = []
    failures: list[str] = []
    started = asyncio.Event()
    deadline = 0.0

    # One TLS context for all: httpx builds one per client otherwise (50 ms each, for nothing on http).
    tls = ssl.create_default_context()

    async def client(number: int) -> None:
        rng = random.Random(number)
        async with httpx.AsyncClient(base_url=serve.url, headers=HEADERS, timeout=30, verify=tls) as http:
            await started.wait()
            while time.monotonic() < deadline:
                roll = rng.random()
                if roll < 0.01:
                    request = http.build_request("POST", "/api/pm/victim/restart")
                elif roll < 0.5:
                    request = http.build_request("GET", "/api/pm/list")
                else:
                    request = http.build_request("GET", "/api/pm/ticker/logs", params={"lines": 100})
                sent = time.perf_counter()
                try:
                    response = await http.send(request)
                except httpx.HTTPError as exc:
                    failures.append(f"{request.url.path}: {exc!r}")
                    continue
                latencies.append(time.perf_counter() - sent)
                if response.status_code != 200:
                    failures.append(f"{request.url.path}: HTTP {response.status_code} {response.text[:200]}")

    clients = [asyncio.create_task(client(number)) for number in range(100)]
    await asyncio.sleep(0)
    deadline = time.monotonic() + duration
    started.set()
    await asyncio.gather(*clients)
    assert failures == []
    states = serve.states()
    assert states["steady"]["pid"] == steady
    assert states["victim"]["status"] == "running"
    # The connections are gone once the clients are: no descriptor is held.
    wait_for(lambda: serve.usage().fds <= before.fds + 5, 10, "the connections to close")
    after = serve.usage()
    assert after.rss <= before.rss * 1.5, (before.rss, after.rss)
    latencies.sort()
    figures(
        f"100 API clients for {duration:.0f} s: requests",
        f"{len(latencies)} ({len(latencies) / duration:.0f}/s), no error",
    )
    figures(
        "100 API clients: latency",
        f"median {latencies[len(latencies) // 2] * 1000:.0f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms",
    )
    figures(
        "100 API clients: manager RSS before -> after", f"{before.rss_mb:.1f} MB -> {after.rss_mb:.1f} MB"
    )
    figures("100 API clients: manager CPU", f"{(after.cpu - before.cpu) / duration:.0%} of one core")


async def test_20_open_log_streams_lose_nothing_silently(
    serve_factory: Callable[..., Serve], scale: Scale, figures: Record
) -> None:
    duration = scale.pick(2.0, 30.0)
    burst = """
    import itertools, time
    for i in itertools.count():
        if i % 100 == 0:
            time.sleep(0.1)
        print(f"n {i}")
    """
    serve = serve_factory([child("chatty", burst)])
    before = serve.usage()
    results: list[tuple[int, int, int]] = []  # lines received, lines reported dropped, span of seqs
    tls = ssl.create_default_context()

    async def stream() -> None:
        parser = EventParser()
        seqs: list[int] = []
        dropped = 0
        async with (
            httpx.AsyncClient(base_url=serve.url, headers=HEADERS, timeout=30, verify=tls) as http,
            http.stream("GET", "/api/pm/chatty/logs", params={"follow": 1, "lines": 0}) as response,
        ):
            assert response.status_code == 200
            ends = time.monotonic() + duration
            async for line in response.aiter_lines():
                event = parser.feed(line)
                if event is None:
                    continue
                if event.event == "log":
                    seqs.append(json.loads(event.data)["seq"])
                elif event.event == "dropped":
                    dropped += json.loads(event.data)["count"]
                if time.monotonic() > ends:
                    break
        assert seqs == sorted(set(seqs)), "lines repeated or out of order"
        results.append((len(seqs), dropped, seqs[-1] - seqs[0] + 1))

    await asyncio.gather(*(stream() for _ in range(20)))
    for received, dropped, span in results:
        # Every line between the first and the last was either delivered or counted as dropped.
        assert received + dropped >= span, (received, dropped, span)
    wait_for(lambda: serve.usage().fds <= before.fds + 5, 10, "the streams to close")
    total = sum(received for received, _, _ in results)
    lost = sum(dropped for _, dropped, _ in results)
    figures(
        f"20 log streams for {duration:.0f} s on a bursty writer",
        f"{total} lines delivered ({total / duration / 20:.0f}/s a stream), {lost} reported dropped",
    )
