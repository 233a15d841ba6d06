"""Seed User Story 4 and SPEC 7: development mode restarts on changes, debounced, ignoring noise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from processman import ProcessManager, Status
from tests.conftest import config, wait_until

Factory = Callable[..., ProcessManager]
SLEEPER = "import time\nwhile True: time.sleep(1)"


async def _watched(manager_factory: Factory, folder: Path, **fields: object) -> ProcessManager:
    manager = manager_factory(config("dev", SLEEPER, cwd=folder, dev_mode=True, **fields))
    await manager.start()
    await asyncio.sleep(0.3)  # let the watcher register its inotify watches before touching files
    return manager


async def test_a_save_restarts_within_two_seconds(manager_factory: Factory, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("v1")
    manager = await _watched(manager_factory, tmp_path)
    pid = manager.state("dev").pid
    saved = time.monotonic()
    (tmp_path / "app.py").write_text("v2")
    await wait_until(manager, lambda: manager.state("dev").pid not in (0, pid), timeout=5, what="new pid")
    assert time.monotonic() - saved < 2.0  # seed SC-003
    assert manager.state("dev").status is Status.RUNNING and manager.state("dev").restart_count == 1


async def test_a_burst_of_saves_causes_one_restart(manager_factory: Factory, tmp_path: Path) -> None:
    manager = await _watched(manager_factory, tmp_path)
    for index in range(5):
        (tmp_path / f"f{index}.py").write_text("x")
        await asyncio.sleep(0.08)  # five saves within 400 ms
    await wait_until(manager, lambda: manager.state("dev").restart_count >= 1, timeout=5, what="restart")
    await asyncio.sleep(0.8)  # longer than the debounce window: a second restart would show now
    assert manager.state("dev").restart_count == 1


async def test_the_window_is_the_process_own_watch_debounce(manager_factory: Factory, tmp_path: Path) -> None:
    manager = await _watched(manager_factory, tmp_path, watch_debounce=0.05)
    (tmp_path / "a.py").write_text("x")
    await asyncio.sleep(0.3)  # inside the default 500 ms window, past this process's 50 ms one
    (tmp_path / "b.py").write_text("x")
    await wait_until(manager, lambda: manager.state("dev").restart_count == 2, timeout=5, what="2 restarts")


async def test_folders_created_later_are_watched(manager_factory: Factory, tmp_path: Path) -> None:
    manager = await _watched(manager_factory, tmp_path)
    (tmp_path / "pkg").mkdir()
    await wait_until(
        manager, lambda: manager.state("dev").restart_count == 1, timeout=5, what="mkdir restart"
    )
    await asyncio.sleep(0.7)
    (tmp_path / "pkg" / "mod.py").write_text("x")
    await wait_until(
        manager, lambda: manager.state("dev").restart_count == 2, timeout=5, what="nested restart"
    )


async def test_noise_is_ignored(manager_factory: Factory, tmp_path: Path) -> None:
    for folder in (".git", "__pycache__", "node_modules", "venv"):
        (tmp_path / folder).mkdir()
    manager = await _watched(manager_factory, tmp_path)
    (tmp_path / ".git" / "HEAD").write_text("x")
    (tmp_path / "__pycache__" / "a.cpython-311.pyc").write_text("x")
    (tmp_path / "node_modules" / "x.js").write_text("x")
    (tmp_path / "venv" / "x.py").write_text("x")
    (tmp_path / "app.log").write_text("x")
    (tmp_path / "mod.pyc").write_text("x")
    await asyncio.sleep(1.0)
    assert manager.state("dev").restart_count == 0


async def test_watch_paths_limit_what_is_watched(manager_factory: Factory, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    manager = await _watched(manager_factory, tmp_path, watch_paths=("src",))
    (tmp_path / "README.md").write_text("x")
    await asyncio.sleep(0.8)
    assert manager.state("dev").restart_count == 0
    (tmp_path / "src" / "a.py").write_text("x")
    await wait_until(manager, lambda: manager.state("dev").restart_count == 1, timeout=5, what="restart")


async def test_dev_mode_off_watches_nothing(manager_factory: Factory, tmp_path: Path) -> None:
    manager = manager_factory(config("prod", SLEEPER, cwd=tmp_path))
    await manager.start()
    await asyncio.sleep(0.3)
    (tmp_path / "app.py").write_text("x")
    await asyncio.sleep(0.8)
    assert manager.state("prod").restart_count == 0


async def test_a_stopped_process_stays_stopped_on_changes(manager_factory: Factory, tmp_path: Path) -> None:
    manager = await _watched(manager_factory, tmp_path)
    await manager.stop_process("dev")
    (tmp_path / "app.py").write_text("x")
    await asyncio.sleep(0.9)
    assert manager.state("dev").status is Status.STOPPED
