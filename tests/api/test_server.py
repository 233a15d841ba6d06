"""The HTTP service inside ``processman serve``: addresses, the token file, signals and shutdown."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from processman import ProcessManager
from processman.api import Address, AdminToken, ApiService, parse_address
from processman.api.token import ensure_token, read_token, token_path
from tests.api.conftest import TOKEN, free_port, serving
from tests.conftest import config


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:8091", Address("127.0.0.1", 8091)),
        ("0.0.0.0:80", Address("0.0.0.0", 80)),
        (":9000", Address("127.0.0.1", 9000)),
        ("9000", Address("127.0.0.1", 9000)),
        ("[::1]:8091", Address("::1", 8091)),
        ("localhost:0", Address("localhost", 0)),
    ],
)
def test_parse_address(text: str, address: Address) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "a b:80", "x:-1"])
def test_parse_address_rejects_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected HOST:PORT such as 127\.0\.0\.1:8091"):
        parse_address(text)


def test_address_urls() -> None:
    assert Address("127.0.0.1", 8091).url == "http://127.0.0.1:8091"
    assert Address("::1", 80).url == "http://[::1]:80"


# ---- the token file ----------------------------------------------------------------------------


def test_token_file_is_created_private_and_kept(tmp_path: Path) -> None:
    path = token_path(tmp_path)
    token = ensure_token(path)
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_token(path) == token
    assert ensure_token(path) == token, "a restart keeps the token"


def test_a_token_file_others_can_read_is_replaced(tmp_path: Path) -> None:
    path = token_path(tmp_path)
    token = ensure_token(path)
    path.chmod(0o644)
    fresh = ensure_token(path)
    assert fresh != token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_damaged_token_file_is_replaced(tmp_path: Path) -> None:
    path = token_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xfe short")
    path.chmod(0o600)
    assert read_token(path) is None
    token = ensure_token(path)
    assert read_token(path) == token


def test_the_listening_socket_is_tcp_so_nagle_is_off() -> None:
    # asyncio sets TCP_NODELAY only on sockets whose protocol is TCP; without it every answer waited
    # 40 ms for the client's delayed ACK.
    service = ApiService(Address("127.0.0.1", 0), AdminToken(TOKEN))
    with service.bind() as sock:
        assert sock.proto == socket.IPPROTO_TCP
        assert service.port == sock.getsockname()[1] != 0


async def test_answers_do_not_wait_for_delayed_acks(manager_factory: Callable[..., ProcessManager]) -> None:
    manager = manager_factory()
    async with (
        serving(manager, AdminToken(TOKEN)) as service,
        httpx.AsyncClient(base_url=service.url) as client,
    ):
        await client.get("/api/health")
        times = []
        for _ in range(21):
            started = time.perf_counter()
            await client.get("/api/health")
            times.append(time.perf_counter() - started)
    assert sorted(times)[10] < 0.035, f"median {sorted(times)[10] * 1000:.1f} ms: a delayed ACK is 40 ms"


async def test_the_date_header_is_current_although_nothing_ticks(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    manager = manager_factory()
    async with (
        serving(manager, AdminToken(TOKEN)) as service,
        httpx.AsyncClient(base_url=service.url) as client,
    ):
        await asyncio.sleep(1.1)  # the server has been idle across a change of second
        answered = time.time()
        date = email.utils.parsedate_to_datetime((await client.get("/api/health")).headers["date"])
    assert abs(date.timestamp() - answered) < 1.5


# ---- signals stay with the runner -----------------------------------------------------------------


async def test_the_service_installs_no_signal_handlers(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    manager = manager_factory(config("idle", "import time; time.sleep(3600)"))
    await manager.start()
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    async with serving(manager, AdminToken(TOKEN)) as service:
        during = {signum: signal.getsignal(signum) for signum in before}
        async with httpx.AsyncClient(base_url=service.url, headers={"Authorization": TOKEN}) as client:
            assert (await client.get("/api/pm/list")).status_code == 200
    after = {signum: signal.getsignal(signum) for signum in before}
    assert before == during == after


# ---- the real ``processman serve`` ----------------------------------------------------------------


def start_serve(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    ticker = textwrap.dedent(
        """
        import itertools, time
        for i in itertools.count():
            print("tick", i, flush=True)
            time.sleep(0.1)
        """
    )
    (folder / "pb_processes.json").write_text(
        json.dumps([{"id": "ticker", "command": sys.executable, "args": ["-c", ticker]}])
    )
    environ = {key: value for key, value in os.environ.items() if key != "PROCESSMAN_TOKEN"}
    return subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(folder), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**environ, **(env or {})},
    )


class Output:
    """Collects a child's output in a thread, so a test can wait for a line without blocking."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        stream = process.stdout
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Iterator[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} within {timeout}s:\n{self.text}") from None
            if line is None:
                raise AssertionError(f"output ended without {text!r}:\n{self.text}")
            self.lines.append(line)
            if text in line:
                return line

    def rest(self) -> str:
        self._thread.join(timeout=15)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return self.text

    @property
    def text(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], Output]]]:
    started: list[tuple[subprocess.Popen[str], Output]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], Output]:
        process = start_serve(tmp_path, *args, env=env)
        started.append((process, Output(process)))
        return started[-1]

    yield start
    for process, output in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        output.rest()
        assert process.stdout is not None
        process.stdout.close()


def test_serve_writes_a_private_token_and_says_where_never_what(
    tmp_path: Path, serve_process: Callable[..., tuple[subprocess.Popen[str], Output]]
) -> None:
    port = free_port()
    process, output = serve_process("--http", f"127.0.0.1:{port}")
    line = output.wait_for("API listening on")
    path = tmp_path / "processman" / "token"
    assert line.rstrip().endswith(f"API listening on http://127.0.0.1:{port} (token in {path})")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    response = httpx.get(f"http://127.0.0.1:{port}/api/pm/list", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json()[0]["id"] == "ticker"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 128 + signal.SIGINT
    assert token not in output.rest()


def test_serve_uses_processman_token_from_the_environment(
    tmp_path: Path, serve_process: Callable[..., tuple[subprocess.Popen[str], Output]]
) -> None:
    port = free_port()
    _, output = serve_process("--http", f"127.0.0.1:{port}", env={"PROCESSMAN_TOKEN": TOKEN})
    assert "(token in $PROCESSMAN_TOKEN)" in output.wait_for("API listening on")
    assert not (tmp_path / "processman" / "token").exists()
    url = f"http://127.0.0.1:{port}/api/pm/list"
    assert httpx.get(url, headers={"Authorization": TOKEN}).status_code == 200
    assert TOKEN not in output.text


def test_ctrl_c_with_open_streams_exits_promptly(
    serve_process: Callable[..., tuple[subprocess.Popen[str], Output]],
) -> None:
    port = free_port()
    process, output = serve_process("--http", f"127.0.0.1:{port}", env={"PROCESSMAN_TOKEN": TOKEN})
    output.wait_for("API listening on")
    ended: queue.Queue[str] = queue.Queue()

    def follow(path: str) -> None:
        url = f"http://127.0.0.1:{port}{path}"
        try:
            with httpx.stream("GET", url, headers={"Authorization": TOKEN}, timeout=30) as response:
                for _ in response.iter_lines():
                    pass
            ended.put("ended")
        except httpx.HTTPError as exc:
            ended.put(f"error: {exc!r}")

    for path in ("/api/pm/events", "/api/pm/ticker/logs?follow=1"):
        threading.Thread(target=follow, args=(path,), daemon=True).start()
    output.wait_for("| tick 3")
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 128 + signal.SIGINT
    assert time.monotonic() - started < 10  # open streams must not hold shutdown to a timeout
    assert [ended.get(timeout=5), ended.get(timeout=5)] == ["ended", "ended"]
    assert "stopped" in output.rest()


def test_a_busy_port_fails_before_any_process_starts(
    serve_process: Callable[..., tuple[subprocess.Popen[str], Output]],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process, output = serve_process("--http", f"127.0.0.1:{port}")
        assert process.wait(timeout=15) == 1
    text = output.rest()
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in text
    assert "started pid" not in text


def test_a_bad_http_address_is_a_usage_error(
    serve_process: Callable[..., tuple[subprocess.Popen[str], Output]],
) -> None:
    process, output = serve_process("--http", "localhost:http")
    assert process.wait(timeout=15) == 2
    assert "expected HOST:PORT such as 127.0.0.1:8091, got 'localhost:http'" in output.rest()


def test_http_off_serves_nothing(
    tmp_path: Path, serve_process: Callable[..., tuple[subprocess.Popen[str], Output]]
) -> None:
    process, output = serve_process("--http", "off")
    output.wait_for("| tick 0")
    assert "API listening" not in output.text
    assert not (tmp_path / "processman" / "token").exists()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 128 + signal.SIGTERM
