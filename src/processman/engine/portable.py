"""The portable backend: any POSIX system with psutil, no pidfds, no ``/proc``, no subreaper.

How an exit is noticed, best first:

kqueue (macOS, the BSDs)
    ``KQ_FILTER_PROC`` with ``KQ_NOTE_EXIT`` on any pid, the kqueue's descriptor read by the event loop:
    one event per exit, nothing polls.
``SIGCHLD`` (elsewhere, e.g. Linux without pidfds)
    for the manager's own children: the event loop's signal handler runs each watcher's check, once
    per loop iteration however many signals came. Nothing polls.
a timer (a process that is not a child, where there is no kqueue)
    checked at a growing interval (10 ms up to 200 ms): a grandchild, a daemon that left its parent.
    Only the stop ladder waits on these, and only while it stops a tree.

Facts come from psutil (:class:`processman.engine.psutil_facts.PsutilFacts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import select
import signal
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from processman.engine.linux import quiet_wakeups

POLL_FIRST = 0.01
POLL_MOST = 0.2


class _SigchldWatcher:
    """One per event loop: a ``SIGCHLD`` handler that runs every watcher's check, installed while any
    watcher is registered."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._checks: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self._scheduled = False

    def add(self, check: Callable[[], None]) -> _SigchldWatch:
        if not self._checks:
            # Raises (ValueError, RuntimeError) outside the main thread: the caller falls back.
            self._loop.add_signal_handler(signal.SIGCHLD, self._signalled)
            quiet_wakeups()
        key = next(self._ids)
        self._checks[key] = check
        self._loop.call_soon(check)  # it may have exited before the handler was there
        return _SigchldWatch(self, key)

    def remove(self, key: int) -> None:
        if self._checks.pop(key, None) is not None and not self._checks and not self._loop.is_closed():
            self._loop.remove_signal_handler(signal.SIGCHLD)

    def _signalled(self) -> None:
        # Many children exiting at once send many signals: one run of the checks answers them all.
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        for key, check in list(self._checks.items()):
            if key in self._checks:  # not cancelled by a check that ran before it
                check()


class _SigchldWatch:
    def __init__(self, watcher: _SigchldWatcher, key: int) -> None:
        self._watcher: _SigchldWatcher | None = watcher
        self._key = key

    def cancel(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.remove(self._key)


class _KqueueWatcher:
    """One per event loop: a kqueue whose exit events the loop reads."""

    def __init__(self, loop: asyncio.AbstractEventLoop, kqueue: Any) -> None:
        self._loop = loop
        self._kqueue = kqueue
        self._callbacks: dict[int, dict[int, Callable[[], None]]] = {}
        self._ids = itertools.count()
        loop.add_reader(kqueue.fileno(), self._drain)

    def add(self, pid: int, callback: Callable[[], None]) -> _KqueueWatch:
        key = next(self._ids)
        if pid not in self._callbacks:
            event = select.kevent(  # type: ignore[attr-defined,unused-ignore]
                pid,
                filter=select.KQ_FILTER_PROC,  # type: ignore[attr-defined,unused-ignore]
                flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT,  # type: ignore[attr-defined,unused-ignore]
                fflags=select.KQ_NOTE_EXIT,  # type: ignore[attr-defined,unused-ignore]
            )
            try:
                self._kqueue.control([event], 0, 0)
            except ProcessLookupError:  # gone already
                self._loop.call_soon(callback)
                return _KqueueWatch(self, pid, key)
        self._callbacks.setdefault(pid, {})[key] = callback
        self._loop.call_soon(callback)  # a zombie already: its exit event may have come and gone
        return _KqueueWatch(self, pid, key)

    def remove(self, pid: int, key: int) -> None:
        callbacks = self._callbacks.get(pid)
        if callbacks is None or callbacks.pop(key, None) is None or callbacks:
            return
        del self._callbacks[pid]
        event = select.kevent(  # type: ignore[attr-defined,unused-ignore]
            pid,
            filter=select.KQ_FILTER_PROC,  # type: ignore[attr-defined,unused-ignore]
            flags=select.KQ_EV_DELETE,  # type: ignore[attr-defined,unused-ignore]
        )
        with contextlib.suppress(OSError):  # it fired (one-shot) or the process is gone
            self._kqueue.control([event], 0, 0)

    def _drain(self) -> None:
        for event in self._kqueue.control(None, 256, 0):
            for callback in list(self._callbacks.pop(event.ident, {}).values()):
                callback()


class _KqueueWatch:
    def __init__(self, watcher: _KqueueWatcher, pid: int, key: int) -> None:
        self._watcher: _KqueueWatcher | None = watcher
        self._pid = pid
        self._key = key

    def cancel(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.remove(self._pid, self._key)


class _TimerWatch:
    """Calls back at a growing interval until cancelled: for a process that is not a child, without
    kqueue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._delay = POLL_FIRST
        self._handle: asyncio.Handle | None = loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._handle = self._loop.call_later(self._delay, self._tick)
        self._delay = min(self._delay * 2, POLL_MOST)
        self._callback()

    def cancel(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()


class PortableBackend:
    name = "portable"
    subreaper = False

    def __init__(self, reason: str, *, use_kqueue: bool = True) -> None:
        from processman.engine.psutil_facts import PsutilFacts  # psutil: this backend's only

        self.reason = reason
        self.facts = PsutilFacts()
        self._make_kqueue: Callable[[], Any] | None = getattr(select, "kqueue", None) if use_kqueue else None
        self._kqueues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _KqueueWatcher] = (
            weakref.WeakKeyDictionary()
        )
        self._sigchld: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SigchldWatcher] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"<PortableBackend {self.exits} ({self.reason})>"

    @property
    def exits(self) -> str:
        """How exits are noticed, for people."""
        return "kqueue" if self._make_kqueue is not None else "SIGCHLD"

    def watch(
        self, pid: int, callback: Callable[[], None], *, child: bool = False
    ) -> _KqueueWatch | _SigchldWatch | _TimerWatch:
        loop = asyncio.get_running_loop()
        if self._make_kqueue is not None:
            watcher = self._kqueues.get(loop)
            if watcher is None:
                watcher = self._kqueues[loop] = _KqueueWatcher(loop, self._make_kqueue())
            return watcher.add(pid, callback)
        if child:
            with contextlib.suppress(ValueError, RuntimeError):  # not the main thread: a timer
                return self._sigchld_watcher(loop).add(callback)
        return _TimerWatch(loop, callback)

    def on_sigchld(self, callback: Callable[[], None]) -> _SigchldWatch:
        return self._sigchld_watcher(asyncio.get_running_loop()).add(callback)

    def _sigchld_watcher(self, loop: asyncio.AbstractEventLoop) -> _SigchldWatcher:
        watcher = self._sigchld.get(loop)
        if watcher is None:
            watcher = self._sigchld[loop] = _SigchldWatcher(loop)
        return watcher

    async def wait_for_exit(self, pids: Iterable[int], timeout: float | None) -> set[int]:
        loop = asyncio.get_running_loop()
        own = os.getpid()
        waiting: dict[int, asyncio.Future[None]] = {}
        watches: list[_KqueueWatch | _SigchldWatch | _TimerWatch] = []
        try:
            for pid in set(pids):
                stat = self.facts.stat(pid)
                if stat is None:  # gone, or a zombie
                    continue
                future: asyncio.Future[None] = loop.create_future()
                waiting[pid] = future
                watches.append(self.watch(pid, self._checker(pid, future), child=stat.parent == own))
            if waiting:
                await asyncio.wait(waiting.values(), timeout=timeout)
            return {pid for pid, future in waiting.items() if not future.done()}
        finally:
            for watch in watches:
                watch.cancel()

    def _checker(self, pid: int, future: asyncio.Future[None]) -> Callable[[], None]:
        def check() -> None:
            if not future.done() and not self.facts.alive(pid):
                future.set_result(None)

        return check
