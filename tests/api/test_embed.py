"""The embedding example runs: a host Starlette app with the manager in its lifespan and the control
API mounted beside its own routes."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil

from tests.api.conftest import ROOT, free_port

EXAMPLE = ROOT / "examples" / "embed_starlette.py"


def test_the_embedding_example_serves_the_api_and_stops_cleanly() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PORT": str(port), "PROCESSMAN_TOKEN": "embed-token"}
    host = subprocess.Popen(
        [sys.executable, str(EXAMPLE)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                home = httpx.get(f"{url}/", timeout=1)
                if home.status_code == 200 and home.json()["running"] == ["worker"]:
                    break
            except httpx.TransportError:
                pass
            assert host.poll() is None, "the example exited"
            assert time.monotonic() < deadline, "the example did not come up"
            time.sleep(0.05)

        auth = {"Authorization": "Bearer embed-token"}
        states = httpx.get(f"{url}/api/pm/list", headers=auth).json()
        assert [state["id"] for state in states] == ["worker"]
        worker_pid = states[0]["pid"]
        assert httpx.get(f"{url}/api/pm/list").status_code == 401
        missing = httpx.post(f"{url}/api/pm/nope/restart", headers=auth)
        assert missing.json() == {"status": 404, "message": "Process not found.", "data": {}}

        # A live stream is open while the host stops: it must not hold the shutdown up.
        lines: queue.Queue[str] = queue.Queue()

        def follow() -> None:
            with httpx.stream("GET", f"{url}/api/pm/worker/logs?follow=1", headers=auth, timeout=30) as reply:
                for line in reply.iter_lines():
                    lines.put(line)
            lines.put("<end>")

        threading.Thread(target=follow, daemon=True).start()
        assert lines.get(timeout=10).startswith("retry:")
        started = time.monotonic()
        host.send_signal(signal.SIGINT)
        host.wait(timeout=15)
        assert time.monotonic() - started < 3
        while lines.get(timeout=5) != "<end>":
            pass
        assert (
            not psutil.pid_exists(worker_pid) or psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE
        )
        output = host.communicate()[0]
        assert "Exception in ASGI application" not in output
        assert "Application shutdown complete." in output
    finally:
        if host.poll() is None:
            host.kill()
            host.communicate()
