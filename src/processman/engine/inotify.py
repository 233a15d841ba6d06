"""Waiting for a file to change as an event on the event loop: inotify through ctypes (the standard
library has no binding), watched with ``loop.add_reader``. No polling where there is inotify (Linux);
elsewhere (macOS) the condition is checked at a growing interval, 10 ms up to 200 ms: only a
``"type": "forking"`` process's ``pidFile`` is waited for this way there, for 5 seconds at most.

One inotify instance per event loop serves every wait: a user has few instances (128 by default,
``fs.inotify.max_user_instances``) but many watches, and 500 processes stopping at once each wait on
their ``cgroup.events``."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import os
import struct
import weakref
from collections.abc import Callable
from pathlib import Path

from processman.engine.libc import libc

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_ATTRIB = 0x00000004
IN_MOVED_FROM = 0x00000040
IN_DELETE = 0x00000200
# A file appears in a folder, or is written there (a pid file).
IN_FILE_WRITTEN = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE


def _check(result: int, path: Path | None = None) -> int:
    if result < 0:
        number = ctypes.get_errno()
        if path is None:
            raise OSError(number, os.strerror(number))
        raise OSError(number, os.strerror(number), str(path))
    return result


IN_IGNORED = 0x00008000  # the watch is gone (the file was removed)
IN_MASK_ADD = 0x20000000  # a second wait on the same file adds its events to the watch
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


class _Hub:
    """The event loop's inotify instance: watches by descriptor, each with the callbacks of its waits."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._libc = libc()
        self.fd = _check(int(self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)))
        self._callbacks: dict[int, list[Callable[[], None]]] = {}
        loop.add_reader(self.fd, self._read)
        # The descriptor lives as long as the loop (tests make many loops).
        weakref.finalize(loop, os.close, self.fd)

    def watch(self, path: Path, mask: int, callback: Callable[[], None]) -> int:
        wd = _check(int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask | IN_MASK_ADD)), path)
        self._callbacks.setdefault(wd, []).append(callback)
        return wd

    def unwatch(self, wd: int, callback: Callable[[], None]) -> None:
        callbacks = self._callbacks.get(wd)
        if callbacks is None or callback not in callbacks:
            return  # the watch went with its file (and its number may serve another file now)
        callbacks.remove(callback)
        if not callbacks:
            del self._callbacks[wd]
            self._libc.inotify_rm_watch(self.fd, wd)  # fails harmlessly if the file went meanwhile

    def _read(self) -> None:
        woken: dict[int, list[Callable[[], None]]] = {}
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self.fd, 65536):
                offset = 0
                while offset + _EVENT.size <= len(data):
                    wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                    offset += _EVENT.size + length
                    callbacks = self._callbacks.get(wd)
                    if callbacks is not None:
                        woken[wd] = callbacks
                    if mask & IN_IGNORED:
                        self._callbacks.pop(wd, None)
        for callbacks in woken.values():
            for callback in tuple(callbacks):
                callback()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Hub] = weakref.WeakKeyDictionary()


def _hub() -> _Hub | None:
    """The loop's inotify instance; None where the C library has no inotify."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        if not hasattr(libc(), "inotify_init1"):
            return None
        hub = _hubs[loop] = _Hub(loop)
    return hub


def watch(watched: Path, mask: int, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback()`` on the event loop after each batch of inotify events of ``mask`` on
    ``watched``, until the returned function is called. Raises OSError when it cannot be watched."""
    hub = _hub()
    if hub is None:
        raise OSError(errno.ENOSYS, "no inotify here")
    wd = hub.watch(watched, mask, callback)
    return functools.partial(hub.unwatch, wd, callback)


def _require(watched: Path) -> None:
    if not os.path.exists(watched):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(watched))


async def _check_growing(condition: Callable[[], bool], timeout: float | None) -> bool:
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    delay = 0.01
    while not condition():
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            return False
        await asyncio.sleep(delay if left is None else min(delay, left))
        delay = min(delay * 2, 0.2)
    return True


async def wait_until(watched: Path, mask: int, condition: Callable[[], bool], timeout: float | None) -> bool:
    """Wait until ``condition()`` holds, checking it now and after each inotify event of ``mask`` on
    ``watched`` (a file, or a folder for the files in it); at most ``timeout`` seconds (None: no limit).
    Returns whether it holds. Raises FileNotFoundError when ``watched`` does not exist."""
    hub = _hub()
    if hub is None:
        _require(watched)
        return await _check_growing(condition, timeout)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_event() -> None:
        if not done.done() and condition():
            done.set_result(None)

    wd = hub.watch(watched, mask, on_event)
    try:
        if condition():
            return True
        await asyncio.wait([done], timeout=timeout)
        return done.done() or condition()
    finally:
        hub.unwatch(wd, on_event)
