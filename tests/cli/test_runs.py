"""``processman run`` and ``processman runs`` as real subprocesses against a real ``processman serve``,
and ``list``/``describe`` showing a job's next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click
import httpx
import pytest

from processman.cli.client import format_table, next_run_text
from processman.cli.runs import describe_run, format_runs
from tests.api.conftest import free_port
from tests.conftest import wait_for

RELEASE = "release"
WAIT_FOR_FILE = "import os, time\nwhile not os.path.exists({path!r}): time.sleep(0.02)\nprint('slow done')"


@dataclass
class Server:
    url: str
    data_dir: Path

    @property
    def token(self) -> str:
        return (self.data_dir / "processman" / "token").read_text().strip()

    def runs(self, process_id: str) -> list[dict[str, object]]:
        answer = httpx.get(f"{self.url}/api/pm/{process_id}/runs", headers={"Authorization": self.token})
        result: list[dict[str, object]] = answer.json()
        return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("runs") / "pb_data"
    data_dir.mkdir()
    python = [sys.executable, "-u", "-c"]
    processes = [
        {
            "id": "migrate",
            "command": python[0],
            "args": [*python[1:], "print('migrated')"],
            "restart": "never",
            "autostart": False,
        },
        {
            "id": "slow",
            "command": python[0],
            "args": [*python[1:], WAIT_FOR_FILE.format(path=str(data_dir / RELEASE))],
            "restart": "never",
            "autostart": False,
        },
        {
            "id": "backup",
            "command": python[0],
            "args": [*python[1:], "print('saved')"],
            "schedule": {"every": "1h"},
        },
        {"id": "web", "command": python[0], "args": [*python[1:], "import time; time.sleep(3600)"]},
    ]
    (data_dir / "pb_processes.json").write_text(json.dumps(processes))
    port = free_port()
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PROCESSMAN_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(data_dir), "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environ,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, "processman serve exited"
        try:
            return httpx.get(f"{url}/api/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 20, "processman serve")
        yield Server(url, data_dir)
    finally:
        (data_dir / RELEASE).write_text("go")
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PROCESSMAN_")}
    return subprocess.run(
        [sys.executable, "-m", "processman", *args, "--dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environ, "COLUMNS": "160"},
    )


def test_run_starts_a_task_and_runs_lists_it(server: Server) -> None:
    started = cli(server, "run", "migrate")
    assert (started.returncode, started.stdout) == (0, "run 1 of migrate started (manual)\n"), started.stderr
    wait_for(lambda: server.runs("migrate")[0]["outcome"] == "succeeded", 10, "the run to end")

    table = cli(server, "runs", "migrate")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["RUN", "TRIGGER", "STARTED", "DURATION", "OUTCOME", "EXIT", "REASON"]
    cells = row.split()
    assert (cells[0], cells[1], cells[5], cells[6]) == ("1", "manual", "succeeded", "0")

    assert cli(server, "run", "migrate").returncode == 0
    wait_for(lambda: server.runs("migrate")[0]["outcome"] == "succeeded", 10, "the second run to end")
    listed = json.loads(cli(server, "runs", "migrate", "--json", "--limit", "1").stdout)
    assert [run["number"] for run in listed] == [2]
    assert cli(server, "list").stdout.count("completed") == 1


def test_a_run_while_one_runs_is_skipped(server: Server) -> None:
    assert cli(server, "run", "slow").stdout == "run 1 of slow started (manual)\n"
    skipped = cli(server, "run", "slow")
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout.startswith("skipped: run 1 was still running"), skipped.stdout
    row = cli(server, "runs", "slow").stdout.splitlines()[1].split()
    assert (row[4], row[5]) == ("-", "skipped"), row  # a skipped run has no duration


def test_run_refuses_a_service_and_an_unknown_id(server: Server) -> None:
    refused = cli(server, "run", "web")
    assert refused.returncode == 1
    assert "kept alive" in refused.stderr and "HTTP 409" in refused.stderr
    unknown = cli(server, "runs", "nothing")
    assert unknown.returncode == 1 and "unknown process id 'nothing'" in unknown.stderr


def test_list_and_describe_show_a_jobs_next_run(server: Server) -> None:
    def scheduled() -> str | None:
        listed = cli(server, "list").stdout
        row = next(line for line in listed.splitlines() if line.startswith("backup"))
        return row if "scheduled" in row else None

    row = wait_for(scheduled, 10, "backup scheduled")
    assert "next run" in row and ("(in 59m" in row or "(in 1h00m" in row), row
    described = cli(server, "describe", "backup")
    assert described.returncode == 0, described.stderr
    assert "next run" in described.stdout and "(not armed)" not in described.stdout


def test_the_words_and_colours_of_runs() -> None:
    run = {"id": "backup", "number": 12, "trigger": "manual", "outcome": None}
    assert describe_run(run) == ("run 12 of backup started (manual)", False)
    failed = {**run, "outcome": "failed", "reason": "cannot start: no such file"}
    assert describe_run(failed) == ("run 12 of backup failed: cannot start: no such file", True)
    assert describe_run({"id": "backup", "queued": True})[0].startswith("queued")
    rows = [
        {
            **run,
            "started": "2026-01-30T03:00:00.000Z",
            "duration": "41s",
            "outcome": "succeeded",
            "exitCode": 0,
        },
        {
            **run,
            "number": 11,
            "started": "2026-01-30T02:00:00.000Z",
            "outcome": "timed out",
            "signal": "SIGTERM",
        },
    ]
    lines = format_runs(rows, 120)
    assert click.style("succeeded", fg="green") in lines[1]
    assert click.unstyle(lines[2]).split()[-1] == "SIGTERM"
    assert click.unstyle(format_runs(rows, 120, with_id=True)[0]).split()[0] == "ID"
    now = float(int(time.time()))
    assert next_run_text(None) == ""
    soon = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now + 90)) + ".000Z"
    assert next_run_text(soon, now).endswith("(in 1m30s)")
    zone = datetime.fromtimestamp(now + 90).astimezone().strftime("%Z")
    assert f" {zone} (in" in next_run_text(soon, now)  # the machine's time, and it says which
    job = {"id": "hang", "status": "scheduled", "pid": 0, "nextRun": soon, "lastError": "timed out after 3s"}
    (row,) = [click.unstyle(line) for line in format_table([job], 200)[1:]]
    assert "next run" in row and "timed out after 3s" in row, row
