"""One health probe: an HTTP GET, a TCP connect or a command, answered as ``None`` (healthy) or a reason.

Command probes are children of the manager, which may be the Linux child subreaper whose
:class:`~processman.engine.posix.OrphanReaper` reaps every child it does not know about. So they are
spawned with ``subprocess.Popen`` (not ``asyncio.create_subprocess_exec``, whose exit status the reaper
could steal), registered as owned in the same loop callback, awaited through the backend (a pidfd, kqueue or
SIGCHLD) and reaped here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from processman.config import Probe
from processman.durations import format_duration
from processman.engine import backend

if TYPE_CHECKING:
    import httpx


@dataclass
class ProbeSite:
    """Where command probes run: the process's folder and environment, and the engine's reaping."""

    cwd: Path = Path(".")
    env: Mapping[str, str] | None = None  # None: the manager's environment
    owned_pids: set[int] = field(default_factory=set)
    on_reaped: Callable[[], None] = lambda: None


class Prober:
    """Runs probes for one manager; HTTP probes share one client, created on first use."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    async def run(self, probe: Probe, site: ProbeSite | None = None) -> str | None:
        if probe.kind == "http" and self._client is None:
            self._client = new_http_client()
        return await run_probe(probe, client=self._client, site=site)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def new_http_client() -> httpx.AsyncClient:
    import httpx  # here, not at the top: about 3 MB that only HTTP probes need

    # A fresh connection per probe (a pooled one may belong to a previous run of the process), no
    # proxies from the environment (a probe of 127.0.0.1 must not go through one) and no redirects
    # (the expected status is compared as answered). The probe's own timeout bounds each request.
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        trust_env=False,
        follow_redirects=False,
        timeout=None,
    )


async def run_probe(
    probe: Probe, *, client: httpx.AsyncClient | None = None, site: ProbeSite | None = None
) -> str | None:
    """Run ``probe`` once, within its timeout. ``None`` when healthy, else a short reason:

    ``HTTP 503 from http://127.0.0.1:8000/health (expected 200)``, ``connection refused on
    127.0.0.1:8000``, ``command exited with code 1``, ``timed out after 1s``.
    """
    async with contextlib.AsyncExitStack() as stack:
        if probe.kind == "http" and client is None:  # made before the clock starts: it loads CA files
            client = await stack.enter_async_context(new_http_client())
        try:
            async with asyncio.timeout(probe.timeout):
                if probe.kind == "tcp":
                    return await _tcp(probe.target)
                if probe.kind == "command":
                    return await _command(probe.command, site or ProbeSite())
                assert client is not None  # made above
                return await _http(probe, client)
        except TimeoutError:
            return f"timed out after {format_duration(probe.timeout)}"


async def _http(probe: Probe, client: httpx.AsyncClient) -> str | None:
    import httpx

    try:
        response = await client.get(probe.target)
    except httpx.ConnectError as exc:
        return f"{_describe_error(exc)} on {_address_of(probe.target)}"
    except httpx.HTTPError as exc:
        return f"GET {probe.target} failed: {_describe_error(exc)}"
    if response.status_code != probe.status:
        return f"HTTP {response.status_code} from {probe.target} (expected {probe.status})"
    return None


async def _tcp(target: str) -> str | None:
    host, _, port = target.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        _reader, writer = await asyncio.open_connection(host, int(port))
    except OSError as exc:
        return f"{_describe_error(exc)} on {target}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


def _spawn(argv: tuple[str, ...], site: ProbeSite) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        cwd=site.cwd,
        env=site.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


async def _command(argv: tuple[str, ...], site: ProbeSite) -> str | None:
    try:
        popen = _spawn(argv, site)
    except FileNotFoundError:
        return f"command {argv[0]!r} not found"
    except OSError as exc:
        return f"command {argv[0]!r} cannot run: {exc.strerror or exc}"
    # Same loop callback as Popen: the SIGCHLD handler cannot run in between and reap it.
    site.owned_pids.add(popen.pid)
    try:
        process = _ProbeProcess(popen, site)
    except OSError as exc:  # cannot be watched (no descriptor for a pidfd): leave no owned zombie
        with contextlib.suppress(OSError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
        site.owned_pids.discard(popen.pid)
        return f"command {argv[0]!r} cannot be watched: {exc.strerror or exc}"
    try:
        status = await asyncio.shield(process.exited)
    except asyncio.CancelledError:
        # Timed out or cancelled: kill the probe's whole group and wait for the reap (SIGKILL lands at
        # once), so no zombie and no watch outlives the probe.
        process.kill()
        await asyncio.wait([process.exited], timeout=5)
        raise
    if process.lost:
        return f"command {shlex.join(argv)}: exit status lost (another waiter reaped it)"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        return f"command {shlex.join(argv)} killed by signal {number} ({_signal_name(number)})"
    code = os.WEXITSTATUS(status)
    return None if code == 0 else f"command {shlex.join(argv)} exited with code {code}"


class _ProbeProcess:
    """A running probe command, reaped by the backend's callback as soon as it exits."""

    def __init__(self, popen: subprocess.Popen[bytes], site: ProbeSite) -> None:
        self.popen = popen
        self.site = site
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[int] = loop.create_future()
        self.lost = False
        self._watch = backend.current().watch(popen.pid, self._reap, child=True)

    def _reap(self) -> None:
        if self.exited.done():  # a late call: reaped already, and its pid may be another's now
            return
        try:
            pid, status = os.waitpid(self.popen.pid, os.WNOHANG)
        except ChildProcessError:  # someone else reaped it: no status to report
            pid, status, self.lost = self.popen.pid, 0, True
        if pid == 0:
            return
        self._watch.cancel()
        # A returncode tells the Popen object it is reaped, so it never waits on the pid itself.
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        self.site.owned_pids.discard(self.popen.pid)
        if not self.exited.done():
            self.exited.set_result(status)
        # The orphan reaper stops at an owned zombie; let it look again now this one is gone.
        self.site.on_reaped()

    def kill(self) -> None:
        if not self.exited.done():  # after the reap the pid may belong to someone else
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)


def _describe_error(exc: BaseException) -> str:
    """The cause of a failed connection in a few words ("connection refused")."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        if isinstance(seen, ConnectionResetError):
            return "connection reset"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror[:1].lower() + seen.strerror[1:]
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def _address_of(url: str) -> str:
    import httpx

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.host}:{port}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
