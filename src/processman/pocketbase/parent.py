"""Noticing that the PocketBase which started the supervisor is going away, without polling.

Two signs, whichever comes first (the hook also sets a parent-death signal, SIGTERM, handled by the
runner; it may arrive more than once, and is one orderly stop however often):
- the stdin pipe PocketBase holds: ``stop`` then end of file when it shuts down on purpose, end of file
  alone when it dies (even by SIGKILL, since the kernel closes its end);
- the backend's watch on the parent process (a pidfd on Linux, kqueue on macOS), once it has exited.
"""

from __future__ import annotations

import asyncio
import os
import stat

from processman.engine import backend


class _StdinProtocol(asyncio.Protocol):
    def __init__(self, result: asyncio.Future[str]) -> None:
        self.result = result
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer = (self.buffer + data)[-64:]
        if b"stop\n" in self.buffer:
            self._set("PocketBase is shutting down")

    def eof_received(self) -> bool | None:
        self._set("PocketBase went away (the pipe it holds closed)")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._set("PocketBase went away (the pipe it holds closed)")

    def _set(self, reason: str) -> None:
        if not self.result.done():
            self.result.set_result(reason)


def stdin_is_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(0).st_mode)
    except OSError:
        return False


async def wait_for_parent_exit(*, watch_stdin: bool | None = None, parent_pid: int | None = None) -> str:
    """Returns a reason once the parent has gone or asked us to stop.

    ``watch_stdin`` defaults to "stdin is a pipe" (a terminal or /dev/null says nothing about the parent).
    """
    loop = asyncio.get_running_loop()
    result: asyncio.Future[str] = loop.create_future()
    parent = os.getppid() if parent_pid is None else parent_pid
    transport: asyncio.ReadTransport | None = None
    watch: backend.Watch | None = None
    facts = backend.current().facts

    def parent_exited() -> None:
        if not result.done() and not facts.alive(parent):
            result.set_result(f"PocketBase (pid {parent}) exited")

    try:
        if watch_stdin if watch_stdin is not None else stdin_is_pipe():
            pipe = os.fdopen(os.dup(0), "rb", buffering=0)
            transport, _ = await loop.connect_read_pipe(lambda: _StdinProtocol(result), pipe)
        if parent > 1:
            watch = backend.current().watch(parent, parent_exited)
            if os.getppid() != parent and parent_pid is None:
                parent_exited()  # it died before the watch began
        return await result
    finally:
        if transport is not None:
            transport.close()
        if watch is not None:
            watch.cancel()
