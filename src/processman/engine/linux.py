"""The linux backend: a pidfd per watched process (readable once it has exited), ``/proc`` for the facts,
``prctl`` for the subreaper. Nothing polls."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterable

from processman.engine.procfs import ProcfsFacts


class PidfdWatch:
    def __init__(self, loop: asyncio.AbstractEventLoop, pid: int, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._fd: int | None = None
        try:
            self._fd = os.pidfd_open(pid)
        except ProcessLookupError:  # already gone (and reaped): the callback finds out
            loop.call_soon(callback)
            return
        loop.add_reader(self._fd, callback)

    def cancel(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if not self._loop.is_closed():
            self._loop.remove_reader(fd)
        os.close(fd)


class SignalWatch:
    """The loop's SIGCHLD handler (the linux backend uses the signal for nothing else)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop: asyncio.AbstractEventLoop | None = loop
        loop.add_signal_handler(signal.SIGCHLD, callback)
        quiet_wakeups()

    def cancel(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_signal_handler(signal.SIGCHLD)


def quiet_wakeups() -> None:
    """Hundreds of children exiting at once overflow the loop's wakeup pipe; one wakeup is enough, so
    the "wakeup fd is full" warnings are noise."""
    signal.set_wakeup_fd(signal.set_wakeup_fd(-1), warn_on_full_buffer=False)


class LinuxBackend:
    name = "linux"
    subreaper = True

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.facts = ProcfsFacts()

    def __repr__(self) -> str:
        return f"<LinuxBackend {self.reason}>"

    def watch(self, pid: int, callback: Callable[[], None], *, child: bool = False) -> PidfdWatch:
        return PidfdWatch(asyncio.get_running_loop(), pid, callback)

    def on_sigchld(self, callback: Callable[[], None]) -> SignalWatch:
        return SignalWatch(asyncio.get_running_loop(), callback)

    async def wait_for_exit(self, pids: Iterable[int], timeout: float | None) -> set[int]:
        loop = asyncio.get_running_loop()
        waiting: dict[int, tuple[int, asyncio.Future[None]]] = {}
        try:
            for pid in set(pids):
                try:
                    fd = os.pidfd_open(pid)
                except OSError:  # gone already
                    continue
                future: asyncio.Future[None] = loop.create_future()
                waiting[pid] = (fd, future)
                loop.add_reader(fd, _resolve, future)
            if waiting:
                await asyncio.wait([future for _, future in waiting.values()], timeout=timeout)
            return {pid for pid, (_, future) in waiting.items() if not future.done()}
        finally:
            for fd, _ in waiting.values():
                loop.remove_reader(fd)
                os.close(fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
