"""The runner: its services run in a task group, and one that fails stops serve at once with exit
code 1, its error in the log, while the processes still get their orderly stop."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from processman import ProcessManager
from processman.runner import Runner, ServeSettings
from tests.conftest import tagged_processes


class Failing:
    """Up, then fails when the test says so."""

    name = "failing service"

    def __init__(self) -> None:
        self.fail = asyncio.Event()
        self.running = asyncio.Event()

    async def run(
        self, manager: ProcessManager, ready: Callable[[], None], request_stop: Callable[[str], None]
    ) -> None:
        ready()
        self.running.set()
        await self.fail.wait()
        raise RuntimeError("the socket went away")


class Steady:
    """Runs until cancelled, and says whether it was."""

    name = "steady service"

    def __init__(self) -> None:
        self.cancelled = False

    async def run(
        self, manager: ProcessManager, ready: Callable[[], None], request_stop: Callable[[str], None]
    ) -> None:
        ready()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Quitter:
    """Ends by itself without being asked (as uvicorn does when its start-up fails)."""

    name = "quitter"

    async def run(
        self, manager: ProcessManager, ready: Callable[[], None], request_stop: Callable[[str], None]
    ) -> None:
        return


def _settings(tmp_path: Path, *services: object) -> ServeSettings:
    config = tmp_path / "pb_processes.json"
    sleeper = {"id": "sleeper", "command": sys.executable, "args": ["-c", "import time; time.sleep(3600)"]}
    config.write_text(json.dumps([sleeper]))
    settings = ServeSettings(config, tmp_path, watch_config=False)
    settings.services.extend(services)  # type: ignore[arg-type]
    return settings


async def test_a_service_that_fails_stops_serve_at_once_with_exit_code_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failing, steady = Failing(), Steady()
    runner = Runner(_settings(tmp_path, failing, steady))
    run = asyncio.create_task(runner.run())
    await failing.running.wait()
    assert runner.manager is not None
    run_id = runner.manager.run_id
    assert tagged_processes(f"{run_id}:")
    with caplog.at_level(logging.INFO):
        failing.fail.set()
        assert await asyncio.wait_for(run, 30) == 1
    assert "failing service failed: the socket went away" in caplog.text
    assert "stopping: failing service failed" in caplog.text
    assert steady.cancelled
    assert tagged_processes(f"{run_id}:") == []


async def test_a_service_that_ends_by_itself_stops_serve_with_exit_code_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner = Runner(_settings(tmp_path, Quitter(), Steady()))
    assert await asyncio.wait_for(runner.run(), 30) == 1
    assert "quitter ended unexpectedly" in caplog.text
