"""The sd_notify protocol: one run's ``NOTIFY_SOCKET``, and its watchdog.

Many daemons and libraries already speak it (``systemd-notify``, ``sdnotify``, ``sd_notify(3)``): the
child sends datagrams of ``KEY=value`` lines to the socket named by ``NOTIFY_SOCKET``. Each run of a
process that needs it (``type: notify``, or a ``watchdogSec``) gets its own socket in the Linux abstract
namespace (``@processman/<run>/<id>/<n>``: no file to clean up, no path length limit); a datagram counts
only when the kernel says it comes from a process of the manager's own user.

Understood: ``READY=1`` (the run is ready), ``STATUS=...`` (shown with the process), ``WATCHDOG=1`` (fed),
``WATCHDOG=trigger`` (fail now), ``WATCHDOG_USEC=`` (a new watchdog period), ``EXTEND_TIMEOUT_USEC=`` (the
next WATCHDOG=1, or a stop under way, may take that long), ``MAINPID=`` (the run's main process once
the started one exits), ``STOPPING=1`` (no longer ready) and ``BARRIER=1`` (``systemd-notify`` waits
until the descriptor it sends is closed).
Descriptors sent with any message are closed at once.

The listener owns no process state: it reports through a :class:`NotifyReport`, the readiness and
liveness path of ``engine.health``, and its process decides and writes.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import logging
import os
import socket
import struct
import time
from typing import Protocol

from processman.durations import format_duration
from processman.engine.clock import Clock
from processman.engine.health import HealthReport

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 4096
MAX_FDS = 64  # descriptors one message may carry (all closed at once)
_CREDENTIALS = struct.Struct("3i")  # pid, uid, gid
_FD = array.array("i").itemsize
_sockets = itertools.count(1)


class NotifyReport(HealthReport, Protocol):
    """What a notify listener tells its process, beyond readiness and liveness."""

    def status_text(self, text: str) -> None:
        """``STATUS=``: a line describing what the process is doing."""

    def main_pid(self, pid: int) -> None:
        """``MAINPID=``: the process that is the service."""

    def stopping(self) -> None:
        """``STOPPING=1``: the process is shutting down (no longer ready)."""


class NotifyListener:
    """The ``NOTIFY_SOCKET`` of one run and its watchdog. :meth:`open` before the spawn, :meth:`watch`
    for as long as the run lasts (it is the watchdog), :meth:`close` after."""

    def __init__(
        self,
        run_id: str,
        process_id: str,
        report: NotifyReport,
        clock: Clock,
        *,
        notify_type: bool,
        watchdog: float | None,
    ) -> None:
        self.name = f"processman/{run_id}/{process_id}/{next(_sockets)}"
        self._report = report
        self._clock = clock
        self._notify_type = notify_type
        self.watchdog = watchdog if watchdog else None  # 0: off, as systemd's WatchdogSec=0
        self._socket: socket.socket | None = None
        self._ready = False
        self._deadline: float | None = None
        self._uid = os.getuid()
        self.extended_until = 0.0  # time.monotonic() before which a stop must not kill (EXTEND_TIMEOUT_USEC)

    def __repr__(self) -> str:
        return f"<NotifyListener @{self.name}>"

    @property
    def address(self) -> str:
        """The ``NOTIFY_SOCKET`` value: ``@`` names the abstract namespace."""
        return "@" + self.name

    def environment(self) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": self.address}
        if self.watchdog is not None:
            env["WATCHDOG_USEC"] = str(round(self.watchdog * 1_000_000))
        return env

    def open(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            sock.bind("\0" + self.name)
            asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        except BaseException:
            sock.close()
            raise
        self._socket = sock
        if self.watchdog is not None:
            self._deadline = self._clock.monotonic() + self.watchdog

    def stop_began(self) -> None:
        """A stop begins: only an extension asked from now on holds off its SIGKILL (one asked while
        starting or running was for that phase, as systemd's)."""
        self.extended_until = 0.0

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    # ---- reading -----------------------------------------------------------------------------------

    def _readable(self) -> None:
        sock = self._socket
        if sock is None:
            return
        ancillary = socket.CMSG_SPACE(_CREDENTIALS.size) + socket.CMSG_SPACE(MAX_FDS * _FD)
        for _ in range(64):  # a bounded burst per wake-up: the loop stays responsive
            try:
                data, ancdata, _, _ = sock.recvmsg(MAX_DATAGRAM, ancillary, socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("%s: cannot read: %s", self, exc)
                return
            uid = None
            for level, kind, payload in ancdata:
                if level != socket.SOL_SOCKET:
                    continue
                if kind == socket.SCM_RIGHTS:
                    # A barrier, or descriptors to store: closed at once (the sender waits for that).
                    fds = array.array("i")
                    fds.frombytes(payload[: len(payload) - len(payload) % _FD])
                    for fd in fds:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                elif kind == socket.SCM_CREDENTIALS and len(payload) >= _CREDENTIALS.size:
                    uid = _CREDENTIALS.unpack_from(payload)[1]
            if uid != self._uid:
                logger.warning("%s: a message from another user (uid %s) was ignored", self, uid)
                continue
            self._handle(data.decode("utf-8", "replace"))

    def _handle(self, text: str) -> None:
        for line in text.split("\n"):
            key, sep, value = line.partition("=")
            if not sep:
                continue
            if key == "READY" and value == "1":
                if self._notify_type and not self._ready:
                    self._ready = True
                    self._report.note("ready (READY=1)")
                    self._report.became_ready()
            elif key == "STATUS":
                self._report.status_text(value[:1000])
            elif key == "WATCHDOG":
                if value == "1":
                    self._feed(self.watchdog)
                elif value == "trigger":
                    self._fail("watchdog: the process asked for a restart (WATCHDOG=trigger)")
            elif key == "WATCHDOG_USEC" and value.isdigit() and int(value) > 0:
                self.watchdog = int(value) / 1_000_000
                self._feed(self.watchdog)
            elif key == "EXTEND_TIMEOUT_USEC" and value.isdigit():
                extension = int(value) / 1_000_000
                self._report.note(f"the process asks for {format_duration(extension)} more")
                self._feed(max(extension, self._left()))
                # A stop under way waits until then before SIGKILL (the ladder keeps real time).
                self.extended_until = time.monotonic() + extension
            elif key == "MAINPID" and value.isdigit():
                self._report.main_pid(int(value))
            elif key == "STOPPING" and value == "1":
                self._report.note("stopping (STOPPING=1)")
                self._report.stopping()

    # ---- the watchdog ------------------------------------------------------------------------------

    def _left(self) -> float:
        return 0.0 if self._deadline is None else max(0.0, self._deadline - self._clock.monotonic())

    def _feed(self, period: float | None) -> None:
        if self.watchdog is None or period is None:
            return
        self._deadline = self._clock.monotonic() + period

    def _fail(self, reason: str) -> None:
        self._deadline = None
        self._report.note(f"{reason}; restarting")
        self._report.unhealthy(reason)

    async def watch(self) -> None:
        """The watchdog: reports the run unhealthy when a deadline passes unfed (each WATCHDOG=1 moves
        the deadline on). Returns at once without a watchdog."""
        while self.watchdog is not None and self._deadline is not None:
            left = self._deadline - self._clock.monotonic()
            if left <= 0:
                self._fail(f"watchdog: no WATCHDOG=1 within {format_duration(self.watchdog)}")
                return
            await self._clock.sleep(left)
