"""The bridge's side of the protocol with the hooks, against a small HTTP server standing in for the three
secret-guarded routes (the real PocketBase is in test_serve.py; here the timing can be controlled)."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import config, wait_until
from tests.pocketbase.conftest import free_port

from processman import ManagerOptions, ProcessManager
from processman.environment import PocketBaseInfo
from processman.pocketbase.bridge import PocketBaseBridge
from processman.pocketbase.mirror import LogMirror, MirrorLimits

SECRET = "s3cr3t"


class Hooks:
    """Records what the bridge posts to /api/pm/register, /ingest and /broadcast."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.posts: list[tuple[str, dict[str, Any], float]] = []
        self.changed = threading.Condition()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.headers["X-PM-Secret"] != SECRET:
                    self.send_response(401)
                    self.end_headers()
                    return
                with hooks.changed:
                    hooks.posts.append((self.path, body, time.monotonic()))
                    hooks.changed.notify_all()
                self.send_response(204 if self.path == "/api/pm/register" else 200)
                self.send_header("Content-Length", "2" if self.path != "/api/pm/register" else "0")
                self.end_headers()
                if self.path != "/api/pm/register":
                    self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.changed:
            return [body for p, body, _ in self.posts if p == path]

    async def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 5) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {self.posts}")
            await asyncio.to_thread(self._wait_change, 0.1)
        return value

    def _wait_change(self, timeout: float) -> None:
        with self.changed:
            self.changed.wait(timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[ProcessManager]:
    code = "import sys, time\nprint('early bird')\nprint('oops', file=sys.stderr)\ntime.sleep(60)"
    manager = ProcessManager([config("early", code)], ManagerOptions(state_dir=tmp_path, log_output=False))
    await manager.start()
    try:
        yield manager
    finally:
        await manager.close()


def lines_of(hooks: Hooks) -> list[dict[str, Any]]:
    return [line for body in hooks.bodies("/api/pm/ingest") for line in body["lines"]]


async def test_registers_once_pocketbase_answers_and_sends_what_was_written_before(
    manager: ProcessManager,
) -> None:
    await wait_until(manager, lambda: len(manager.logs("early")) == 2, what="the early lines")
    port = free_port()
    info = PocketBaseInfo.from_address(f"127.0.0.1:{port}", "/data")
    bridge = PocketBaseBridge(info, SECRET, 4242, LogMirror(), watch_parent=False)
    ready = asyncio.Event()
    task = asyncio.create_task(bridge.run(manager, ready.set, lambda reason: None))
    await asyncio.sleep(0.3)  # PocketBase is not listening yet: the bridge keeps trying
    assert not ready.is_set()
    hooks = Hooks(port)
    try:
        await asyncio.wait_for(ready.wait(), 2)
        register = hooks.bodies("/api/pm/register")
        assert len(register) == 1 and register[0]["port"] == 4242
        sent = await hooks.wait(lambda: len(lines_of(hooks)) >= 2 and lines_of(hooks), "the early lines")
        early = [line for line in sent if line["attrs"].get("process") == "early"]
        assert [(line["level"], line["message"], line["attrs"]["stream"]) for line in early] == [
            ("info", "early bird", "stdout"),
            ("error", "oops", "stderr"),
        ]

        await manager.restart_process("early")
        events = await hooks.wait(
            lambda: [
                message["data"]
                for body in hooks.bodies("/api/pm/broadcast")
                for message in body["messages"]
                if message["data"].get("status") == "running"
            ],
            "a running event",
        )
        assert events[0]["id"] == "early" and events[0]["state"]["restartCount"] == 1
        assert hooks.bodies("/api/pm/broadcast")[-1]["stats"]["events"]["dropped"] == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        hooks.close()


async def test_batches_are_paced_to_the_rate_limit(tmp_path: Path) -> None:
    code = "import time\nfor i in range(50): print(i)\ntime.sleep(60)"
    manager = ProcessManager([config("burst", code)], ManagerOptions(state_dir=tmp_path, log_output=False))
    port = free_port()
    hooks = Hooks(port)
    mirror = LogMirror(MirrorLimits(batch_lines=10, interval=0.1))
    info = PocketBaseInfo.from_address(f"127.0.0.1:{port}", "/data")
    bridge = PocketBaseBridge(info, SECRET, 1, mirror, watch_parent=False)
    await manager.start()
    task = asyncio.create_task(bridge.run(manager, lambda: None, lambda reason: None))
    try:
        await hooks.wait(
            lambda: sum(1 for line in lines_of(hooks) if line["attrs"].get("process") == "burst") == 50,
            "all 50 lines",
        )
        times = [at for path, body, at in hooks.posts if path == "/api/pm/ingest"]
        assert len(times) >= 5
        # Never faster than batch_lines per interval: each batch starts an interval after the previous one
        # started (what the server sees jitters by the time a request takes).
        assert times[-1] - times[0] >= (len(times) - 1) * 0.1 - 0.05
        assert min(later - earlier for earlier, later in itertools.pairwise(times)) > 0.05
        assert mirror.stats()["notMirrored"] == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await manager.close()
        hooks.close()
