"""One managed child: spawn, output capture, keep-alive with backoff, and the stop ladder.

The user owns the *desired* state (running or stopped); everything automatic (crash restarts, file
changes, backoff timers) only acts while the desired state is running. User operations are serialised by
one lock per process, so a stop can never be undone by the supervise loop and a second start can never
create a second loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processman.config import ProcessConfig, config_to_json
from processman.durations import format_duration
from processman.engine.dependencies import DependencyGate
from processman.engine.events import EventBus, ProcessExited, StatusChanged
from processman.engine.health import HealthMonitor
from processman.engine.posix import TagScanner, terminate_tree
from processman.engine.probes import Prober
from processman.engine.resources import TreeUsage, apply_limits
from processman.engine.states import Desired, Status, check_transition
from processman.environment import PocketBaseInfo, child_environment
from processman.interpreter import command_line, resolve_interpreter
from processman.logs import LogFileOptions, ProcessOutput

logger = logging.getLogger(__name__)

BACKOFF_CAP = 30.0
READ_SIZE = 256 * 1024
EXIT_HISTORY = 20


def backoff_delay(base: float, failures: int) -> float:
    """Delay before the next start after ``failures`` consecutive failures (0 after a healthy run).

    >>> [backoff_delay(1.0, n) for n in (0, 1, 2, 3, 6, 7)]
    [0.0, 1.0, 2.0, 4.0, 30.0, 30.0]
    """
    if failures <= 0:
        return 0.0
    return min(base * 2.0 ** min(failures - 1, 64), BACKOFF_CAP)


class SpawnError(Exception):
    """The process could not be started at all; the message says why in words a user can act on."""


@dataclass(frozen=True)
class ExitRecord:
    timestamp: float
    returncode: int | None
    signal: int | None
    uptime: float
    reason: str
    last_lines: tuple[str, ...] = ()  # the child's last lines of output before it exited

    def to_dict(self) -> dict[str, Any]:
        from processman.logs import format_timestamp

        return {
            "time": format_timestamp(self.timestamp),
            "exitCode": self.returncode,
            "signal": signal.Signals(self.signal).name if self.signal else None,
            "uptime": format_duration(self.uptime),
            "reason": self.reason,
            "lastLines": list(self.last_lines),
        }


@dataclass(frozen=True)
class ProcessState:
    """A snapshot of one process, as the API reports it (SPEC 3)."""

    id: str
    pid: int
    status: Status
    desired: Desired
    start_time: float | None
    uptime: float
    restart_count: int
    last_error: str
    config: ProcessConfig
    interpreter: str | None
    exits: tuple[ExitRecord, ...] = ()
    cpu: float | None = None  # percent of one core, whole tree (None: not running or not sampled yet)
    memory: int | None = None  # resident bytes, whole tree
    ready: bool = False  # its readiness probe passed (at once without one); see engine.health

    def to_dict(self) -> dict[str, Any]:
        from processman.logs import format_timestamp

        return {
            "id": self.id,
            "pid": self.pid,
            "status": str(self.status),
            "ready": self.ready,
            "startTime": format_timestamp(self.start_time) if self.start_time is not None else None,
            "uptime": format_duration(int(self.uptime)),
            "restartCount": self.restart_count,
            "lastError": self.last_error,
            "desired": str(self.desired),
            "recentExits": [record.to_dict() for record in self.exits],
            "cpu": self.cpu,
            "memory": self.memory,
            "config": {**config_to_json(self.config), "interpreter": self.interpreter},
        }


@dataclass
class SpawnContext:
    """What every process of one manager shares."""

    run_id: str
    bus: EventBus
    scanner: TagScanner
    pocketbase: PocketBaseInfo | None = None
    log_folder: Path | None = None  # None: no log files
    on_group: Callable[[int, bool], None] = lambda group, alive: None
    on_reaped: Callable[[], None] = lambda: None
    owned_pids: set[int] = field(default_factory=set)
    environ: Mapping[str, str] | None = None  # None: the manager's environment at each spawn
    prober: Prober = field(default_factory=Prober)  # readiness and liveness probes
    dependencies: DependencyGate = field(default_factory=DependencyGate)  # dependsOn waits


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


class _Child:
    """One run of the process."""

    def __init__(self, popen: subprocess.Popen[bytes], output: ProcessOutput, on_reaped: Callable[[], None]):
        self.popen = popen
        self.pid = popen.pid
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.ended: float | None = None
        assert popen.stdout is not None and popen.stderr is not None
        # The Popen file objects would close the descriptors on garbage collection: take them over.
        self.pipes = [
            _Pipe(os.dup(popen.stdout.fileno()), "stdout", output),
            _Pipe(os.dup(popen.stderr.fileno()), "stderr", output),
        ]
        popen.stdout.close()
        popen.stderr.close()
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[int] = loop.create_future()
        self._on_reaped = on_reaped
        self._pidfd = os.pidfd_open(self.pid)
        loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return
        asyncio.get_running_loop().remove_reader(self._pidfd)
        os.close(self._pidfd)
        self.ended = time.monotonic()
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        # Everything the child wrote before it exited is already in the pipes: read it now, so the exit
        # is reported after its last lines even when a descendant keeps the pipes open.
        for pipe in self.pipes:
            pipe.drain()
        self.exited.set_result(status)
        self._on_reaped()

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    @property
    def uptime(self) -> float:
        return (self.ended if self.ended is not None else time.monotonic()) - self.started


def describe_exit(status: int) -> tuple[int | None, int | None, str]:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return None, number, f"killed by signal {number} ({name})"
    code = os.WEXITSTATUS(status)
    return code, None, f"exited with code {code}"


class ManagedProcess:
    """One configured process and its supervise loop."""

    def __init__(self, config: ProcessConfig, context: SpawnContext) -> None:
        self.config = config
        self._context = context
        files = None
        if context.log_folder is not None:
            files = LogFileOptions(context.log_folder, config.log_max_size, config.log_backups)
        self.output = ProcessOutput(config.id, context.bus, files)
        self.status = Status.STOPPED
        self.desired = Desired.STOPPED
        self.restart_count = 0
        self.last_error = ""
        self.interpreter = resolve_interpreter(config)
        self.exits: collections.deque[ExitRecord] = collections.deque(maxlen=EXIT_HISTORY)
        self._child: _Child | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._skip_wait = False
        self._tag = f"{context.run_id}:{config.id}"
        self.usage: TreeUsage | None = None  # set by the manager's resource sampler
        self._exit_reason: str | None = None  # why the next exit is asked for (restart_for)
        self.ready = False  # this run's readiness probe passed (engine.health)
        self._run_first_seq = 0  # the last log sequence number before the current run began

    def __repr__(self) -> str:
        pid = self._child.pid if self._child and self._child.alive else 0
        return f"<ManagedProcess {self.config.id!r} {self.status} pid={pid} restarts={self.restart_count}>"

    @property
    def pid(self) -> int:
        return self._child.pid if self._child is not None and self._child.alive else 0

    def state(self) -> ProcessState:
        running = self._child is not None and self._child.alive
        return ProcessState(
            id=self.config.id,
            pid=self.pid,
            status=self.status,
            desired=self.desired,
            start_time=self._child.started_wall if running and self._child else None,
            uptime=self._child.uptime if running and self._child else 0.0,
            restart_count=self.restart_count,
            last_error=self.last_error,
            config=self.config,
            interpreter=self.interpreter,
            exits=tuple(self.exits),
            cpu=self.usage.cpu_percent if running and self.usage else None,
            memory=self.usage.memory if running and self.usage else None,
            ready=self.ready,
        )

    # ---- user operations -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start (desired: running). Raises ProcessAlreadyRunning when starting or running; during a
        backoff wait it starts at once instead of waiting."""
        from processman.errors import ProcessAlreadyRunning

        async with self._lock:
            if self.desired is Desired.RUNNING and self._task is not None and not self._task.done():
                if self.status is Status.CRASHED:
                    self._skip_wait = True
                    self._first_attempt.clear()
                    self._wake.set()
                    await self._first_attempt.wait()
                    return
                raise ProcessAlreadyRunning(self.config.id)
            await self._launch()

    async def stop(self) -> None:
        """Stop (desired: stopped); returns once no process of the tree is left."""
        async with self._lock:
            await self._halt()
            if self.status is not Status.STOPPED:
                self._set_status(Status.STOPPED)

    async def restart(self, reason: str = "restart requested") -> None:
        """Stop the tree and start again. Never counted as a failure."""
        async with self._lock:
            await self._halt()
            self.restart_count += 1
            self.output.note(f"restarting: {reason}")
            await self._launch()

    async def restart_if_running(self, reason: str) -> None:
        """For automatic triggers (file changes): only while the user wants it running."""
        if self.desired is Desired.RUNNING:
            await self.restart(reason)

    async def restart_for(self, reason: str) -> None:
        """An automatic restart whose reason is kept in lastError and in the exit record (maxMemory).
        Only while the process runs and the user wants it running; never counted as a failure."""
        async with self._lock:
            if self.desired is not Desired.RUNNING or self.status is not Status.RUNNING:
                return
            self.last_error = self._exit_reason = reason
            await self._halt()
            self._exit_reason = None
            self.restart_count += 1
            self.output.note(f"restarting: {reason}")
            await self._launch(last_error=reason)

    # ---- internals -------------------------------------------------------------------------------

    async def _launch(self, last_error: str = "") -> None:
        self.desired = Desired.RUNNING
        self.last_error = last_error
        self._skip_wait = False
        self._wake.clear()
        self._first_attempt.clear()
        self._task = asyncio.create_task(self._supervise(), name=f"supervise {self.config.id}")
        await self._first_attempt.wait()

    async def _halt(self) -> None:
        self.desired = Desired.STOPPED
        self._wake.set()
        child = self._child
        if self.status is not Status.STOPPED:
            self._set_status(Status.STOPPING)
        if child is not None:
            await self._terminate(child)
        if self._task is not None:
            await self._task
            self._task = None

    async def _terminate(self, child: _Child) -> None:
        def escalate(survivors: int) -> None:
            message = (
                f"{survivors} process(es) still running {format_duration(self.config.stop_timeout)} after "
                f"SIGTERM; sending SIGKILL (raise stopTimeout if the process needs longer to shut down)"
            )
            logger.warning("%s: %s", self.config.id, message)
            self.output.note(message)

        await terminate_tree(
            child.pid, self._tag, self._context.scanner, self.config.stop_timeout, on_escalate=escalate
        )
        if child.alive:  # killed but not reaped yet
            await child.exited
        self._context.on_group(child.pid, False)

    async def _supervise(self) -> None:
        try:
            await self._supervise_loop()
        finally:
            self._first_attempt.set()  # a start() waiting for an attempt that will not come is released

    async def _supervise_loop(self) -> None:
        failures = 0
        first = True
        while self.desired is Desired.RUNNING:
            if not first:
                self.restart_count += 1
            self._set_status(Status.STARTING)
            if first and self.config.depends_on:
                self._first_attempt.set()  # start() returns while it waits for its dependencies
                if not await self._context.dependencies.wait(self):
                    return
            first = False
            try:
                child = self._spawn()
            except SpawnError as exc:
                self.last_error = str(exc)
                self.output.note(str(exc))
                logger.error("%s: %s", self.config.id, exc)
                failures += 1
                self._first_attempt.set()
            else:
                self._child = child
                # Running once ready: at once without a readiness probe. A failing liveness probe
                # stops the tree and its reason becomes the exit's.
                monitor = HealthMonitor(
                    self,
                    self._context,
                    on_ready=self._became_ready,
                    kill=functools.partial(self._terminate, child),
                )
                self._first_attempt.set()
                try:
                    status = await child.exited
                finally:
                    await monitor.close()
                    self.ready = False
                code, sig, reason = describe_exit(status)
                reason = monitor.failure or reason
                expected = self.desired is not Desired.RUNNING
                recorded = self._exit_reason or reason
                lines = self._last_lines()
                self.exits.append(ExitRecord(time.time(), code, sig, child.uptime, recorded, lines))
                self._context.bus.publish(
                    ProcessExited(self.config.id, child.pid, code, sig, child.uptime, time.time(), expected)
                )
                if expected:
                    return
                if self.config.restart == "never" or (self.config.restart == "on-failure" and code == 0):
                    await self._finish(child, code, reason)
                    return
                healthy = child.uptime >= self.config.min_uptime
                failures = 0 if healthy else failures + 1
                self.last_error = reason + self._last_stderr_hint()
                logger.warning("%s: %s after %s", self.config.id, reason, format_duration(child.uptime))
                self._set_status(Status.CRASHED)
                # Whatever the child left behind (a grandchild holding a port) goes before the restart.
                await self._terminate(child)
                if self.desired is not Desired.RUNNING:
                    return
            if self.config.max_retries >= 0 and failures > self.config.max_retries:
                self.last_error = (
                    f"gave up after {failures} consecutive failed starts (maxRetries is "
                    f"{self.config.max_retries}); last: {self.last_error}"
                )
                logger.error("%s: %s", self.config.id, self.last_error)
                self._set_status(Status.FAILED)
                return
            delay = backoff_delay(self.config.backoff, failures)
            self._set_status(Status.CRASHED)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                if self._skip_wait:
                    self._skip_wait = False
                    failures = 0
                self._wake.clear()

    def _last_lines(self, count: int = 5) -> tuple[str, ...]:
        """What the run that just ended wrote last (not earlier runs, not the manager's notes)."""
        lines = self.output.since(max(self._run_first_seq, self.output.last_seq - 50))
        return tuple([line.content for line in lines if not line.content.startswith("[processman]")][-count:])

    async def _finish(self, child: _Child, code: int | None, reason: str) -> None:
        """The run ended and the restart policy says it stays ended (a one-shot task, a migration)."""
        self.last_error = "" if code == 0 else reason + self._last_stderr_hint()
        self.output.note(f"{reason}; not restarted (restart is {self.config.restart!r})")
        logger.info("%s: %s; not restarted (restart is %r)", self.config.id, reason, self.config.restart)
        self.desired = Desired.STOPPED
        self._set_status(Status.STOPPING)
        await self._terminate(child)
        self._set_status(Status.STOPPED)

    def _last_stderr_hint(self) -> str:
        for line in reversed(self.output.tail(20)):
            if (
                line.stream == "stderr"
                and line.content.strip()
                and not line.content.startswith("[processman]")
            ):
                text = line.content.strip()
                return f": {text[:200]}"
        return ""

    def environment(self) -> dict[str, str]:
        """The environment of a spawn (probe commands run with it too)."""
        config = self.config
        base = self._context.environ if self._context.environ is not None else os.environ
        env = child_environment(base, config.env, pocketbase=self._context.pocketbase, tag=self._tag)
        if config.instance is not None:
            env["PROCESSMAN_INSTANCE"] = str(config.instance)
        return env

    def _became_ready(self) -> None:
        """The run passed its readiness probe (at once without one): now it is running."""
        if self.status is Status.STARTING:
            self.ready = True
            self._set_status(Status.RUNNING)

    def _spawn(self) -> _Child:
        config = self.config
        if not config.cwd.is_dir():
            raise SpawnError(f"cannot start: working directory {config.cwd} does not exist")
        argv = command_line(config, self.interpreter)
        env = self.environment()
        try:
            popen = subprocess.Popen(
                argv,
                cwd=config.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as exc:
            raise SpawnError(self._not_found_message(argv, exc)) from exc
        except PermissionError as exc:
            raise SpawnError(f"cannot start: {argv[0]} is not executable ({exc.strerror})") from exc
        except OSError as exc:
            raise SpawnError(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
        except ValueError as exc:  # a NUL byte, or '=' in an env name, from code-registered configs
            raise SpawnError(f"cannot start {argv[0]!r}: {exc} in its command, args or env") from exc
        child = _Child(popen, self.output, self._context.on_reaped)
        self._context.owned_pids.add(child.pid)
        child.exited.add_done_callback(lambda _: self._context.owned_pids.discard(child.pid))
        self._context.on_group(child.pid, True)
        self._run_first_seq = self.output.last_seq  # the child's output is read later, in the loop
        for problem in apply_limits(child.pid, config.limits):
            self.last_error = problem
            self.output.note(problem)
            logger.warning("%s: %s", config.id, problem)
        logger.info("%s: started pid %d: %s", config.id, child.pid, shlex.join(argv)[:200])
        return child

    def _not_found_message(self, argv: list[str], exc: FileNotFoundError) -> str:
        config = self.config
        if config.command is not None:
            return (
                f"cannot start: command {config.command!r} not found (looked in the PATH and in {config.cwd})"
            )
        if self.interpreter is not None and not os.path.exists(argv[1]):
            return f"cannot start: script {argv[1]} does not exist"
        if self.interpreter is not None:
            return f'cannot start: interpreter {self.interpreter!r} not found (set "interpreter" to its path)'
        return f"cannot start: script {argv[0]} does not exist"

    def _set_status(self, status: Status) -> None:
        previous = self.status
        if status is previous:
            return
        check_transition(previous, status)
        self.status = status
        self._context.bus.publish(
            StatusChanged(
                self.config.id, status, previous, self.pid, time.time(), self.restart_count, self.last_error
            )
        )

    def reconfigure(self, config: ProcessConfig) -> None:
        """Take a changed config; it applies from the next start (the caller restarts if needed)."""
        self.config = config
        self.interpreter = resolve_interpreter(config)
        self.output.set_rotation(config.log_max_size, config.log_backups)

    def close(self) -> None:
        """Release descriptors once the process is stopped (manager shutdown)."""
        if self._child is not None:
            for pipe in self._child.pipes:
                pipe.close()
        self.output.close()
