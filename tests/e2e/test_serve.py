"""The real ``processman serve`` command and the runnable library example."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_serve_prints_prefixed_lines_and_marks_stderr(tmp_path: Path) -> None:
    code = "import sys, time\nprint('hello', 'out')\nprint('hello', 'err', file=sys.stderr)\ntime.sleep(60)"
    (tmp_path / "pb_processes.json").write_text(
        json.dumps([{"id": "talker", "command": sys.executable, "args": ["-c", code]}])
    )
    serve = subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(tmp_path), "--http", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert serve.stdout is not None
    seen: list[str] = []
    try:
        for line in serve.stdout:
            seen.append(line)
            if "| hello out" in "".join(seen) and "! hello err" in "".join(seen):
                break
        serve.send_signal(signal.SIGINT)
        rest, _ = serve.communicate(timeout=15)
    finally:
        serve.kill()
    output = "".join(seen) + rest
    assert re.search(r"^\d\d:\d\d:\d\d talker +\| hello out$", output, re.M), output
    assert re.search(r"^\d\d:\d\d:\d\d talker +! hello err$", output, re.M), output
    assert re.search(r"^\d\d:\d\d:\d\d processman +\| stopped$", output, re.M), output
    assert serve.returncode == 128 + signal.SIGINT


def test_serve_runs_with_a_broken_config_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "pb_processes.json").write_text('[{"id": "a", "command": "true", "backoff": "fast"}]')
    serve = subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(tmp_path), "--http", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert serve.stdout is not None
    try:
        lines = [serve.stdout.readline() for _ in range(2)]
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=15)
    finally:
        serve.kill()
    assert 'backoff: expected a duration like "500ms", "2s" or "1m", got "fast"' in lines[0]
    assert "0 process(es) configured" in lines[1]


def test_library_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "library.py")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "[worker] working 2" in result.stdout
    assert "-> failed" in result.stdout
    assert "done: 1 restart(s), last error: gave up after 2 consecutive failed starts" in result.stdout


def test_no_echo_keeps_output_in_the_log_files_only(tmp_path: Path) -> None:
    code = "import time\nprint('quiet', 'line', flush=True)\ntime.sleep(60)"
    (tmp_path / "pb_processes.json").write_text(
        json.dumps([{"id": "hush", "command": sys.executable, "args": ["-c", code]}])
    )
    log = tmp_path / "processman" / "logs" / "hush.out.log"
    serve = subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(tmp_path), "--http", "off", "--no-echo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not (log.exists() and "quiet line" in log.read_text()):
            assert time.monotonic() < deadline, "the line never reached the log file"
            time.sleep(0.05)
        serve.send_signal(signal.SIGTERM)
        output, _ = serve.communicate(timeout=15)
    finally:
        serve.kill()
    assert "quiet line" not in output
    assert re.search(r"^\d\d:\d\d:\d\d processman +\| stopped$", output, re.M), output


# Takes a second to stop on SIGTERM, and says so in a file only when it stopped cleanly.
SLOW_TO_STOP = """
import signal, sys, time
def stop(signum, frame):
    time.sleep(1)
    open(sys.argv[1], "w").write("clean")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("trapping SIGTERM", flush=True)
while True:
    time.sleep(60)
"""


def _serve_slow_child(tmp_path: Path, marker: Path) -> subprocess.Popen[str]:
    entry = {"id": "slow", "command": sys.executable, "args": ["-u", "-c", SLOW_TO_STOP, str(marker)]}
    (tmp_path / "pb_processes.json").write_text(json.dumps([{**entry, "stopTimeout": "20s"}]))
    serve = subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(tmp_path), "--http", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _read_until(serve, "| trapping SIGTERM")
    return serve


def _read_until(serve: subprocess.Popen[str], text: str) -> str:
    assert serve.stdout is not None
    seen = ""
    for line in serve.stdout:
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"serve ended before printing {text!r}:\n{seen}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_repeated_sigterm_still_stops_gracefully(tmp_path: Path, sig: signal.Signals) -> None:
    """A parent that dies sends its death signal again (PocketBase's threads each deliver it): one
    orderly stop, never a forced one."""
    marker = tmp_path / "stopped-cleanly"
    serve = _serve_slow_child(tmp_path, marker)
    try:
        serve.send_signal(sig)
        _read_until(serve, "stopping:")  # the first signal is being handled
        serve.send_signal(sig)
        output, _ = serve.communicate(timeout=30)
    finally:
        serve.kill()
    assert marker.exists(), output
    assert "killing every process now" not in output
    assert serve.returncode == 128 + sig


def test_a_second_ctrl_c_forces(tmp_path: Path) -> None:
    marker = tmp_path / "stopped-cleanly"
    serve = _serve_slow_child(tmp_path, marker)
    try:
        serve.send_signal(signal.SIGINT)
        _read_until(serve, "stopping:")
        serve.send_signal(signal.SIGINT)
        output, _ = serve.communicate(timeout=30)
    finally:
        serve.kill()
    assert "killing every process now" in output
    assert not marker.exists(), output
    assert serve.returncode == 128 + signal.SIGINT


# Prints a screenful and exits at once: every exit is a record processman logs, every restart a note.
CHATTY_CRASHER = "import sys\nfor i in range(200):\n    print('x' * 80, i)\nsys.exit(3)"
TOKEN = "e2e-token-0123456789abcdefghijklmnopqrstuvwxyz"


def _restarts(client: httpx.Client) -> int:
    states = client.get("/api/pm/list").json()
    return int(states[0]["restartCount"])


def _blocked_writing(pid: int) -> bool:
    """Whether a thread of ``pid`` waits in the kernel for room in a pipe."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if "pipe_write" in (task / "wchan").read_text():
                return True
        except OSError:
            continue
    return False


def _console_drops(client: httpx.Client) -> int:
    found = re.search(
        r'^processman_log_lines_dropped_total\{consumer="console"\} (\d+)$',
        client.get("/api/pm/metrics").text,
        re.M,
    )
    assert found, "no console counter in /metrics"
    return int(found[1])


@pytest.mark.parametrize("echo", ["--echo", "--no-echo"])
def test_output_nobody_reads_never_stops_the_manager(tmp_path: Path, echo: str) -> None:
    """stdout and stderr are pipes the test does not read, as with a paused terminal (Ctrl+S): the
    API keeps answering and restarts go on; what could not be shown is dropped, counted, and said once
    the output is read again."""
    crasher: dict[str, Any] = {"id": "crasher", "command": sys.executable, "args": ["-c", CHATTY_CRASHER]}
    # Two records a run each, at the pace of exec: they fill processman's backlog of records quickly.
    flappers: list[dict[str, Any]] = [{"id": f"flapper{i}", "command": "false"} for i in range(3)]
    processes = [{**entry, "backoff": "10ms", "minUptime": "0s"} for entry in (crasher, *flappers)]
    (tmp_path / "pb_processes.json").write_text(json.dumps(processes))
    port = free_port()
    command = [sys.executable, "-m", "processman", "serve", "--dir", str(tmp_path), echo]
    serve = subprocess.Popen(
        [*command, "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PROCESSMAN_TOKEN": TOKEN},
    )
    assert serve.stdout is not None and serve.stderr is not None
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=5) as client:
            wait_for(lambda: _answers(client, serve), 30, "the API")
            # A pipe holds 64 KiB: once it is full, processman's next write waits for room.
            wait_for(lambda: _blocked_writing(serve.pid), 20, "serve to wait for room in its stdout pipe")
            before = _restarts(client)
            wait_for(lambda: _restarts(client) >= before + 20, 20, "20 more restarts")
            wait_for(lambda: _console_drops(client), 30, "records dropped")
        seen = b""
        while b"log records dropped" not in seen:
            chunk = os.read(serve.stdout.fileno(), 65536)
            assert chunk, f"serve's output ended without saying what it dropped:\n{seen[-3000:]!r}"
            seen = (seen + chunk)[-100_000:]
        serve.send_signal(signal.SIGTERM)
        rest, _ = serve.communicate(timeout=30)
    finally:
        serve.kill()
        serve.communicate()
    assert re.search(rb"processman +\| \d+ log records dropped", seen + rest), (seen + rest)[-3000:]
    assert serve.returncode == 128 + signal.SIGTERM


def _answers(client: httpx.Client, serve: subprocess.Popen[bytes]) -> bool:
    assert serve.poll() is None, "serve exited"
    try:
        return client.get("/api/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
