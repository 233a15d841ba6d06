"""Noticing that the config file changed: its stat is compared every ``interval`` seconds.

One file needs no inotify thread: a watcher thread wakes several times a second for news, where one
``stat`` a second costs next to nothing, and an idle ``serve`` is meant to cost next to nothing.
Editors that save by writing a new file and renaming it over the old one change the inode, which is
part of the stamp; a save caught half written fails validation, changes nothing, and the next look
sees the finished file.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

logger = logging.getLogger(__name__)

Stamp = tuple[int, int, int, int] | None


def file_stamp(path: Path) -> Stamp:
    """What identifies this version of the file (None: it does not exist or cannot be read)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)


async def watch_file(path: Path, on_change: Callable[[], Awaitable[None]], interval: float = 1.0) -> None:
    """Call ``on_change`` after the file changes (once per look, however many saves), until the task
    is cancelled. A change being applied is not cut short by the cancellation."""
    last = file_stamp(path)  # one stat: cheaper than handing it to a thread
    while True:
        await asyncio.sleep(interval)  # a plain timer: a wait on an event as well cost ten times more
        stamp = file_stamp(path)
        if stamp != last:
            last = stamp
            try:
                await asyncio.shield(on_change())
            except Exception:
                # One failed look must not end the watch: a later save is still applied.
                logger.exception("applying the change to %s failed", path)
