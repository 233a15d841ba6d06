"""``processman reload`` and ``POST /api/pm/reload`` against a real ``processman serve``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import free_port

SLEEP = ["-c", "import time\nwhile True: time.sleep(1)"]


def _entries(*ids: str, **extra: Any) -> str:
    return json.dumps([{"id": i, "command": sys.executable, "args": SLEEP, **extra.get(i, {})} for i in ids])


class Serve:
    def __init__(self, data_dir: Path, url: str, process: subprocess.Popen[bytes]) -> None:
        self.data_dir, self.url, self.process = data_dir, url, process

    @property
    def config(self) -> Path:
        return self.data_dir / "pb_processes.json"

    def headers(self) -> dict[str, str]:
        return {"Authorization": (self.data_dir / "processman" / "token").read_text().strip()}

    def pids(self) -> dict[str, int]:
        states = httpx.get(f"{self.url}/api/pm/list", headers=self.headers()).json()
        return {state["id"]: state["pid"] for state in states}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PROCESSMAN_")}
        return subprocess.run(
            [sys.executable, "-m", "processman", *args, "--dir", str(self.data_dir), "--url", self.url],
            capture_output=True,
            text=True,
            timeout=60,
            env=environ,
        )


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    data_dir = tmp_path / "pb_data"
    data_dir.mkdir()
    (data_dir / "pb_processes.json").write_text(_entries("keep", "change", "remove"))
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k != "PROCESSMAN_TOKEN"}
    command = [sys.executable, "-m", "processman", "serve", "--dir", str(data_dir)]
    process = subprocess.Popen(
        [*command, "--http", f"127.0.0.1:{port}", "--no-watch-config"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environ,
    )
    server = Serve(data_dir, f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if all(server.pids().values()) and len(server.pids()) == 3:
                    break
            except (httpx.TransportError, FileNotFoundError, ValueError):
                pass
            assert process.poll() is None and time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.05)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def test_reload_dry_run_then_apply(serve: Serve) -> None:
    before = serve.pids()
    serve.config.write_text(_entries("keep", "change", "add", change={"env": {"MODE": "2"}}))
    dry = serve.cli("reload", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "added: add" in dry.stdout and "removed: remove" in dry.stdout
    assert "changed: change (env {} -> {'MODE': '2'})" in dry.stdout
    assert "(dry run: nothing was changed)" in dry.stdout
    assert serve.pids() == before

    applied = serve.cli("reload")
    assert applied.returncode == 0, applied.stderr
    after = serve.pids()
    assert list(after) == ["keep", "change", "add"]
    assert after["keep"] == before["keep"] and after["change"] != before["change"] and after["add"]


def test_a_broken_file_is_refused_with_its_problems(serve: Serve) -> None:
    before = serve.pids()
    serve.config.write_text(_entries("keep", "change", remove={}, change={"backoff": "soon"}))
    result = serve.cli("reload")
    assert result.returncode != 0
    assert "The config has errors; nothing changed. (HTTP 400)" in result.stderr
    assert 'backoff: expected a duration like "500ms", "2s" or "1m", got "soon"' in result.stderr
    answer = httpx.post(f"{serve.url}/api/pm/reload", headers=serve.headers())
    assert answer.status_code == 400 and answer.json()["status"] == 400
    assert serve.pids() == before


def test_a_hostile_file_is_a_400_with_its_problem(serve: Serve) -> None:
    before = serve.pids()
    for text in (
        "[" * 100_000 + "]" * 100_000,
        '[{"id": "a", "command": "true", "instances": ' + "9" * 5000 + "}]",
    ):
        serve.config.write_text(text)
        answer = httpx.post(f"{serve.url}/api/pm/reload", headers=serve.headers())
        assert answer.status_code == 400, answer.text
        (problem,) = answer.json()["data"]["problems"]
        assert problem.startswith(f"{serve.config}: ")
    assert serve.pids() == before
