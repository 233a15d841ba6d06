"""Waiting for files to change through inotify, many waits at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from processman.engine import inotify


async def test_more_waits_at_once_than_the_users_inotify_instances(tmp_path: Path) -> None:
    # A user has 128 inotify instances by default (fs.inotify.max_user_instances): 500 processes
    # stopping together each wait on their cgroup.events, so the waits must share an instance.
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    files = [tmp_path / f"f{n}" for n in range(limit + 72)]
    for file in files:
        file.write_text("")

    def written(file: Path) -> Callable[[], bool]:
        return lambda: file.read_text() == "x"

    waits = [
        asyncio.create_task(inotify.wait_until(file, inotify.IN_MODIFY, written(file), 10)) for file in files
    ]
    await asyncio.sleep(0)  # every wait is watching
    for file in files:
        file.write_text("x")
    assert await asyncio.gather(*waits) == [True] * len(files)


async def test_two_waits_on_one_file_with_different_events(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    pid_file = folder / "app.pid"
    appeared = asyncio.create_task(inotify.wait_until(folder, inotify.IN_FILE_WRITTEN, pid_file.exists, 10))
    timed_out = await inotify.wait_until(folder, inotify.IN_MODIFY, lambda: False, 0.05)
    pid_file.write_text("42")
    assert await appeared and not timed_out
