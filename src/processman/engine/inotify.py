"""Waiting for a file to change as an event on the event loop: inotify through ctypes (the standard
library has no binding), one descriptor per wait, watched with ``loop.add_reader``. No polling."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable
from pathlib import Path

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
# A file appears in a folder, or is written there (a pid file).
IN_FILE_WRITTEN = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(result: int, path: Path | None = None) -> int:
    if result < 0:
        number = ctypes.get_errno()
        if path is None:
            raise OSError(number, os.strerror(number))
        raise OSError(number, os.strerror(number), str(path))
    return result


async def wait_until(watched: Path, mask: int, condition: Callable[[], bool], timeout: float | None) -> bool:
    """Wait until ``condition()`` holds, checking it now and after each inotify event of ``mask`` on
    ``watched`` (a file, or a folder for the files in it); at most ``timeout`` seconds (None: no limit).
    Returns whether it holds. Raises FileNotFoundError when ``watched`` does not exist."""
    libc = _libc()
    fd = _check(int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)))
    loop = asyncio.get_running_loop()
    reading = False
    try:
        _check(int(libc.inotify_add_watch(fd, os.fsencode(watched), mask)), watched)
        if condition():
            return True
        done: asyncio.Future[None] = loop.create_future()

        def on_event() -> None:
            with contextlib.suppress(BlockingIOError):
                while os.read(fd, 4096):
                    pass
            if not done.done() and condition():
                done.set_result(None)

        loop.add_reader(fd, on_event)
        reading = True
        await asyncio.wait([done], timeout=timeout)
        return done.done() or condition()
    finally:
        if reading:
            loop.remove_reader(fd)
        os.close(fd)
