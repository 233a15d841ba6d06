"""Noticing that the config file changed: its stat is compared every ``interval`` seconds.

One file needs no inotify thread: a watcher thread wakes several times a second for news, where one
``stat`` a second costs next to nothing, and an idle ``serve`` is meant to cost next to nothing.
Editors that save by writing a new file and renaming it over the old one change the inode, which is
part of the stamp; a save caught half written fails validation, changes nothing, and the next look
sees the finished file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

Stamp = tuple[int, int, int, int] | None


def file_stamp(path: Path) -> Stamp:
    """What identifies this version of the file (None: it does not exist or cannot be read)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)


async def watch_file(
    path: Path, on_change: Callable[[], Awaitable[None]], stop: asyncio.Event, interval: float = 1.0
) -> None:
    """Call ``on_change`` after the file changes (once per look, however many saves), until ``stop``
    is seen at the next look (or the task is cancelled)."""
    last = await asyncio.to_thread(file_stamp, path)
    while not stop.is_set():
        await asyncio.sleep(interval)  # a plain timer: waiting on ``stop`` as well cost ten times more
        if stop.is_set():
            return
        stamp = file_stamp(path)  # one stat: cheaper than handing it to a thread
        if stamp != last:
            last = stamp
            await asyncio.shield(on_change())
