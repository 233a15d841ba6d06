"""The client commands (list, start, stop, restart, logs) run as real subprocesses against a real
``processman serve``."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import httpx
import pytest

from processman.cli.client import format_line, format_table
from tests.api.conftest import SECRET_VALUE, free_port
from tests.cli import assert_follow_shows_a_new_tick
from tests.cli.imports import SERVER_MODULES, run_command
from tests.conftest import wait_for

TICKER = """
import itertools, time
for i in itertools.count():
    print(f"tick {i}", flush=True)
    time.sleep(0.1)
"""


@dataclass
class Server:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def token(self) -> str:
        return (self.data_dir / "processman" / "token").read_text().strip()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("cli") / "pb_data"
    data_dir.mkdir()
    processes = [
        {
            "id": "ticker",
            "command": sys.executable,
            "args": ["-u", "-c", textwrap.dedent(TICKER)],
            "group": "bg",
        },
        {
            "id": "idle",
            "command": sys.executable,
            "args": ["-c", "import time; time.sleep(3600)"],
            "env": {"OPENAI_API_KEY": SECRET_VALUE},
            "group": "bg",
        },
        {"id": "broken", "command": "/nonexistent/agent-binary", "maxRetries": 0},
    ]
    (data_dir / "pb_processes.json").write_text(json.dumps(processes))
    port = free_port()
    environ = {key: value for key, value in os.environ.items() if key != "PROCESSMAN_TOKEN"}
    process = subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(data_dir), "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environ,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "processman serve exited"
            assert time.monotonic() < deadline, "processman serve did not come up"
            time.sleep(0.05)
        yield Server(url, data_dir, process)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cli_env(server: Server, **extra: str) -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PROCESSMAN_")}
    return {**environ, "PROCESSMAN_URL": server.url, "COLUMNS": "120", **extra}


def cli(server: Server, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``processman ARGS --dir DATA_DIR``: the token comes from the file ``serve`` wrote."""
    return subprocess.run(
        [sys.executable, "-m", "processman", *args, "--dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or cli_env(server),
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def wait_status(server: Server, process_id: str, status: str) -> None:
    deadline = time.monotonic() + 10
    headers = {"Authorization": server.token}
    while True:
        states = httpx.get(f"{server.url}/api/pm/list", headers=headers).json()
        if next(state for state in states if state["id"] == process_id)["status"] == status:
            return
        assert time.monotonic() < deadline, f"{process_id} did not become {status}"
        time.sleep(0.05)


def test_list_prints_a_table(server: Server) -> None:
    wait_status(server, "broken", "failed")
    result = cli(server, "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "STATUS",
        "PID",
        "UPTIME",
        "RESTARTS",
        "LAST",
        "ERROR",
        "/",
        "STATUS",
        "TEXT",
    ]
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert list(rows) == ["ticker", "idle", "broken"]
    assert lines[-1].split()[:2] in (
        ["containment:", "cgroup"],
        ["containment:", "tags"],
        ["containment:", "portable"],
    )
    assert rows["ticker"].split()[1] == "running" and rows["ticker"].split()[2].isdigit()
    assert rows["broken"].split()[1:3] == ["failed", "-"]
    assert "gave up after 1 consecutive failed starts" in rows["broken"]
    assert max(map(len, lines)) <= 120, "the last error is cut to the terminal's width"
    wide = cli(server, "list", env=cli_env(server, COLUMNS="400"))
    assert "/nonexistent/agent-binary" in wide.stdout
    assert "\x1b[" not in result.stdout, "no colour codes when not a terminal"


def test_list_imports_nothing_of_the_server(server: Server, tmp_path: Path) -> None:
    """The engine, the API server and httpx would triple the time ``processman list`` takes."""
    run = run_command(
        "list", "--dir", str(server.data_dir), report=str(tmp_path / "modules.json"), env=cli_env(server)
    )
    assert run.code == 0, run.stderr
    assert "ticker" in run.stdout and "idle" in run.stdout
    assert run.loaded(SERVER_MODULES) == []


def test_list_json_is_the_servers_json_with_secrets_masked(server: Server) -> None:
    result = cli(server, "list", "--json")
    assert result.returncode == 0
    states = json.loads(result.stdout)
    assert [state["id"] for state in states] == ["ticker", "idle", "broken"]
    assert states[1]["config"]["env"] == {"OPENAI_API_KEY": "****"}
    assert SECRET_VALUE not in result.stdout


def test_stop_start_restart_one_process(server: Server) -> None:
    stopped = cli(server, "stop", "idle")
    assert (stopped.returncode, stopped.stdout) == (0, "idle: Process stopped\n")
    wait_status(server, "idle", "stopped")
    started = cli(server, "start", "idle")
    assert (started.returncode, started.stdout) == (0, "idle: Process start initiated\n")
    restarted = cli(server, "restart", "idle")
    assert (restarted.returncode, restarted.stdout) == (0, "idle: Process restart initiated\n")
    wait_status(server, "idle", "running")


def test_start_when_running_fails_in_one_line(server: Server) -> None:
    result = cli(server, "start", "ticker")
    assert result.returncode == 1
    assert one_error_line(result) == "Error: Process is already running. (HTTP 400)"


@pytest.mark.parametrize("action", ["start", "stop", "restart"])
def test_an_unknown_id_fails_in_one_line(server: Server, action: str) -> None:
    result = cli(server, action, "nope")
    assert result.returncode == 1
    assert one_error_line(result) == "Error: unknown process id 'nope' (see `processman list`)"
    assert cli(server, "logs", "a/../b").returncode == 1


def test_all_acts_on_every_process(server: Server) -> None:
    stopped = cli(server, "stop", "all")
    assert stopped.returncode == 0, stopped.stderr
    assert sorted(stopped.stdout.splitlines()) == [
        "broken: Process stopped",
        "idle: Process stopped",
        "ticker: Process stopped",
    ]
    started = cli(server, "start", "all")
    assert started.returncode == 0, started.stderr
    assert {line.split(":")[0] for line in started.stdout.splitlines()} == {"ticker", "idle", "broken"}
    wait_status(server, "ticker", "running")
    again = cli(server, "start", "all")  # only the ones not running: broken failed again
    assert "ticker" not in again.stdout and "idle" not in again.stdout
    assert cli(server, "restart", "all").returncode == 0
    wait_status(server, "ticker", "running")
    wait_status(server, "idle", "running")


def test_without_a_token_says_where_it_looked(server: Server, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "processman", "list", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(server),
    )
    assert result.returncode == 4
    line = one_error_line(result)
    assert line.startswith("Error: not authorised: no token (none given, and no token file at ")
    assert str(tmp_path / "processman" / "token") in line


def test_a_wrong_token_is_not_authorised(server: Server) -> None:
    for args, env in (
        (("list", "--token", "wrong"), cli_env(server)),
        (("list",), cli_env(server, PROCESSMAN_TOKEN="wrong")),
    ):
        result = cli(server, *args, env=env)
        assert result.returncode == 4
        assert one_error_line(result) == (
            "Error: not authorised: the server refused the token from --token or $PROCESSMAN_TOKEN"
        )


def test_a_server_that_is_not_running(server: Server) -> None:
    result = cli(server, "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 3
    line = one_error_line(result)
    assert "cannot reach the processman server at http://127.0.0.1:" in line
    assert "is `processman serve` running?" in line


def test_logs_prints_the_last_lines(server: Server) -> None:
    result = cli(server, "logs", "ticker", "-n", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        stamp, name, bar, *_ = line.split()
        assert len(stamp) == 8 and stamp[2] == stamp[5] == ":"
        assert (name, bar) in (("ticker", "|"), ("ticker", "~"))  # a line of the child, or a note


def test_logs_marks_stderr_and_processmans_notes() -> None:
    def shown(stream: str, content: str) -> str:
        line = {"timestamp": "2026-01-01T12:00:00+00:00", "processId": "w", "stream": stream}
        return click.unstyle(format_line({**line, "content": content}))[9:]

    assert shown("stdout", "out") == "w | out"
    assert shown("stderr", "err") == "w ! err"
    assert shown("system", "restarting: restart requested") == "w ~ restarting: restart requested"
    assert shown("stderr", "[processman] ready after 2s") == "w ~ ready after 2s"  # an older server
    assert "\x1b[2m" in format_line({"stream": "system", "content": "note"})  # dimmed


def test_logs_rejects_a_bad_count(server: Server) -> None:
    result = cli(server, "logs", "ticker", "-n", "-1")
    assert result.returncode == 2
    assert "-1 is not in the range 0<=x<=1000" in result.stderr


def test_logs_follow_shows_a_line_the_child_prints(server: Server) -> None:
    assert_follow_shows_a_new_tick(cli_env(server), "--dir", str(server.data_dir))


def test_logs_follow_stops_on_sigterm(server: Server) -> None:
    assert_follow_shows_a_new_tick(cli_env(server), "--dir", str(server.data_dir), stop=signal.SIGTERM)


def test_table_colours_statuses_and_fits_the_error() -> None:
    states = [
        {"id": "web", "status": "running", "pid": 42, "uptime": "5s", "restartCount": 1, "lastError": ""},
        {
            "id": "job",
            "status": "failed",
            "pid": 0,
            "uptime": "0s",
            "restartCount": 3,
            "lastError": "x" * 300,
        },
    ]
    lines = format_table(states, width=80)
    assert click.style("running", fg="green") in lines[1]
    assert click.style("failed ", fg="red", bold=True) in lines[2]
    assert len(click.unstyle(lines[2])) <= 80 and click.unstyle(lines[2]).endswith("...")


class _HtmlHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>a web page</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_server_that_is_not_processman(server: Server) -> None:
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler) as other:
        thread = threading.Thread(target=other.serve_forever, daemon=True)
        thread.start()
        try:
            result = cli(server, "list", "--url", f"http://127.0.0.1:{other.server_address[1]}")
        finally:
            other.shutdown()
            thread.join()
    assert result.returncode == 1
    assert one_error_line(result).endswith(
        "did not answer /api/pm/list with JSON: is it a processman server?"
    )


def test_logs_without_an_id_interleaves_every_process(server: Server) -> None:
    wait_status(server, "broken", "failed")
    result = cli(server, "logs", "-n", "1000")
    assert result.returncode == 0, result.stderr
    rows = [line.split(maxsplit=3) for line in result.stdout.splitlines()]
    assert {"ticker", "broken"} <= {row[1] for row in rows}
    assert any(row[1] == "broken" and "not found" in row[3] for row in rows), "processman's note on broken"
    stamps = [row[0] for row in rows]
    assert stamps == sorted(stamps), "one timeline, oldest first"


def test_logs_since_and_grep_narrow_what_is_shown(server: Server) -> None:
    wait_for(lambda: cli(server, "logs", "ticker", "-n", "60").stdout.count("\n") == 60, 20, "60 ticks")
    matching = cli(server, "logs", "ticker", "--grep", r"tick \d*7$")
    assert matching.returncode == 0, matching.stderr
    shown = matching.stdout.splitlines()
    assert shown and all(line.endswith("7") for line in shown)
    assert cli(server, "logs", "--since", "1h", "-n", "3").stdout.count("\n") == 3
    everything = cli(server, "logs", "ticker", "-n", "1000").stdout.splitlines()
    recent = cli(server, "logs", "ticker", "--since", "1s").stdout.splitlines()
    assert 0 < len(recent) < len(everything), "only the last second's lines"
    bad = cli(server, "logs", "--since", "a while")
    assert bad.returncode == 2 and "expected a duration like" in bad.stderr
    assert cli(server, "logs", "--grep", "(").returncode == 2


def test_logs_follow_without_an_id_filters_live_lines(server: Server) -> None:
    follower = subprocess.Popen(
        [
            *(sys.executable, "-m", "processman", "logs", "-f", "-n", "0"),
            *("--grep", r"tick \d*3$", "--dir", str(server.data_dir)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(server),
    )
    try:
        assert follower.stdout is not None
        for _ in range(2):
            line = follower.stdout.readline()
            assert " ticker | tick " in line and line.rstrip().endswith("3"), line
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 130
    finally:
        if follower.poll() is None:
            follower.kill()
        follower.communicate()


def test_describe_shows_one_process_on_one_screen(server: Server) -> None:
    result = cli(server, "describe", "idle")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    sections = ("State", "Config", "Environment (secrets masked)", "Resources", "Recent exits", "Last 10")
    for section in sections:
        assert f"\n{section}" in text, section
    assert "OPENAI_API_KEY  ****" in text and SECRET_VALUE not in text
    assert re.search(r"\n  group +bg\n", text)
    assert "memory" in text and "desired: running" in text
    broken = cli(server, "describe", "broken")
    assert "gave up after 1 consecutive failed starts" in broken.stdout
    assert "code" in broken.stdout.split("Recent exits")[1] or "cannot start" in broken.stdout
    missing = cli(server, "describe", "nobody")
    assert missing.returncode == 1 and "unknown process id 'nobody'" in missing.stderr


def test_a_group_is_acted_on_as_one(server: Server) -> None:
    wait_status(server, "idle", "running")
    result = cli(server, "restart", "group:bg")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "group:bg: Group restart initiated (ticker, idle)"
    wait_status(server, "ticker", "running")
    shown = cli(server, "logs", "group:bg", "-n", "20").stdout
    assert " ticker | " in shown and " broken " not in shown
    listed = cli(server, "list", "group:bg")
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:-1]] == ["ticker", "idle"]
    assert listed.stdout.splitlines()[-1].startswith("containment: ")
    assert cli(server, "list", "group:nobody").stdout == "no process is in group:nobody\n"
    assert cli(server, "list", "bg").returncode == 2
    missing = cli(server, "stop", "group:nobody")
    assert missing.returncode == 1
    assert one_error_line(missing) == "Error: no process is in group 'nobody' (see `processman list`)"
