"""The client finds its server: ``serve`` records its address in its data folder, and the client
commands read address and token there, from a real ``serve`` on a port it chose itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import wait_for

TICKER = """
import itertools, time
for i in itertools.count():
    print(f"tick {i}", flush=True)
    time.sleep(0.1)
"""


@dataclass
class App:
    folder: Path  # the app's folder; the data folder is folder/examples
    serve: subprocess.Popen[bytes]

    @property
    def data_dir(self) -> Path:
        return self.folder / "examples"


def client_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("PROCESSMAN_")}


def processman(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processman", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**client_env(), "COLUMNS": "200"},
    )


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    """``processman serve --dir examples`` started from an app's folder, on a port it picks."""
    folder = tmp_path / "app"
    data_dir = folder / "examples"
    data_dir.mkdir(parents=True)
    entries = [
        {"id": "ticker", "command": sys.executable, "args": ["-u", "-c", textwrap.dedent(TICKER)]},
        {"id": "idle", "command": "sleep", "args": ["3600"], "group": "bg"},
    ]
    (data_dir / "pb_processes.json").write_text(json.dumps(entries))
    serve = subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", "examples", "--http", "127.0.0.1:0"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=client_env(),
    )
    try:
        wait_for(lambda: (data_dir / "processman" / "server.json").exists(), 20, "the server file")
        yield App(folder, serve)
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=15)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()


def test_the_client_finds_a_server_started_with_dir_from_the_apps_folder(app: App) -> None:
    record = json.loads((app.data_dir / "processman" / "server.json").read_text())
    assert record["url"].startswith("http://127.0.0.1:") and not record["url"].endswith(":0")
    assert record["pid"] == app.serve.pid
    result = processman("list", cwd=app.folder)
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[1:-1]] == ["ticker", "idle"]
    # From inside the data folder, and from anywhere with --dir.
    assert processman("list", cwd=app.data_dir).returncode == 0
    elsewhere = app.folder.parent
    assert processman("list", "--dir", str(app.data_dir), cwd=elsewhere).returncode == 0


def test_nothing_found_says_where_it_looked_and_what_to_pass(app: App) -> None:
    elsewhere = app.folder.parent
    result = processman("list", cwd=elsewhere)
    assert result.returncode == 3, result.stderr
    message = result.stderr
    assert "no running server is recorded in ./pb_data/processman/server.json" in message
    assert "processman/server.json" in message and "Pass --dir DATA_DIR" in message


def test_the_server_file_goes_when_serve_stops(app: App) -> None:
    path = app.data_dir / "processman" / "server.json"
    app.serve.send_signal(signal.SIGINT)
    app.serve.wait(timeout=15)
    assert not path.exists()
    result = processman("list", cwd=app.folder)
    assert result.returncode == 3 and "no running server is recorded in" in result.stderr
