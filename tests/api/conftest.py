"""Shared helpers of the API tests: a real manager with real children, the real uvicorn service on a
free 127.0.0.1 port in the test's own event loop, raw HTTP for requests httpx would tidy up, SSE
reading, and a real PocketBase for superuser checks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from processman import ManagerOptions, ProcessManager
from processman.api import Address, AdminToken, ApiService, Authenticator
from processman.api.sse import EventParser, ServerSentEvent
from processman.engine.states import Status
from tests.conftest import config, tagged_processes, wait_until
from tests.conftest import free_port as free_port

ROOT = Path(__file__).resolve().parents[2]
POCKETBASE = ROOT / ".venv" / "bin" / "pocketbase"
TOKEN = "api-test-token-0123456789abcdefghijklmnop"

TICKER = """
import itertools, time
for i in itertools.count():
    print(f"tick {i}", flush=True)
    time.sleep(0.1)
"""
ECHO = """
import sys, time
for i in range(1200):
    print(f"line {i}")
print("the last line", file=sys.stderr)
sys.stdout.flush(); sys.stderr.flush()
time.sleep(3600)
"""
IDLE = "import time; time.sleep(3600)"
SECRET_VALUE = "sk-live-do-not-leak-42"


@dataclass
class Served:
    manager: ProcessManager
    service: ApiService
    url: str
    client: httpx.AsyncClient  # sends the admin token

    async def raw(self, request: bytes) -> tuple[int, dict[str, Any] | None, bytes]:
        return await raw_http(self.service.port, request)


@contextlib.asynccontextmanager
async def serving(
    manager: ProcessManager, authenticator: Authenticator, **options: Any
) -> AsyncIterator[ApiService]:
    """Runs the API service as ``processman serve`` does, until the block ends (then cancels it, as the
    runner does, and checks that it stopped cleanly)."""
    service = ApiService(Address("127.0.0.1", 0), authenticator, **options)
    ready = asyncio.Event()
    stops: list[str] = []
    task = asyncio.create_task(service.run(manager, ready.set, stops.append))
    waiter = asyncio.create_task(ready.wait())
    try:
        await asyncio.wait([task, waiter], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()
        assert ready.is_set(), "the API service did not become ready within 10 s"
        yield service
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(10):
                await task
    assert stops == []


async def running(manager: ProcessManager, *ids: str) -> None:
    await wait_until(
        manager,
        lambda: all(manager.state(i).status is Status.RUNNING for i in ids),
        what=f"{ids} running",
    )


@contextlib.asynccontextmanager
async def served_processes(folder: Path) -> AsyncIterator[Served]:
    """Processes ``ticker`` (a line every 0.1 s), ``echo`` (1200 lines then quiet), ``idle`` (silent,
    with secrets in its env), served with the admin token ``TOKEN``; every tree is gone afterwards."""
    manager = ProcessManager(
        [
            config("ticker", TICKER),
            config("echo", ECHO),
            config("idle", IDLE, env={"API_KEY": SECRET_VALUE, "DB_PASSWORD": SECRET_VALUE, "MODE": "plain"}),
        ],
        ManagerOptions(state_dir=folder / "state", log_output=False),
    )
    try:
        await manager.start()
        await running(manager, "ticker", "echo", "idle")
        await wait_until(manager, lambda: manager.last_log_seq("echo") >= 1201, what="echo's lines")
        async with serving(manager, AdminToken(TOKEN)) as service:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=15) as client:
                yield Served(manager, service, service.url, client)
    finally:
        await manager.close()
    assert tagged_processes(f"{manager.run_id}:") == [], "processes were left behind"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with served_processes(tmp_path) as instance:
        yield instance


# ---- raw HTTP: requests that httpx would normalise (dot segments, encodings) --------------------------


async def raw_http(port: int, request: bytes) -> tuple[int, dict[str, Any] | None, bytes]:
    """Sends ``request`` as is; returns the status, the JSON body (if any) and the raw body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return status, parsed if isinstance(parsed, dict) else None, body


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def request_bytes(method: str, target: str, *, token: str | None = TOKEN, extra: str = "") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{extra}Connection: close\r\n\r\n".encode()


def assert_error(body: dict[str, Any] | None, status: int) -> None:
    """PocketBase's error shape, exactly these keys."""
    assert body is not None
    assert set(body) == {"status", "message", "data"}, body
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["data"], dict)


# ---- Server-Sent Events ------------------------------------------------------------------------


class EventReader:
    """Reads events from an open streaming response, with a deadline per event."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parser = EventParser()
        self.comments: list[str] = []
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 10.0) -> ServerSentEvent:
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line.startswith(":"):
                    self.comments.append(line)
                event = self.parser.feed(line)
                if event is not None:
                    return event
        raise EOFError("the stream ended")

    async def until(
        self, predicate: Callable[[ServerSentEvent], bool], timeout: float = 10.0
    ) -> ServerSentEvent:
        deadline = time.monotonic() + timeout
        while True:
            event = await self.next(max(deadline - time.monotonic(), 0.01))
            if predicate(event):
                return event

    async def logs(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        while len(lines) < count:
            event = await self.next(timeout)
            assert event.event == "log", event
            lines.append(json.loads(event.data))
        return lines


# ---- a real PocketBase ---------------------------------------------------------------------------


@dataclass
class PocketBase:
    url: str
    superuser_token: str
    user_token: str
    process: subprocess.Popen[bytes]


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"PocketBase exited with {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"PocketBase at {url} did not become healthy within {timeout}s")


@contextlib.contextmanager
def pocketbase(folder: Path) -> Iterator[PocketBase]:
    """A real PocketBase with a superuser and a regular user, both signed in."""
    data = folder / "pb_data"
    email, password = "admin@example.com", "Sup3rSecret!pass"
    subprocess.run(
        [str(POCKETBASE), "superuser", "upsert", email, password, "--dir", str(data)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    url = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [str(POCKETBASE), "serve", "--http", url.removeprefix("http://"), "--dir", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_healthy(url, process)
        with httpx.Client(base_url=url, timeout=10) as client:
            login = {"identity": email, "password": password}
            answer = client.post("/api/collections/_superusers/auth-with-password", json=login)
            superuser = answer.raise_for_status().json()["token"]
            user = {
                "email": "user@example.com",
                "password": "user-pass-123",
                "passwordConfirm": "user-pass-123",
            }
            made = client.post(
                "/api/collections/users/records", json=user, headers={"Authorization": superuser}
            )
            made.raise_for_status()
            login = {"identity": user["email"], "password": user["password"]}
            answer = client.post("/api/collections/users/auth-with-password", json=login)
            user_token = answer.raise_for_status().json()["token"]
        yield PocketBase(url, superuser, user_token, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
