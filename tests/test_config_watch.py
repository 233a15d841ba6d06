"""The config file's watch: a change of content, size or inode is noticed once; cancelling ends it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from processman.config_watch import Stamp, file_stamp, watch_file


async def test_each_kind_of_save_is_noticed_once(tmp_path: Path) -> None:
    path = tmp_path / "pb_processes.json"
    path.write_text("[]")
    noticed: asyncio.Queue[Stamp] = asyncio.Queue()

    async def on_change() -> None:
        await noticed.put(file_stamp(path))

    watcher = asyncio.create_task(watch_file(path, on_change, interval=0.02))
    await asyncio.sleep(0.05)

    def rename_over() -> None:  # how editors save: same size and content, a new inode
        (tmp_path / "new").write_text("[ ]")
        (tmp_path / "new").replace(path)

    saves: list[Callable[[], object]] = [
        lambda: path.write_text("[ ]"),  # new size
        lambda: os.utime(path, ns=(0, 10**18)),  # same size, new modification time
        rename_over,
        path.unlink,  # gone
        lambda: path.write_text("[]"),  # back
    ]
    for save in saves:
        save()
        assert await asyncio.wait_for(noticed.get(), 2) == file_stamp(path)
    await asyncio.sleep(0.1)  # several looks at an unchanged file
    assert noticed.empty()
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert watcher.cancelled()


async def test_a_look_that_fails_does_not_end_the_watch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pb_processes.json"
    path.write_text("[]")
    noticed: asyncio.Queue[Stamp] = asyncio.Queue()

    async def on_change() -> None:
        await noticed.put(file_stamp(path))
        if noticed.qsize() == 1:
            raise RuntimeError("the first change cannot be applied")

    watcher = asyncio.create_task(watch_file(path, on_change, interval=0.02))
    await asyncio.sleep(0)  # the first look: a stamp of the file as it is now
    path.write_text("[ ]")
    assert await asyncio.wait_for(noticed.get(), 2) == file_stamp(path)
    path.write_text("[  ]")
    assert await asyncio.wait_for(noticed.get(), 2) == file_stamp(path)  # still watching
    assert "the first change cannot be applied" in caplog.text
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)


async def test_a_save_is_noticed_without_waiting_for_a_look(tmp_path: Path) -> None:
    """inotify wakes the watch: a save is noticed long before the fallback's look would come."""
    path = tmp_path / "pb_processes.json"
    path.write_text("[]")
    noticed: asyncio.Queue[Stamp] = asyncio.Queue()

    async def on_change() -> None:
        await noticed.put(file_stamp(path))

    watcher = asyncio.create_task(watch_file(path, on_change, interval=3600))
    await asyncio.sleep(0)  # the watch is in place
    path.write_text("[ ]")
    assert await asyncio.wait_for(noticed.get(), 10) == file_stamp(path)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
