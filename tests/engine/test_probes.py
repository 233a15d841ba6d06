"""Readiness and liveness probes (HTTP, TCP, command) against real servers and real processes."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from processman import ProcessConfig, ProcessManager, Status
from processman.api.wire import exit_to_json, state_to_json
from processman.config import Probe
from processman.engine.events import LogLines, StatusChanged
from processman.engine.probes import ProbeSite, run_probe
from tests.conftest import alive, config, free_port, wait_until

Factory = Callable[..., ProcessManager]
SLEEPER = "import time\nwhile True: time.sleep(1)"

# An HTTP server that starts listening only after a delay, and says so on stdout.
SLOW_HTTP_SERVER = """
import http.server, time
time.sleep({delay})

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", {port}), Health)
print("listening", flush=True)
server.serve_forever()
"""


@pytest.fixture
def closed_port() -> Iterator[int]:
    with refusing_port() as port:
        yield port


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A port that refuses connections meanwhile: bound (so nobody else takes it), not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def http_server(process_id: str, port: int, delay: float = 0.0, **fields: object) -> ProcessConfig:
    return config(process_id, SLOW_HTTP_SERVER.format(port=port, delay=delay), **fields)


@contextlib.asynccontextmanager
async def answering(status: int | None) -> AsyncIterator[int]:
    """A real HTTP server on 127.0.0.1 that answers every GET with ``status``. None: a socket that
    accepts connections (the kernel completes them) and never answers."""
    if status is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            yield int(sock.getsockname()[1])
        return

    answer = status

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        await asyncio.to_thread(server.shutdown)
        thread.join()
        server.server_close()


# ---- one probe ------------------------------------------------------------------------------------
# Probes that should pass get a long timeout: a loaded machine must not fail them.


async def test_http_probe_passes_on_the_expected_status_and_says_what_it_got_otherwise(
    closed_port: int,
) -> None:
    async with answering(200) as port:
        assert await run_probe(Probe("http", f"http://127.0.0.1:{port}/health", timeout=5)) is None
        reason = await run_probe(Probe("http", f"http://127.0.0.1:{port}/health", status=204, timeout=5))
        assert reason == f"HTTP 200 from http://127.0.0.1:{port}/health (expected 204)"
    async with answering(503) as port:
        reason = await run_probe(Probe("http", f"http://127.0.0.1:{port}/", timeout=5))
        assert reason == f"HTTP 503 from http://127.0.0.1:{port}/ (expected 200)"
    reason = await run_probe(Probe("http", f"http://127.0.0.1:{closed_port}/health", timeout=5))
    assert reason == f"connection refused on 127.0.0.1:{closed_port}"


async def test_a_probe_that_gets_no_answer_times_out() -> None:
    async with answering(None) as port:
        loop = asyncio.get_running_loop()
        begun = loop.time()
        reason = await run_probe(Probe("http", f"http://127.0.0.1:{port}/", timeout=0.2))
        assert reason == "timed out after 200ms"
        assert loop.time() - begun < 2


async def test_tcp_probe_connects_or_says_refused(closed_port: int) -> None:
    async with answering(200) as port:
        assert await run_probe(Probe("tcp", f"127.0.0.1:{port}", timeout=5)) is None
    assert (
        await run_probe(Probe("tcp", f"127.0.0.1:{closed_port}", timeout=5))
        == f"connection refused on 127.0.0.1:{closed_port}"
    )


async def test_command_probe_exit_codes_and_missing_commands(tmp_path: Path) -> None:
    site = ProbeSite(cwd=tmp_path)
    assert await run_probe(Probe("command", command=("true",), timeout=5), site=site) is None
    reason = await run_probe(Probe("command", command=("sh", "-c", "exit 3"), timeout=5), site=site)
    assert reason == "command sh -c 'exit 3' exited with code 3"
    reason = await run_probe(Probe("command", command=("no-such-probe-command",), timeout=5), site=site)
    assert reason == "command 'no-such-probe-command' not found"
    assert site.owned_pids == set()


async def test_command_probe_runs_in_the_given_folder_and_environment(tmp_path: Path) -> None:
    (tmp_path / "flag").write_text("x")
    probe = Probe("command", command=("sh", "-c", 'test -f flag && test "$PROBE_VALUE" = yes'))
    site = ProbeSite(cwd=tmp_path, env={**os.environ, "PROBE_VALUE": "yes"})
    assert await run_probe(probe, site=site) is None
    site = ProbeSite(cwd=tmp_path, env={**os.environ, "PROBE_VALUE": "no"})
    assert await run_probe(probe, site=site) is not None


async def test_a_command_probe_that_times_out_is_killed_and_reaped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    reaped: list[bool] = []
    site = ProbeSite(cwd=tmp_path, on_reaped=lambda: reaped.append(True))
    probe = Probe("command", command=("sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"), timeout=0.3)
    reason = await run_probe(probe, site=site)
    assert reason == "timed out after 300ms"
    pid = int(pid_file.read_text())
    # The pidfd callback reaps it as soon as SIGKILL lands; the engine then forgets the pid.
    for _ in range(100):
        if reaped:
            break
        await asyncio.sleep(0.01)
    assert reaped and site.owned_pids == set()
    assert not alive(pid)
    with pytest.raises(ChildProcessError):  # already reaped: no zombie left
        os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 (WNOHANG never blocks)


# ---- readiness and liveness of managed processes ---------------------------------------------------


async def test_http_readiness_keeps_a_process_starting_until_it_answers(manager_factory: Factory) -> None:
    port = free_port()
    readiness = Probe("http", f"http://127.0.0.1:{port}/health", interval=0.05)
    manager = manager_factory(http_server("web", port, delay=0.6, readiness=readiness))
    events: list[tuple[str, float]] = []

    def record(event: object) -> None:
        if isinstance(event, LogLines) and "listening" in event.lines:
            events.append(("listening", event.timestamp))
        elif isinstance(event, StatusChanged) and event.status is not event.previous:
            events.append((str(event.status), event.timestamp))

    manager.add_listener(record)
    await manager.start()
    state = manager.state("web")
    assert state.status is Status.STARTING and alive(state.pid) and not state.ready
    assert state_to_json(state)["ready"] is False
    await wait_until(manager, lambda: manager.state("web").status is Status.RUNNING, what="ready")
    state = manager.state("web")
    assert state.ready and state_to_json(state)["ready"] is True and state.restart_count == 0
    names = [name for name, _ in events]
    assert names == ["starting", "listening", "running"]
    assert events[1][1] <= events[2][1]  # running only once the server listens
    assert any("ready after" in line.content for line in manager.logs("web"))
    assert state.last_error == ""


async def test_tcp_readiness(manager_factory: Factory) -> None:
    port = free_port()
    readiness = Probe("tcp", f"127.0.0.1:{port}", interval=0.05)
    manager = manager_factory(http_server("web", port, delay=0.3, readiness=readiness))
    await manager.start()
    assert manager.state("web").status is Status.STARTING
    await wait_until(manager, lambda: manager.state("web").ready, what="ready")
    assert manager.state("web").status is Status.RUNNING


async def test_a_process_not_ready_yet_says_why(manager_factory: Factory, closed_port: int) -> None:
    readiness = Probe("tcp", f"127.0.0.1:{closed_port}", interval=0.05)
    manager = manager_factory(config("web", SLEEPER, readiness=readiness))
    await manager.start()
    expected = f"not ready yet: connection refused on 127.0.0.1:{closed_port}"
    await wait_until(manager, lambda: manager.state("web").last_error == expected, what="the reason")
    assert manager.state("web").status is Status.STARTING
    # Stopping a process that is not ready yet ends its probes with the run.
    await manager.stop_process("web")
    assert manager.state("web").status is Status.STOPPED and not manager.state("web").ready


async def test_command_readiness_runs_in_the_process_folder_with_its_environment(
    manager_factory: Factory, tmp_path: Path
) -> None:
    code = "import pathlib, time\ntime.sleep(0.3)\npathlib.Path('ready.flag').touch()\ntime.sleep(600)"
    readiness = Probe(
        "command", command=("sh", "-c", 'test -f ready.flag && test "$PROBE_VALUE" = yes'), interval=0.05
    )
    manager = manager_factory(
        config("job", code, cwd=tmp_path, env={"PROBE_VALUE": "yes"}, readiness=readiness)
    )
    await manager.start()
    assert manager.state("job").status is Status.STARTING
    await wait_until(manager, lambda: manager.state("job").ready, what="ready")
    assert (tmp_path / "ready.flag").exists()


async def test_failing_liveness_restarts_the_process_with_the_reason(
    manager_factory: Factory, tmp_path: Path
) -> None:
    # Alive while the file exists; the process removes it after a moment, as if it hung.
    code = (
        "import pathlib, time\npathlib.Path('alive').touch()\ntime.sleep(0.3)\n"
        "pathlib.Path('alive').unlink()\ntime.sleep(600)"
    )
    liveness = Probe("command", command=("test", "-f", "alive"), interval=0.05, failure_threshold=2)
    manager = manager_factory(config("app", code, cwd=tmp_path, liveness=liveness, backoff=0.05))
    await manager.start()
    first_pid = manager.state("app").pid
    await wait_until(manager, lambda: manager.state("app").restart_count >= 1, what="a liveness restart")
    await wait_until(manager, lambda: manager.state("app").status is Status.RUNNING, what="running again")
    state = manager.state("app")
    assert state.pid != first_pid and not alive(first_pid)
    reason = "liveness probe failed 2 times: command test -f alive exited with code 1"
    assert state.exits[0].reason == reason
    assert exit_to_json(state.exits[0])["reason"] == reason
    assert state.exits[0].signal is not None  # it was killed, it did not exit by itself
    assert any("liveness probe failed (1/2)" in line.content for line in manager.logs("app"))


async def test_a_liveness_restart_counts_as_a_failure(manager_factory: Factory, tmp_path: Path) -> None:
    # maxRetries 0: the first failure is the last one.
    liveness = Probe("command", command=("false",), interval=0.05, failure_threshold=1)
    manager = manager_factory(config("app", SLEEPER, cwd=tmp_path, liveness=liveness, max_retries=0))
    await manager.start()
    await wait_until(manager, lambda: manager.state("app").status is Status.FAILED, what="failed")
    last_error = manager.state("app").last_error
    assert last_error.startswith("gave up after 1 consecutive failed starts (maxRetries is 0)")
    assert "liveness probe failed 1 time: command false exited with code 1" in last_error


async def test_liveness_starts_after_readiness(manager_factory: Factory, tmp_path: Path) -> None:
    # Liveness would fail at once; it must not run (and restart) while the process is not ready.
    readiness = Probe("command", command=("test", "-f", "ready"), interval=0.05)
    liveness = Probe("command", command=("test", "-f", "live"), interval=0.05, failure_threshold=1)
    manager = manager_factory(config("app", SLEEPER, cwd=tmp_path, readiness=readiness, liveness=liveness))
    await manager.start()
    await asyncio.sleep(0.4)
    assert manager.state("app").status is Status.STARTING and manager.state("app").restart_count == 0
    (tmp_path / "live").touch()
    (tmp_path / "ready").touch()
    await wait_until(manager, lambda: manager.state("app").ready, what="ready")
    (tmp_path / "live").unlink()
    await wait_until(manager, lambda: manager.state("app").restart_count >= 1, what="a liveness restart")


# A child that leaves orphans behind all the time, so the subreaper's SIGCHLD handler keeps reaping.
ORPHAN_MAKER = """
import subprocess, time
while True:
    subprocess.Popen(["sh", "-c", "sleep 0.01 &"])
    time.sleep(0.01)
"""


async def test_command_probes_keep_their_exit_status_under_the_subreaper(
    manager_factory: Factory, tmp_path: Path
) -> None:
    liveness = Probe("command", command=("sh", "-c", "exit 0"), interval=0.01, failure_threshold=1, timeout=5)
    manager = manager_factory(
        config("orphans", ORPHAN_MAKER, cwd=tmp_path, liveness=liveness), adopt_orphans=True
    )
    await manager.start()
    await asyncio.sleep(1.0)
    state = manager.state("orphans")
    # A stolen exit status would read as a failure and restart the process at once.
    assert state.status is Status.RUNNING and state.restart_count == 0
    assert not any("liveness" in line.content for line in manager.logs("orphans"))
    await manager.stop_process("orphans")
    assert manager._context.registry.owned == set()  # every probe was reaped and forgotten
