"""Starting one run of a child, all or nothing, and awaiting its exit.

:func:`spawn` returns a :class:`Child` whose pipes are read, whose exit is awaited through the backend
(a pidfd on Linux, kqueue or ``SIGCHLD`` elsewhere) and
whose pid is known to the :class:`ChildRegistry`; or it raises :class:`SpawnError` having killed and
reaped whatever it had started. No half-made child is ever left running or untracked.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from processman.engine import backend
from processman.engine.clock import Clock
from processman.engine.resources import apply_limits
from processman.errors import SpawnError
from processman.logs import ProcessOutput

logger = logging.getLogger(__name__)

READ_SIZE = 256 * 1024


def _nothing() -> None:
    pass


class ChildRegistry:
    """The children a manager reaps itself, and who hears of them.

    ``owned`` is read by the orphan reaper (it must not steal these exit statuses); ``on_group`` hears
    every process group that appears or goes (the guardian and the run file follow them); ``on_reaped``
    is called after each reap (the orphan reaper then collects what it had left for us).
    """

    def __init__(self) -> None:
        self.owned: set[int] = set()
        self.on_group: Callable[[int, bool], None] = lambda group, alive: None
        self.on_reaped: Callable[[], None] = _nothing

    def adopt(self, pid: int) -> None:
        self.owned.add(pid)
        self._tell_group(pid, True)

    def release(self, pid: int) -> None:
        self.owned.discard(pid)

    def group_gone(self, pid: int) -> None:
        self._tell_group(pid, False)

    def reaped(self) -> None:
        self.on_reaped()

    def _tell_group(self, group: int, alive: bool) -> None:
        try:
            self.on_group(group, alive)
        except Exception:  # a full disk under the run file must not make a spawn fail
            logger.exception("cannot record process group %d", group)


class _Pipe:
    """Non-blocking reader of one child pipe: reads whatever is there as soon as it is there."""

    def __init__(self, fd: int, stream: str, output: ProcessOutput) -> None:
        self.fd = fd
        self.stream = stream
        self.output = output
        self.closed = asyncio.get_running_loop().create_future()
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self.drain)

    def drain(self) -> None:
        """Read until the pipe is empty (or at end of file)."""
        while not self.closed.done():
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                data = b""
            if not data:
                self.close()
                return
            self.output.feed(self.stream, data)
            if len(data) < READ_SIZE:
                return

    def close(self) -> None:
        if self.closed.done():
            return
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)
        self.output.end(self.stream)
        self.closed.set_result(None)


class Child:
    """One run of a process: its pipes are read and its exit is awaited, until it is reaped."""

    def __init__(self, pid: int, clock: Clock) -> None:
        self.pid = pid
        self.started = clock.monotonic()
        self.started_wall = clock.time()
        self.ended: float | None = None
        self.pipes: list[_Pipe] = []
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._clock = clock
        self._exit_watch: backend.Watch | None = None
        self._on_reaped: Callable[[], None] = _nothing
        self.limit_problems: list[str] = []  # the config's limits that could not be applied

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} {'alive' if self.alive else 'exited'}>"

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    @property
    def uptime(self) -> float:
        return (self.ended if self.ended is not None else self._clock.monotonic()) - self.started

    def _watch(self, on_reaped: Callable[[], None]) -> None:
        self._on_reaped = on_reaped
        self._exit_watch = backend.current().watch(self.pid, self._reap, child=True)

    def _reap(self) -> None:
        if not self.alive:  # a late call (a signal that was on its way): its pid may be another's now
            return
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return
        self._stop_watching()
        self.ended = self._clock.monotonic()
        # Everything the child wrote before it exited is already in the pipes: read it now, so the exit
        # is reported after its last lines even when a descendant keeps the pipes open.
        for pipe in self.pipes:
            pipe.drain()
        self.exited.set_result(status)
        self._on_reaped()

    def _stop_watching(self) -> None:
        watch, self._exit_watch = self._exit_watch, None
        if watch is not None:
            watch.cancel()

    def close_pipes(self) -> None:
        for pipe in self.pipes:
            pipe.close()

    def _abandon(self) -> None:
        """Undo a spawn that could not be completed: kill the child's group, reap it, close what was
        opened. Synchronous, so no cancellation can come between the kill and the reap."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGKILL)
        self._stop_watching()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.close()
        if not self.exited.done():
            self.exited.set_result(signal.SIGKILL)


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    output: ProcessOutput,
    registry: ChildRegistry,
    clock: Clock,
    wrap: Callable[[Sequence[str]], list[str]] | None = None,
    limits: Mapping[str, int] | None = None,
) -> Child:
    """Start ``argv`` in a session of its own with piped output. All or nothing: raises SpawnError
    (with nothing left running) when any step fails.

    ``wrap`` turns ``argv`` into the command line that really runs (a wrapper that enters a cgroup and
    then execs ``argv``); the program is looked up first, so a missing one fails here as without it.
    ``limits`` (config name -> value) are applied first thing after the start, before the child's
    program is likely to have read them; what could not be applied is in ``Child.limit_problems``."""
    try:
        if wrap is not None:
            _check_executable(argv[0], cwd, env)
        popen = subprocess.Popen(
            wrap(argv) if wrap is not None else list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
    except FileNotFoundError as exc:
        raise SpawnError(f"cannot start: {exc.filename or argv[0]} not found") from exc
    except PermissionError as exc:
        raise SpawnError(f"cannot start: {argv[0]} is not executable ({exc.strerror})") from exc
    except OSError as exc:
        raise SpawnError(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # a NUL byte, or '=' in an env name, from code-registered configs
        raise SpawnError(f"cannot start {argv[0]!r}: {exc} in its command, args or env") from exc
    problems = apply_limits(popen.pid, limits) if limits else []
    child = Child(popen.pid, clock)
    child.limit_problems = problems
    try:
        assert popen.stdout is not None and popen.stderr is not None
        for stream, file in (("stdout", popen.stdout), ("stderr", popen.stderr)):
            # The Popen file objects would close the descriptors when collected: take them over.
            fd = os.dup(file.fileno())
            try:
                child.pipes.append(_Pipe(fd, stream, output))
            except BaseException:
                os.close(fd)
                raise
        child._watch(registry.reaped)
        registry.owned.add(child.pid)
        child.exited.add_done_callback(lambda _: registry.release(child.pid))
    except BaseException as exc:
        child._abandon()
        registry.release(child.pid)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc)
        if isinstance(exc, Exception):
            raise SpawnError(
                f"cannot start {argv[0]}: {reason} while setting it up; the started process was killed"
            ) from exc
        raise
    finally:
        for piped in (popen.stdout, popen.stderr):
            if piped is not None:
                piped.close()
        popen.returncode = 0  # reaped by Child._reap, never by Popen (its __del__ must not wait)
    registry.adopt(child.pid)
    return child


def _check_executable(program: str, cwd: Path, env: Mapping[str, str]) -> None:
    """Raise what Popen would raise for ``program`` (looked up as exec does: in the PATH of ``env``
    unless it holds a slash, then relative to ``cwd``)."""
    if "/" in program:
        path = cwd / program
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        if path.is_dir() or not os.access(path, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
        return
    search = env.get("PATH", os.defpath)
    if shutil.which(program, path=search) is None:
        candidates = [os.path.join(cwd, folder, program) for folder in search.split(os.pathsep)]
        if any(os.path.isfile(candidate) for candidate in candidates):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def describe_exit(status: int) -> tuple[int | None, int | None, str]:
    """A wait status as (exit code, signal number, words)."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return None, number, f"killed by signal {number} ({name})"
    code = os.WEXITSTATUS(status)
    return code, None, f"exited with code {code}"
