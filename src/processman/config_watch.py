"""Noticing that the config file changed: inotify on its folder wakes the watch when a file there is
written, renamed, removed or touched, and the file's stat is compared; without inotify, every
``interval`` seconds.

An idle ``serve`` is meant to cost next to nothing: inotify wakes nothing until a file of the folder
changes (a look once a second was one of its two wake-ups a second). Editors that save by writing a
new file and renaming it over the old one change the inode, which is part of the stamp; a save caught
half written fails validation, changes nothing, and the next event brings the finished file.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from processman.engine import inotify

logger = logging.getLogger(__name__)

Stamp = tuple[int, int, int, int] | None
# A file of the folder was written and closed, renamed in or out, removed, or touched.
FOLDER_EVENTS = inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO | inotify.IN_MOVED_FROM
FOLDER_EVENTS |= inotify.IN_DELETE | inotify.IN_ATTRIB


def file_stamp(path: Path) -> Stamp:
    """What identifies this version of the file (None: it does not exist or cannot be read)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)


async def watch_file(path: Path, on_change: Callable[[], Awaitable[None]], interval: float = 1.0) -> None:
    """Call ``on_change`` after the file changes (once per look, however many saves), until the task
    is cancelled. A change being applied is not cut short by the cancellation. ``interval``: how often
    to look where inotify cannot watch the file's folder."""
    last = file_stamp(path)  # one stat: cheaper than handing it to a thread
    woken = asyncio.Event()
    try:
        unwatch: Callable[[], None] | None = inotify.watch(path.parent, FOLDER_EVENTS, woken.set)
    except OSError as exc:  # no inotify here (or no instance left): look every interval
        logger.debug("cannot watch %s with inotify (%s): looking every %ss", path.parent, exc, interval)
        unwatch = None
    try:
        while True:
            if unwatch is None:
                await asyncio.sleep(interval)
            else:
                await woken.wait()
                woken.clear()
            stamp = file_stamp(path)
            if stamp != last:
                last = stamp
                try:
                    await asyncio.shield(on_change())
                except Exception:
                    # One failed look must not end the watch: a later save is still applied.
                    logger.exception("applying the change to %s failed", path)
    finally:
        if unwatch is not None:
            unwatch()
