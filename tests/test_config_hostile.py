"""A hostile config file (nesting 100,000 deep, a 5000-digit number, a folder, a FIFO) is a config
problem with a message naming the file, wherever the file is read: ``check``, ``serve``, the running
serve's watch of the file, and ``POST /api/pm/reload`` (see tests/cli/test_reload.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from processman import LoadedConfig, ProcessManager, Status, load_config
from tests.conftest import free_port, python_entry, wait_for, wait_until

DEEP = "[" * 100_000 + "]" * 100_000
HUGE_NUMBER = '[{"id": "a", "command": "true", "instances": ' + "9" * 5000 + "}]"
SERVE = [sys.executable, "-m", "processman", "serve"]
SLEEPER = "import time\nwhile True: time.sleep(1)"


KINDS = ["deep", "huge-number", "deep-object", "folder", "fifo"]


def make_hostile(path: Path, kind: str) -> Path:
    """Put a hostile config of this kind at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # nobody writes: reading it would block for ever
    else:
        path.write_text({"deep": DEEP, "huge-number": HUGE_NUMBER, "deep-object": '{"a":' * 50_000}[kind])
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_the_loader_reports_a_hostile_file(tmp_path: Path, kind: str) -> None:
    path = make_hostile(tmp_path / "pb_processes.json", kind)
    # In a thread, so that a read that blocks (the FIFO) fails the test instead of hanging it.
    result: list[LoadedConfig] = []
    reader = threading.Thread(target=lambda: result.append(load_config(path)), daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # lets the blocked read end
        pytest.fail(f"reading {kind} blocked")
    (loaded,) = result
    assert loaded.exists and loaded.processes == ()
    (problem,) = loaded.errors
    assert str(problem).startswith(f"{path}: ")


@pytest.mark.parametrize("kind", KINDS)
def test_check_prints_the_problem_and_exits_1(tmp_path: Path, kind: str) -> None:
    path = make_hostile(tmp_path / "pb_processes.json", kind)
    result = subprocess.run(
        [sys.executable, "-m", "processman", "check", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: {path}: " in result.stderr


@pytest.fixture
def serve_dir(tmp_path: Path) -> Iterator[Callable[[str], tuple[subprocess.Popen[bytes], str, Path]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(config_text: str) -> tuple[subprocess.Popen[bytes], str, Path]:
        data_dir = tmp_path / "pb_data"
        data_dir.mkdir()
        (data_dir / "pb_processes.json").write_text(config_text)
        port = free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PROCESSMAN_")}
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*SERVE, "--dir", str(data_dir), "--http", f"127.0.0.1:{port}", "--no-echo"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environ,
            )
        started.append(process)
        return process, f"http://127.0.0.1:{port}", log

    yield start
    for process in started:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


@pytest.mark.parametrize("kind", ["deep", "huge-number"])
def test_serve_keeps_running_with_no_processes_and_says_why(
    serve_dir: Callable[[str], tuple[subprocess.Popen[bytes], str, Path]], kind: str
) -> None:
    process, url, log = serve_dir(DEEP if kind == "deep" else HUGE_NUMBER)
    token_file = log.parent / "pb_data" / "processman" / "token"

    def headers() -> dict[str, str]:
        return {"Authorization": token_file.read_text().strip()}

    def listed() -> list[object] | None:
        assert process.poll() is None, log.read_text()
        try:
            response = httpx.get(f"{url}/api/pm/list", headers=headers())
        except (httpx.TransportError, FileNotFoundError):
            return None
        return response.json() if response.status_code == 200 else None

    assert wait_for(lambda: listed() is not None, 20, "serve's API") and listed() == []
    assert "pb_processes.json: " in log.read_text()


async def test_the_watch_reports_a_hostile_edit_and_applies_a_later_good_one(
    manager_factory: Callable[..., ProcessManager], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pb_processes.json"
    path.write_text(json.dumps([python_entry("a", SLEEPER)]))
    manager = manager_factory(
        *load_config(path).processes, config_path=path, watch_config=True, config_poll=0.02
    )
    await manager.start()
    await asyncio.sleep(0)  # lets the watch take its first look (a stamp of the file as it is now)
    for text in (DEEP, HUGE_NUMBER):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="processman"):
            path.write_text(text)
            await wait_until(
                manager,
                lambda: any("not applied" in r.getMessage() for r in caplog.records),
                what="the hostile edit reported",
            )
        assert any(str(path) in r.getMessage() for r in caplog.records)
    path.write_text(json.dumps([python_entry("a", SLEEPER), python_entry("b", SLEEPER)]))
    await wait_until(manager, lambda: manager.ids == ["a", "b"], what="the good edit applied")
    await wait_until(manager, lambda: manager.state("b").status is Status.RUNNING, what="b running")


def test_reading_a_folder_or_a_fifo_leaves_no_descriptor_open(tmp_path: Path) -> None:
    # The config is read again at every reload: a descriptor left open each time would add up.
    folder = tmp_path / "folder.json"
    folder.mkdir()
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    before = len(os.listdir("/proc/self/fd"))
    for path in (folder, fifo) * 20:
        assert load_config(path).errors
    assert len(os.listdir("/proc/self/fd")) == before
