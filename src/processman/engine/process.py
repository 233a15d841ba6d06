"""One managed child: its owner task, which alone runs, watches, restarts and stops it.

Each process has one owner: the coroutine :meth:`ManagedProcess.run`, which the manager runs in its task
group. The owner is the only writer of the process's status, last error and readiness, and every change
is published as a :class:`StatusChanged` event. User operations (``start``, ``stop``, ``restart``) and
automatic triggers (file changes, memory limits, failed liveness probes) only post an *intent* and wake
the owner; the caller then waits for the effect. So a cancelled caller never leaves work half done: the
owner finishes the stop ladder whoever stopped waiting for it.

The keep-alive loop is a few explicit steps: start (dependencies, spawn), watch the run (health, exit,
intents), then decide (:func:`processman.engine.policy.decide`: restart after a delay, finish, give up)
and wait out the backoff. Time comes from an injectable :class:`~processman.engine.clock.Clock`.

The user owns the *desired* state: everything automatic acts only while it is ``running``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shlex
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from processman.config import ProcessConfig
from processman.durations import format_duration
from processman.engine import backend, inotify
from processman.engine.clock import SYSTEM_CLOCK, Clock
from processman.engine.containment import Containment, TagContainment
from processman.engine.dependencies import DependencyGate
from processman.engine.events import EventBus, ProcessExited, RunRecorded, StatusChanged
from processman.engine.health import HealthMonitor
from processman.engine.policy import Action, Outcome, backoff_delay, decide, succeeded
from processman.engine.posix import TagScanner, wait_for_exit
from processman.engine.probes import Prober, ProbeSite
from processman.engine.resources import TreeUsage, read_stat
from processman.engine.runs import Run, RunHistory, RunOutcome, Trigger
from processman.engine.sdnotify import NotifyListener
from processman.engine.spawn import Child, ChildRegistry, describe_exit, spawn
from processman.engine.states import Desired, Status, check_transition
from processman.engine.timetable import last_due, next_due
from processman.envfile import read_env_files, skipped_lines
from processman.environment import PocketBaseInfo, activate_venv, child_environment, os_environ
from processman.errors import (
    ManagerNotRunning,
    NotRunnable,
    ProcessAlreadyRunning,
    ProcessNotRunning,
    SpawnError,
)
from processman.interpreter import (
    VENV_BIN,
    VenvLookup,
    command_line,
    find_venv,
    resolve_interpreter,
    uses_system_python,
)
from processman.logs import STDERR, SYSTEM, LogFileOptions, ProcessOutput
from processman.preflight import missing_cwd, missing_program, missing_script

logger = logging.getLogger(__name__)

EXIT_HISTORY = 20
# type forking with a pidFile: how long the daemon may take to write it after the parent exited.
PID_FILE_WAIT = 5.0


@dataclass(frozen=True)
class ExitRecord:
    """How one run ended."""

    timestamp: float
    returncode: int | None
    signal: int | None
    uptime: float
    reason: str
    last_lines: tuple[str, ...] = ()  # the child's last lines of output before it exited


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
    ready: bool = False  # its readiness probe passed (at once without one)
    log_error: str = ""  # why its log files cannot be written ("" while they can)
    log_dropped_bytes: int = 0  # output that could not be written to its log files
    env_from_files: Mapping[str, str] = field(default_factory=dict)  # its envFile values at the last start
    venv: VenvLookup = field(default_factory=lambda: VenvLookup(None))  # its virtualenv, or where looked
    status_text: str = ""  # what the process says it is doing (sd_notify STATUS=)
    main_pid: int = 0  # the pid the process named as the service's (sd_notify MAINPID=; 0: none)
    next_run: float | None = None  # a job's next due time (wall clock; None: not armed)


@dataclass(frozen=True)
class ProcessContext:
    """What every process of one manager shares."""

    run_id: str
    bus: EventBus
    scanner: TagScanner
    registry: ChildRegistry = field(default_factory=ChildRegistry)
    pocketbase: PocketBaseInfo | None = None
    log_folder: Path | None = None  # None: no log files
    environ: Mapping[str, str] | None = None  # None: the manager's environment at each spawn
    prober: Prober = field(default_factory=Prober)  # readiness and liveness probes
    dependencies: DependencyGate = field(default_factory=DependencyGate)  # dependsOn waits
    clock: Clock = SYSTEM_CLOCK
    containment: Containment | None = None  # None: tags, process groups and the subreaper


class _RunEnd(Enum):
    """Why the owner stopped watching a run, or waiting out a backoff."""

    EXITED = "exited"  # the child exited on its own
    STOP = "stop"  # the user stopped it
    RESTART = "restart"  # a restart was asked for
    UNHEALTHY = "unhealthy"  # the liveness probe failed
    TIMEOUT = "timeout"  # the run ran longer than its timeout
    START = "start"  # a backoff cut short by start()
    TIMER = "timer"  # a backoff that ran out


class ManagedProcess:
    """One configured process. The manager runs :meth:`run` for as long as the process is registered."""

    def __init__(self, config: ProcessConfig, context: ProcessContext) -> None:
        self.config = config
        self._context = context
        self._clock = context.clock
        files = None
        if context.log_folder is not None:
            files = LogFileOptions(context.log_folder, config.log_max_size, config.log_backups)
        self.output = ProcessOutput(config.id, context.bus, files, on_file_problem=self._log_file_problem)
        self.venv = find_venv(config)
        self.interpreter = resolve_interpreter(config, self.venv)
        # Every run, kept by the owner; the run store seeds it with the runs of earlier managers.
        self.runs = RunHistory(config.id, config.keep_runs)
        self._exit_records: tuple[RunHistory, int, tuple[ExitRecord, ...]] | None = None  # see exit_records
        self._run: Run | None = None  # the run in progress (its record)
        self._trigger = Trigger.START  # why the next run begins
        self.usage: TreeUsage | None = None  # written by the manager's resource sampler
        self.env_from_files: dict[str, str] = {}  # what the envFile files held at the last start
        self._tag = f"{context.run_id}:{config.id}"
        containment = context.containment or TagContainment(context.scanner)
        self._tree = containment.tree(config.id, self._tag)
        # Owned by the owner task (and by stop() while the owner is idle); changed through _update().
        self._status = Status.STOPPED
        self._last_error = ""
        self._ready = False
        self._log_error = ""
        self.restart_count = 0
        self._child: Child | None = None
        # The run's main process once the started one exited (type forking: its daemon; or a MAINPID=):
        # the run goes on until it ends. None before that and in a simple run.
        self._daemon: int | None = None
        self._cleared: Child | None = None  # the last run whose leftovers were stopped
        self.has_owner = False  # set by the manager once it runs run() for this process
        # Intents: what was asked of the owner and not yet done.
        self.desired = Desired.STOPPED
        self._start_wanted = False
        self._restart_reason: str | None = None  # stop the current run, then start again
        self._counted_restart = False  # the restart came from the user (counted when it begins)
        self._skip_backoff = False
        self._unhealthy: str | None = None  # the liveness probe's reason to end the run
        self._active = False  # the owner is inside a start, a run or a backoff
        self._attempts = 0  # starts begun: start() and restart() wait for the next one
        self._wakeup: asyncio.Future[None] | None = None
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._lock = asyncio.Lock()  # one user operation at a time
        self._tasks: asyncio.TaskGroup | None = None
        self._run_first_seq = 0  # the last log sequence number before the current run began
        self._run_env: dict[str, str] = {}  # the current run's environment (its probes run with it)
        # The current run's NOTIFY_SOCKET (type notify, or a watchdog), and what came through it.
        self._notify: NotifyListener | None = None
        self._status_text = ""
        self._main_pid = 0
        # A job: due runs not begun yet (each with who waits to hear of it), the one queued behind the
        # run in progress (overlap "queue"), runs beside it (overlap "allow"), and the next due time
        # (written by the job's timer task).
        # A list, not a deque: rarely more than one entry, and an empty deque holds 528 bytes.
        self._due: list[tuple[Trigger, asyncio.Future[Run | None] | None]] = []
        self._queued: Trigger | None = None
        # overlap "allow": each run begun beside the one in progress, by the task that watches it.
        self._beside: dict[asyncio.Task[None], Child] = {}
        self._stopping_beside = False  # their ends are stops, not failures
        self._single_run = False  # run once on demand, then back to stopped (a job not armed)
        self._run_waiter: asyncio.Future[Run | None] | None = None  # run_now() waits for its run
        self.next_run: float | None = None

    def __repr__(self) -> str:
        return (
            f"<ManagedProcess {self.config.id!r} {self._status} pid={self.pid} restarts={self.restart_count}>"
        )

    # ---- what others read ------------------------------------------------------------------------

    @property
    def status(self) -> Status:
        return self._status

    @property
    def last_error(self) -> str:
        return self._last_error

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def pid(self) -> int:
        """The main pid: the started child while it lives, then (type forking) its daemon; once a job's
        own run ended, the newest run begun beside it that still runs."""
        return self._pid_of(self._live_run())

    def _pid_of(self, child: Child | None) -> int:
        """The main pid of the run in progress ``child`` (from ``_live_run``)."""
        if child is not None and child.alive:
            return child.pid
        return self._daemon or 0

    def _live_run(self) -> Child | None:
        """The run in progress: its child lives, or (type forking) its daemon does; once a job's own
        run ended, the newest run begun beside it (overlap "allow") that still runs."""
        child = self._child
        if child is not None and (child.alive or self._daemon is not None):
            return child
        live = [beside for beside in self._beside.values() if beside.alive]
        return max(live, key=lambda beside: beside.started) if live else None

    def state(self) -> ProcessState:
        child = self._live_run()
        usage = self.usage if child else None
        return ProcessState(
            id=self.config.id,
            pid=self._pid_of(child) if child else 0,  # the run found once: the list reads every state
            status=self._status,
            desired=self.desired,
            start_time=child.started_wall if child else None,
            uptime=self._clock.monotonic() - child.started if child else 0.0,
            restart_count=self.restart_count,
            last_error=self._last_error,
            config=self.config,
            interpreter=self.interpreter,
            venv=self.venv,
            exits=self.exit_records(),
            cpu=usage.cpu_percent if usage else None,
            memory=usage.memory if usage else None,
            ready=self._ready,
            log_error=self._log_error,
            log_dropped_bytes=self.output.dropped_file_bytes,
            env_from_files=dict(self.env_from_files),
            status_text=self._status_text,
            main_pid=self._main_pid if child else 0,
            next_run=self.next_run,
        )

    def exit_records(self) -> tuple[ExitRecord, ...]:
        """recentExits: the ended runs of the history (not the skipped ones), oldest first. Made once
        per change of the history (its count of changes says when)."""
        history = self.runs
        made = self._exit_records
        if made is not None and made[0] is history and made[1] == history.changes:
            return made[2]
        records: list[ExitRecord] = []
        for run in history.recent():
            if run.ended is None or run.outcome is RunOutcome.SKIPPED:
                continue
            records.append(
                ExitRecord(
                    run.ended, run.returncode, run.signal, run.duration or 0.0, run.reason, run.last_lines
                )
            )
            if len(records) == EXIT_HISTORY:
                break
        exits = tuple(reversed(records))
        self._exit_records = (history, history.changes, exits)
        return exits

    def environment(self) -> dict[str, str]:
        """The environment of a spawn, its envFile files read now (SpawnError when one cannot be), in its
        virtualenv when it has one. The run's probe commands get the same."""
        config = self.config
        base = self._context.environ if self._context.environ is not None else os_environ()
        # Read at every start, so an edited file applies on the next restart (SpawnError if unreadable).
        self.env_from_files = read_env_files(config.env_file) if config.env_file else {}
        for note in skipped_lines(config.env_file):
            self.output.note(note)
            logger.warning("%s: %s", config.id, note)
        env = child_environment(
            base, config.env, pocketbase=self._context.pocketbase, tag=self._tag, file_env=self.env_from_files
        )
        if config.instance is not None:
            env["PROCESSMAN_INSTANCE"] = str(config.instance)
        if self.venv.venv is not None:
            activate_venv(env, self.venv.venv, VENV_BIN)
        return env

    # ---- user operations: post an intent, wake the owner, wait for the effect ---------------------

    async def start(self) -> None:
        """Start (desired: running); returns once the first attempt is made (or the process waits for
        its dependencies). Raises ProcessAlreadyRunning when it is starting or running; during a backoff
        wait it starts at once instead of waiting."""
        async with self._lock:
            self._check_owner()
            if self._active and self.config.is_job and self.desired is Desired.RUNNING:
                raise ProcessAlreadyRunning(self.config.id)  # armed: its runs come at their times
            if self._active and self._status in (Status.STARTING, Status.RUNNING):
                if self.desired is Desired.RUNNING:
                    raise ProcessAlreadyRunning(self.config.id)
                self.desired = Desired.RUNNING  # a stop the owner has not begun yet is undone
                return
            self.desired = Desired.RUNNING
            if self._active and self._status is Status.CRASHED:
                self._skip_backoff = True
            else:
                self._start_wanted = True
                self._single_run = False
                self._trigger = Trigger.START
                self._update(last_error="")
            await self._next_attempt()

    async def run_now(self) -> Run | None:
        """One run now (trigger manual) of a job or a one-shot task, following the job's overlap policy.
        Returns the run begun or skipped, or None when it was queued behind the run in progress. A job
        that is not armed runs once and stays unarmed. Raises NotRunnable for a kept-alive service."""
        if not self.config.is_task:
            raise NotRunnable(self.config.id)
        future: asyncio.Future[Run | None] = asyncio.get_running_loop().create_future()
        async with self._lock:
            self._check_owner()
            armed = self.config.is_job and self._active
            if armed:
                self._due.append((Trigger.MANUAL, future))
                self._wake()
        if armed:  # outside the lock: a stop must never wait behind this answer
            return await future
        async with self._lock:
            self._check_owner()
            if self._active:  # a one-shot task already running: skipped, as a job's overlap "skip"
                return self._record(
                    self.runs.skipped(Trigger.MANUAL, self._clock.time(), f"skipped: {self._busy_reason()}")
                )
            self.desired = Desired.RUNNING
            self._single_run = True
            self._start_wanted = True
            self._trigger = Trigger.MANUAL
            self._update(last_error="")
            waiter: asyncio.Future[Run | None] = asyncio.get_running_loop().create_future()
            self._run_waiter = waiter
            await self._next_attempt()
        # Outside the lock: the run begins (or cannot be spawned), or it waits for its dependencies
        # (None: queued), or the owner's loop ends first (None).
        return await waiter

    async def stop(self) -> None:
        """Stop (desired: stopped); returns once no process of the tree is left."""
        async with self._lock:
            self.desired = Desired.STOPPED
            self._start_wanted = False
            self._restart_reason = None
            self._wake()
            await self._until(lambda: not self._active and not self._start_wanted)
            if self._status is not Status.STOPPED and not self._active:
                # Gave up, or failed inside processman: what its runs left behind goes too.
                self._update(status=Status.STOPPING)
                await self._sweep()
                self._update(status=Status.STOPPED)

    async def restart(self, reason: str = "restart requested") -> None:
        """Stop the tree and start again; returns once the new attempt is made. Never a failure."""
        async with self._lock:
            await self._restart(reason)

    async def restart_if_running(self, reason: str, trigger: Trigger = Trigger.FILE_CHANGE) -> None:
        """For automatic triggers (file changes): only while the user wants it running (decided under
        the lock, so a stop that came first wins)."""
        async with self._lock:
            if self.desired is Desired.RUNNING:
                await self._restart(reason, trigger)

    async def _restart(self, reason: str, trigger: Trigger = Trigger.RESTART) -> None:
        self._check_owner()
        self._update(last_error="")
        self._post_restart(reason, trigger)
        await self._next_attempt()

    def restart_for(self, reason: str) -> None:
        """An automatic restart of a running process whose reason is kept in lastError and in the exit
        record (maxMemory). Never counted as a failure; returns at once."""
        if self.desired is Desired.RUNNING and self._status is Status.RUNNING and self._active:
            self._update(last_error=reason)
            self._post_restart(reason)

    def _post_restart(self, reason: str, trigger: Trigger = Trigger.RESTART) -> None:
        self.desired = Desired.RUNNING
        self._trigger = trigger
        if self._active:
            self._restart_reason = reason
        else:
            self._begin_restart(reason)
            self._start_wanted = True
        self._wake()

    def _check_owner(self) -> None:
        if not self.has_owner:
            raise ManagerNotRunning(self.config.id)

    async def _next_attempt(self) -> None:
        target = self._attempts + 1
        self._wake()
        await self._until(
            lambda: (
                self._attempts >= target
                or self.desired is not Desired.RUNNING
                or not (self._active or self._start_wanted)
            )
        )

    def _begin_restart(self, reason: str) -> None:
        self.restart_count += 1
        self.output.note(f"restarting: {reason}")

    # ---- the owner -------------------------------------------------------------------------------

    async def run(self) -> None:
        """The owner: waits for starts and keeps the process alive until it is stopped. Never raises
        (but CancelledError): a fault of its own is shown in lastError and the log, and the tree is
        stopped. Cancelled (the manager is gone), it kills the tree at once."""
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                while True:
                    await self._until(lambda: self._start_wanted)
                    self._start_wanted = False
                    self._active = True
                    try:
                        if self.config.is_job:
                            await self._keep_scheduled()
                        else:
                            await self._keep_alive()
                    except Exception as exc:
                        await self._fault(exc)
                    finally:
                        self._active = False
                        self._tell_waiter(None)
                        self._carry_over()
                        self._settle()
        except asyncio.CancelledError:
            self._kill_now()
            raise
        finally:
            self._tell_waiter(None)
            self._tasks = None
            self.has_owner = False

    def _carry_over(self) -> None:
        """The keep-alive loop ended (stopped, finished, gave up): intents posted while it was ending
        are not lost. A restart or a start asked for meanwhile begins a new start."""
        restart, self._restart_reason = self._restart_reason, None
        skip, self._skip_backoff = self._skip_backoff, False
        self._unhealthy = None
        if self.desired is Desired.RUNNING and (restart is not None or skip):
            if restart is not None:
                self._begin_restart(restart)
            self._start_wanted = True

    async def _fault(self, exc: Exception) -> None:
        """A fault of the loop itself: stop the tree, show the error, stay startable."""
        reason = f"internal error in processman, process stopped: {exc!r}"
        logger.error("%s: %s", self.config.id, reason, exc_info=exc)
        try:
            self.output.note(reason)
            if self._child is not None and self._child.alive:
                await self._terminate(self._child)
            await self._sweep()
        except Exception:
            logger.exception("%s: cannot stop the tree after an internal error", self.config.id)
            self._kill_now()
        self.fail(reason)

    def fail(self, reason: str) -> None:
        """Mark the process failed whatever its status (an internal fault); never raises."""
        try:
            self._update(status=Status.FAILED, last_error=reason, ready=False, force=True)
        except Exception:
            logger.exception("%s: cannot publish the failure", self.config.id)
            self._status, self._last_error, self._ready = Status.FAILED, reason, False

    async def _keep_alive(self) -> None:
        failures = 0
        wait_for_dependencies = True
        while True:
            if self.config.is_job:  # a reload made it a job: arm it instead
                self._start_wanted = True
                return
            self._update(status=Status.STARTING, ready=False)
            if wait_for_dependencies and self.config.depends_on:
                if self._context.dependencies.unmet(self.config.depends_on):
                    self._trigger = Trigger.DEPENDENCY
                self._attempt()  # start() returns while it waits for its dependencies
                interrupted = await self._dependencies_met()
                if interrupted is _RunEnd.STOP:
                    self._stopped()
                    return
                if interrupted is _RunEnd.RESTART:
                    self._begin_restart(self._take_restart())
                    continue
            wait_for_dependencies = False
            outcome, ended = await self._run_once()
            if ended is _RunEnd.STOP:
                self._stopped()
                return
            if ended is _RunEnd.RESTART:
                self._begin_restart(self._take_restart())
                failures, wait_for_dependencies = 0, True
                continue
            decision = decide(self.config, outcome, failures)
            failures = decision.failures
            self._trigger = Trigger.CRASH
            if decision.action is Action.FINISH:
                await self._finish(outcome)
                return
            hint = self._last_stderr_hint() if outcome.spawned else ""
            self._update(status=Status.CRASHED, last_error=outcome.reason + hint)
            if outcome.spawned:
                await self._clear_leftovers()
            if decision.action is Action.GIVE_UP:
                reason = (
                    f"gave up after {failures} consecutive failed starts (maxRetries is "
                    f"{self.config.retries}); last: {self._last_error}"
                )
                logger.error("%s: %s", self.config.id, reason)
                self._update(status=Status.FAILED, last_error=reason)
                return
            woken_by = await self._backoff(decision.delay)
            if woken_by is _RunEnd.STOP:
                self._stopped()
                return
            if woken_by is _RunEnd.RESTART:
                self._begin_restart(self._take_restart())
                failures, wait_for_dependencies = 0, True
                continue
            if woken_by is _RunEnd.START:
                failures = 0
            self._trigger = Trigger.START if woken_by is _RunEnd.START else Trigger.CRASH
            self.restart_count += 1

    # ---- a job: runs at its times ----------------------------------------------------------------

    async def _keep_scheduled(self) -> None:
        """A job: armed (``scheduled``) until stopped; each due time begins a run (or, while one runs,
        is skipped, queued or run beside it: ``overlap``). A failed run is retried up to maxRetries
        times, never past the next due time. Run once on demand while unarmed, it then ends
        ``completed`` or ``failed`` and stays unarmed."""
        schedule = self.config.schedule
        assert schedule is not None
        single, self._single_run = self._single_run, False
        timer: asyncio.Task[None] | None = None
        if single:
            self._due.append((self._trigger, self._run_waiter))
            self._run_waiter = None
            self._attempt()  # run_now() waits for its run's answer outside the lock from here
        else:
            armed = self._clock.time()
            self._catch_up(armed)
            timer = self._spawn_task(self._schedule_timer(armed), f"schedule {self.config.id}")
            self._attempt()  # start() returns once the job is armed
        try:
            last: RunOutcome | None = None
            while True:
                if self.config.schedule is not schedule:  # a reload changed it: arm again (or keep alive)
                    self._start_wanted = True
                    return
                if not self._due and self._queued is not None:
                    self._due.append((self._queued, None))
                    self._queued = None
                if not self._due:
                    if single and not self._beside:
                        await self._end_single(last)
                        return
                    ended = await self._idle(single=single)
                    if ended in (_RunEnd.STOP, _RunEnd.RESTART) and self._beside:
                        self._update(status=Status.STOPPING)
                        await self._stop_beside()
                    if ended is _RunEnd.STOP:
                        self._update(status=Status.STOPPED)
                        return
                    if ended is _RunEnd.RESTART:  # its own run is over: a restart arms it again
                        self._begin_restart(self._take_restart())
                        self._start_wanted = True
                        return
                    if not self._due:  # a single run's runs beside ended
                        continue
                trigger, waiter = self._due.pop(0)
                self._trigger = trigger
                self._run_waiter = waiter
                ended, last = await self._job_run()
                if ended is _RunEnd.STOP:
                    await self._stop_beside()
                    self._stopped()
                    return
        finally:
            if timer is not None:
                timer.cancel()
                await asyncio.wait([timer])
            self.next_run = None
            self._queued = None
            for _trigger, waiter in self._due:
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            self._due.clear()
            self._tell_waiter(None)

    async def _job_run(self) -> tuple[_RunEnd, RunOutcome | None]:
        """One due run of a job, with its retries: how it ended (STOP: the job was stopped) and the
        outcome of its last attempt."""
        failures = 0
        while True:
            self._update(status=Status.STARTING, ready=False)
            if self.config.depends_on:
                interrupted = await self._dependencies_met()
                if interrupted is _RunEnd.STOP:
                    return _RunEnd.STOP, None
                if interrupted is _RunEnd.RESTART:
                    self._begin_restart(self._take_restart())
                    self._trigger = Trigger.RESTART
                    continue
            outcome, ended = await self._run_once()
            result = self._outcome_of(outcome, ended)
            if ended is _RunEnd.STOP:
                return ended, result
            if ended is _RunEnd.RESTART:  # stop the run in progress and run again now
                self._begin_restart(self._take_restart())
                self._trigger = Trigger.RESTART
                continue
            if result is RunOutcome.SUCCEEDED:
                self._update(last_error="")
                await self._clear_job_leftovers()
                return ended, result
            failures += 1
            reason = outcome.reason + (self._last_stderr_hint() if outcome.spawned else "")
            retries = self.config.retries
            delay = backoff_delay(self.config.backoff, failures)
            if self.config.restart == "never" or 0 <= retries < failures:
                self._update(last_error=reason)
                await self._clear_job_leftovers()
                return ended, result
            if self.next_run is not None and self._clock.time() + delay >= self.next_run:
                self._update(last_error=f"{reason}; not retried: the next run is due first")
                await self._clear_job_leftovers()
                return ended, result
            self._update(status=Status.CRASHED, last_error=reason)
            await self._clear_job_leftovers()
            woken_by = await self._backoff(delay)
            if woken_by is _RunEnd.STOP:
                return woken_by, result
            if self._due:  # a due run takes over from the retry
                return ended, result
            if woken_by is _RunEnd.RESTART:
                self._begin_restart(self._take_restart())
                self._trigger = Trigger.RESTART
                continue
            self._trigger = Trigger.CRASH
            self.restart_count += 1

    async def _end_single(self, last: RunOutcome | None) -> None:
        """A run on demand of a job that is not armed ended, and no run beside it is left: completed or
        failed, unarmed."""
        self.desired = Desired.STOPPED
        self._update(status=Status.STOPPING)
        self._update(status=Status.COMPLETED if last is RunOutcome.SUCCEEDED else Status.FAILED)

    async def _idle(self, *, single: bool = False) -> _RunEnd | None:
        """Between a job's runs: None once a run is due, or the intent that came first. A run begun
        beside the last one (overlap "allow") that still runs is shown as the running one. A ``single``
        run on demand waits only for its runs beside: None once they ended."""
        while True:
            if single and not self._beside:
                return None
            if self._live_run() is None:
                self._update(status=Status.SCHEDULED, ready=False)
            elif self._status is Status.RUNNING:
                self._update(published=True)  # the pid shown is the run beside's
            else:
                self._update(status=Status.SCHEDULED, ready=False)
                self._update(status=Status.RUNNING)
            ended = self._intent_for_run()
            if ended in (_RunEnd.STOP, _RunEnd.RESTART):
                return ended
            if self._due:
                return None
            await self._wait_for()

    def _catch_up(self, now: float) -> None:
        """Runs due at once when a job is armed: runOnStart, and one run for the times missed since the
        last run on record (catchUp; missed runs collapse into one)."""
        schedule = self.config.schedule
        assert schedule is not None
        if schedule.run_on_start:
            self._due.append((Trigger.START, None))
            return
        last = self.runs.last_started()
        if schedule.catch_up and last is not None:
            missed = last_due(schedule, now, anchor=last)
            if missed is not None and missed > last:
                self.output.note(
                    f"a run was due while the manager was down ({_wall(missed)}); running it now"
                )
                self._due.append((Trigger.CATCH_UP, None))

    async def _schedule_timer(self, armed: float) -> None:
        """The job's clock: posts each due run to the owner, and says when the next one is."""
        schedule = self.config.schedule
        assert schedule is not None
        after = armed
        while True:
            due = next_due(schedule, after, anchor=armed if schedule.every is not None else None)
            self.next_run = due
            self._update(published=True)
            # In steps of at most a minute: a wall clock set or a machine suspended is noticed.
            while (left := due - self._clock.time()) > 0:
                await self._clock.sleep(min(left, 60.0))
            self._due.append((Trigger.SCHEDULE, None))
            self._wake()
            after = max(due, self._clock.time())  # times missed while suspended collapse

    def _overlap(self, *, waiting: bool = False) -> None:
        """Runs that came due while a run is in progress: skipped, queued or started beside it. While
        the run still ``waiting`` for its dependencies, "allow" queues (nothing may start before them)."""
        schedule = self.config.schedule
        overlap = schedule.overlap if schedule is not None else "skip"
        if waiting and overlap == "allow":
            overlap = "queue"
        busy = "the last run is still waiting for its dependencies" if waiting else self._busy_reason()
        while self._due:
            trigger, waiter = self._due.pop(0)
            result: Run | None
            if overlap == "allow":
                result = self._start_beside(trigger)
            elif overlap == "queue" and self._queued is None:
                self._queued, result = trigger, None
                self.output.note(f"{trigger} run queued: {busy}")
            else:
                why = "a run is already queued" if overlap == "queue" else busy
                result = self._record(self.runs.skipped(trigger, self._clock.time(), f"skipped: {why}"))
                self.output.note(f"{trigger} run skipped: {why} (overlap {overlap!r})")
            if waiter is not None and not waiter.done():
                waiter.set_result(result)

    def _start_beside(self, trigger: Trigger) -> Run:
        """overlap "allow": a run beside the one in progress, in the same tree, watched by a task."""
        try:
            child = self._spawn_child()
        except SpawnError as exc:
            self.output.note(str(exc))
            run = self._record(self.runs.begin(trigger, self._clock.time()))
            return self._end_run(run, RunOutcome.FAILED, Outcome(spawned=False, reason=str(exc)))
        run = self._record(self.runs.begin(trigger, child.started_wall, child.pid))
        task = self._spawn_task(self._watch_beside(child, run), f"run {run.number} of {self.config.id}")
        self._beside[task] = child
        task.add_done_callback(self._beside_ended)
        return run

    def _beside_ended(self, task: asyncio.Task[None]) -> None:
        del self._beside[task]
        self._wake()  # between runs, the status follows the runs still going

    async def _watch_beside(self, child: Child, run: Run) -> None:
        timed_out = False
        if self.config.timeout is not None:
            timer: asyncio.Future[None] = asyncio.ensure_future(self._clock.sleep(self.config.timeout))
            exited: asyncio.Future[Any] = child.exited
            try:
                await asyncio.wait([exited, timer], return_when=asyncio.FIRST_COMPLETED)
            finally:
                timer.cancel()
            if child.alive:
                timed_out = True
                self.output.note(f"run {run.number} ran longer than its timeout; stopping it")
                await self._stop_group(child)
        code, sig, reason = describe_exit(await child.exited)
        outcome = Outcome(True, reason, code, sig, child.uptime, timed_out=timed_out)
        if timed_out:
            result = RunOutcome.TIMED_OUT
        elif self.desired is not Desired.RUNNING or self._stopping_beside:
            result = RunOutcome.STOPPED
        else:
            result = RunOutcome.SUCCEEDED if succeeded(self.config, outcome) else RunOutcome.FAILED
        self._end_run(run, result, outcome)
        if result in (RunOutcome.FAILED, RunOutcome.TIMED_OUT):
            self._update(last_error=f"run {run.number}: {reason}")
        self._context.registry.group_gone(child.pid)

    async def _stop_group(self, child: Child) -> None:
        """The stop ladder for one run beside another: its process group only."""
        try:
            os.killpg(child.pid, signal.Signals[self.config.stop_signal])
            await asyncio.wait_for(asyncio.shield(child.exited), self.config.stop_timeout)
        except (ProcessLookupError, PermissionError):
            pass
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)

    async def _stop_beside(self) -> None:
        """The job stopped or restarts: runs beside the last one go with the tree."""
        self._stopping_beside = True
        try:
            if self._beside:
                await self._sweep()
            if self._beside:  # their watches end once the sweep's signals are seen
                await asyncio.wait(list(self._beside))
        finally:
            self._stopping_beside = False

    async def _clear_job_leftovers(self) -> None:
        if not self._beside:  # the tree is shared with runs beside it: they are not leftovers
            await self._clear_leftovers()

    def _stopped(self) -> None:
        """A stop ended a start, a run or a backoff: the tree is gone (the run's watch stopped it)."""
        self._update(status=Status.STOPPING)  # a no-op when the watch already said so
        self._update(status=Status.STOPPED)

    async def _run_once(self) -> tuple[Outcome, _RunEnd]:
        """One run: spawn, watch until it exits or an intent ends it, record the exit."""
        try:
            return await self._run_once_notified()
        finally:
            if self._notify is not None:
                self._notify.close()
                self._notify = None

    async def _run_once_notified(self) -> tuple[Outcome, _RunEnd]:
        config = self.config
        if config.type == "notify" or config.watchdog_sec:
            self._notify = NotifyListener(
                self._context.run_id,
                config.id,
                _Report(self),
                self._clock,
                notify_type=config.type == "notify",
                watchdog=config.watchdog_sec,
            )
            try:
                self._notify.open()
            except OSError as exc:
                reason = f"cannot start: cannot open its NOTIFY_SOCKET: {exc.strerror or exc}"
                self.output.note(reason)
                self._not_started(reason)
                self._attempts += 1
                self._settle()
                return Outcome(spawned=False, reason=reason), _RunEnd.EXITED
        try:
            child = self._spawn()
        except SpawnError as exc:
            self.output.note(str(exc))
            logger.error("%s: %s", self.config.id, exc)
            self._not_started(str(exc))
            self._attempt()
            return Outcome(spawned=False, reason=str(exc)), _RunEnd.EXITED
        run = self._begin_run(child)
        self._attempt()
        self._update(published=True)  # the pid changed
        try:
            ended = await self._watch(child)
            status = await child.exited
            code, sig, reason = describe_exit(status)
            pid, uptime = child.pid, child.uptime
            if self._daemon is not None:  # type forking: the run was the daemon's
                pid, uptime = self._daemon, self._clock.monotonic() - child.started
                reason = f"its daemon (pid {self._daemon}) and every process of its tree ended"
                code, sig = None, None
            elif ended is _RunEnd.EXITED and not self._beside:
                reason += await self._left_running(code)
        finally:
            self._daemon = None
        if ended is _RunEnd.UNHEALTHY and self._unhealthy is not None:
            reason = self._unhealthy
        elif ended is _RunEnd.RESTART and self._restart_reason is not None:
            reason = self._restart_reason
        elif ended is _RunEnd.TIMEOUT:
            reason = (
                f"timed out after {format_duration(self.config.timeout or 0.0)} and was stopped ({reason})"
            )
        self._unhealthy = None
        expected = ended in (_RunEnd.STOP, _RunEnd.RESTART)
        now = self._clock.time()
        self._context.bus.publish(ProcessExited(self.config.id, pid, code, sig, uptime, now, expected))
        outcome = Outcome(
            spawned=True,
            reason=reason,
            code=code,
            signal=sig,
            uptime=uptime,
            timed_out=ended is _RunEnd.TIMEOUT,
        )
        if not expected:
            # A job's or a one-shot task's successful end is news, not a warning.
            quiet = self.config.is_task and succeeded(self.config, outcome)
            level = logging.INFO if quiet else logging.WARNING
            logger.log(level, "%s: %s after %s", self.config.id, reason, format_duration(uptime))
        self._end_run(run, self._outcome_of(outcome, ended), outcome)
        return outcome, ended

    # ---- the run history -------------------------------------------------------------------------

    def _record(self, run: Run) -> Run:
        """Publish a change of the history (the run store writes it, streams show it)."""
        self._context.bus.publish(RunRecorded(self.config.id, run, self._clock.time(), self.config.keep_runs))
        return run

    def _begin_run(self, child: Child) -> Run:
        self.runs.resize(self.config.keep_runs)
        self._run = run = self.runs.begin(self._trigger, child.started_wall, child.pid)
        self._record(run)
        self._tell_waiter(run)
        return run

    def _not_started(self, reason: str) -> None:
        """A run that could not be started: recorded as failed at once."""
        run = self.runs.begin(self._trigger, self._clock.time())
        self._record(run)
        self._end_run(run, RunOutcome.FAILED, Outcome(spawned=False, reason=reason))
        self._tell_waiter(run)

    def _end_run(self, run: Run, result: RunOutcome, outcome: Outcome) -> Run:
        # A run that started ends its uptime later (its duration is the exit's uptime); one that could
        # not start ends now.
        end = run.started + outcome.uptime if outcome.spawned else self._clock.time()
        ended = dataclasses.replace(
            run,
            ended=end,
            outcome=result,
            returncode=outcome.code,
            signal=outcome.signal,
            reason=outcome.reason,
            last_lines=self._last_lines() if outcome.spawned else (),
        )
        self.runs.update(ended)
        if self._run is not None and self._run.number == run.number:
            self._run = None
        return self._record(ended)

    def _outcome_of(self, outcome: Outcome, ended: _RunEnd) -> RunOutcome:
        if ended in (_RunEnd.STOP, _RunEnd.RESTART):
            return RunOutcome.STOPPED
        if ended is _RunEnd.TIMEOUT:
            return RunOutcome.TIMED_OUT
        if ended is _RunEnd.EXITED and succeeded(self.config, outcome):
            return RunOutcome.SUCCEEDED
        return RunOutcome.FAILED

    def _tell_waiter(self, run: Run | None) -> None:
        """run_now() waits to hear which run its request began."""
        waiter, self._run_waiter = self._run_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(run)

    def _busy_reason(self) -> str:
        current = self._run.number if self._run is not None else None
        which = f"run {current}" if current is not None else "the last run"
        return f"{which} was still running"

    async def _left_running(self, code: int | None) -> str:
        """Words for a started process that exited while its descendants run on (they are stopped next,
        before whatever follows): which ones, and, after an exit 0, that type forking exists."""
        if self.config.type == "forking":
            return ""
        left = await self._tree.members()
        if not left:
            return ""
        shown = ", ".join(describe_pid(pid) for pid in left[:3]) + (
            f" and {len(left) - 3} more" if len(left) > 3 else ""
        )
        words = f"; its descendants were still running ({shown}) and were stopped"
        if code == 0:
            words += '; a program that starts a daemon and exits needs "type": "forking"'
        self.output.note(words[2:])
        return words

    async def _watch(self, child: Child) -> _RunEnd:
        """Wait until the child exits or an intent ends the run (then stop its tree)."""
        monitor: asyncio.Task[None] | None = None
        if HealthMonitor.needed(self.config):
            health = HealthMonitor(
                self.config, _Report(self), self._context.prober, self._probe_site, self._clock
            )
            monitor = self._spawn_task(health.run(), f"health {self.config.id}")
        forking = self.config.type == "forking"
        watchdog: asyncio.Task[None] | None = None
        if self._notify is not None and self._notify.watchdog is not None:
            watchdog = self._spawn_task(self._notify.watch(), f"watchdog {self.config.id}")
        # notify: ready on READY=1; forking: once the started process exited 0 and left its daemon.
        if self.config.readiness is None and self.config.type == "simple":
            self._became_ready()
        try:
            while child.alive:
                ended = self._run_intent(child)
                if ended is not None:
                    if ended not in (_RunEnd.UNHEALTHY, _RunEnd.TIMEOUT):
                        self._update(status=Status.STOPPING)
                    await self._terminate(child)
                    return ended
                await self._wait_for(child.exited, timeout=self._time_left(child))
            if forking and child.exited.result() == 0 and await self._found_daemon():
                return await self._watch_daemon(child)
            if await self._named_main_runs(child):
                return await self._watch_daemon(child)
            return _RunEnd.EXITED
        finally:
            for helper in (monitor, watchdog):
                if helper is not None:
                    helper.cancel()
                    await asyncio.wait([helper])
            self._update(ready=False)

    async def _found_daemon(self) -> bool:
        """type forking, the started process exited 0: find the daemon (its pid file, else the tree's
        oldest member). False when nothing of the tree runs."""
        members = await self._tree.members()
        if not members:
            self.output.note(
                'exited with code 0 and left no process running ("type": "forking" expects a daemon)'
            )
            return False
        main: int | None = None
        if self.config.pid_file is not None:
            path = self.config.cwd / self.config.pid_file
            main = await _read_pid_file(path, PID_FILE_WAIT)
            if main is None:
                self.output.note(
                    f"no pid in {path} {format_duration(PID_FILE_WAIT)} after the start; "
                    "using the oldest process of the tree"
                )
            elif main not in members:
                self.output.note(
                    f"{path} names pid {main}, which is not in the tree; using the oldest process of the tree"
                )
                main = None
        if main is None:
            main = min(members, key=lambda pid: (stat.start if (stat := read_stat(pid)) else 1 << 62, pid))
        self._daemon = main
        self.output.note(f"started process exited 0; its daemon is pid {main}")
        logger.info("%s: daemon pid %d", self.config.id, main)
        self._update(published=True)  # the pid changed
        return True

    async def _named_main_runs(self, child: Child) -> bool:
        """sd_notify ``MAINPID=`` named another process of the tree as the service, and it still runs
        now that the started process exited: the run is that process's (as systemd does)."""
        named = self._main_pid
        if not named or named == child.pid or named not in await self._tree.members():
            return False
        self._daemon = named
        self.output.note(f"started process exited; the run goes on with its main pid {named} (MAINPID=)")
        self._update(published=True)  # the pid changed
        return True

    async def _watch_daemon(self, child: Child) -> _RunEnd:
        """type forking (or a MAINPID=): the run goes on until its main process ends (the rest of the
        tree then goes as leftovers), the whole tree has gone, or an intent ends it."""
        if self.config.readiness is None:
            self._became_ready()
        # The run ends when its main process does (the rest of the tree is then stopped as leftovers),
        # or when the whole tree has gone.
        gone = self._spawn_task(self._tree_ends(), f"daemon {self.config.id}")
        main_gone = self._spawn_task(self._main_ends(), f"main {self.config.id}")
        try:
            while not gone.done() and not main_gone.done():
                ended = self._run_intent(child)
                if ended is not None:
                    if ended not in (_RunEnd.UNHEALTHY, _RunEnd.TIMEOUT):
                        self._update(status=Status.STOPPING)
                    await self._terminate(child)
                    return ended
                await self._wait_for(gone, main_gone, timeout=self._time_left(child))
            return _RunEnd.EXITED
        finally:
            for task in (gone, main_gone):
                task.cancel()
            await asyncio.wait([gone, main_gone])

    async def _main_ends(self) -> None:
        """Until the run's main process (a daemon, or the MAINPID= process) has exited."""
        if self._daemon is not None:
            await wait_for_exit([self._daemon], None)

    async def _tree_ends(self) -> None:
        await self._tree.wait_empty(None)

    async def _clear_leftovers(self) -> None:
        """Whatever an exited child left behind (a grandchild holding a port) goes before what comes
        next. Once per run: its process group id may belong to someone else later."""
        if self._child is not None and self._child is not self._cleared:
            await self._terminate(self._child)

    async def _sweep(self) -> None:
        """Stop every process still carrying this process's tag (no group: the run is over)."""
        try:
            await self._tree.sweep(signal.Signals[self.config.stop_signal], self.config.stop_timeout)
        except asyncio.CancelledError:
            self._kill_now()
            raise

    def _attempt(self) -> None:
        """A start was made: start() and restart() waiting for it may return."""
        self._attempts += 1
        self._start_wanted = False  # a start asked for while this one was on its way is this one
        self._settle()

    def _run_intent(self, child: Child) -> _RunEnd | None:
        """What ends the run in progress now: an intent, or its timeout. A job's runs that came due
        meanwhile are skipped, queued or started beside it first."""
        if self._due:
            self._overlap()
        ended = self._intent_for_run()
        timeout = self.config.timeout
        if ended is None and timeout is not None and self._clock.monotonic() - child.started >= timeout:
            self.output.note(f"ran longer than its timeout ({format_duration(timeout)}); stopping it")
            return _RunEnd.TIMEOUT
        return ended

    def _time_left(self, child: Child) -> float:
        """Seconds until the run's timeout (0: no timeout, wait without a timer)."""
        if self.config.timeout is None:
            return 0.0
        return max(self.config.timeout - (self._clock.monotonic() - child.started), 1e-3)

    def _intent_for_run(self) -> _RunEnd | None:
        if self.desired is not Desired.RUNNING:
            return _RunEnd.STOP
        if self._restart_reason is not None:
            return _RunEnd.RESTART
        if self._unhealthy is not None:
            return _RunEnd.UNHEALTHY
        return None

    async def _backoff(self, delay: float) -> _RunEnd:
        """Wait ``delay`` seconds, or less when an intent comes: returns what ended the wait."""
        deadline = self._clock.monotonic() + delay
        while True:
            ended = self._intent_for_run()
            if ended is not None:
                return ended
            if self._skip_backoff:
                self._skip_backoff = False
                return _RunEnd.START
            left = deadline - self._clock.monotonic()
            if left <= 0:
                return _RunEnd.TIMER
            await self._wait_for(timeout=left)

    async def _dependencies_met(self) -> _RunEnd | None:
        """Wait for the dependencies: None once met; STOP or RESTART when that came first."""
        assert self._tasks is not None, "the owner runs"
        wait = self._tasks.create_task(
            _captured(self._context.dependencies.wait(self.config, self._waiting_for)),
            name=f"dependencies {self.config.id}",
        )
        try:
            while not wait.done():
                if self._due:  # a job's run came due while this one waits: it is in progress
                    self._overlap(waiting=True)
                interrupted = self._intent_for_run()
                if interrupted in (_RunEnd.STOP, _RunEnd.RESTART):
                    return interrupted
                await self._wait_for(wait)
            fault = wait.result()
            if fault is not None:
                raise fault
            return _RunEnd.STOP if self.desired is not Desired.RUNNING else None
        finally:
            wait.cancel()
            await asyncio.wait([wait])
            if self._last_error.startswith("waiting for "):  # it no longer waits
                self._update(last_error="")

    def _waiting_for(self, reason: str) -> None:
        if reason:
            self._tell_waiter(None)  # run_now(): the run is queued behind its dependencies
            self.output.note(reason)
            self._update(last_error=reason)
        elif self._last_error.startswith("waiting for "):
            self.output.note("dependencies met")
            self._update(last_error="")

    async def _finish(self, outcome: Outcome) -> None:
        """The run ended and the restart policy says it stays ended (a one-shot task, a migration)."""
        ok = succeeded(self.config, outcome)
        error = "" if ok else outcome.reason + self._last_stderr_hint()
        message = f"{outcome.reason}; not restarted (restart is {self.config.restart!r})"
        self.output.note(message)
        logger.info("%s: %s", self.config.id, message)
        self.desired = Desired.STOPPED
        self._update(status=Status.STOPPING, last_error=error)
        await self._clear_leftovers()
        self._update(status=Status.COMPLETED if ok else Status.FAILED)

    # ---- the child -------------------------------------------------------------------------------

    def _spawn(self) -> Child:
        """Spawn the run's child: the main process of the run from now on."""
        child = self._spawn_child()
        self._child = child
        self._tree.spawned(child)
        self._run_first_seq = self.output.last_seq  # the child's output is read later, in the loop
        for problem in child.limit_problems:
            self.output.note(problem)
            logger.warning("%s: %s", self.config.id, problem)
            self._update(last_error=problem)
        return child

    def _spawn_child(self) -> Child:
        config = self.config
        problem = missing_cwd(config)
        if problem is not None:
            raise SpawnError(problem)
        # Looked for at every start: a virtualenv made after processman started is used on the next.
        self.venv = find_venv(config)
        self.interpreter = resolve_interpreter(config, self.venv)
        argv = command_line(config, self.interpreter)
        # An interpreter would start and then fail on a missing script: say so instead.
        problem = missing_script(config, self.interpreter)
        if problem is not None:
            raise SpawnError(problem)
        env = self.environment()
        # Kept for the run's probes only: 1000 processes without probes need not keep 1000 environments.
        self._run_env = env if config.readiness is not None or config.liveness is not None else {}
        if self._notify is not None:
            env.update(self._notify.environment())
        self._status_text, self._main_pid = "", 0  # what the last run said no longer holds
        try:
            child = spawn(
                argv,
                cwd=config.cwd,
                env=env,
                output=self.output,
                registry=self._context.registry,
                clock=self._clock,
                wrap=self._tree.prepare_spawn,
                limits=config.limits,
            )
        except SpawnError as exc:
            if isinstance(exc.__cause__, FileNotFoundError) and exc.__cause__.filename in (None, argv[0]):
                # In the words `processman check` uses for the same problem.
                missing = missing_program(config, self.interpreter, env)
                raise SpawnError(missing or str(exc)) from exc.__cause__
            raise
        system_python = uses_system_python(config, self.venv)
        # The virtualenv is worth a word when there is one, or when a Python program runs without.
        where = f" ({self.venv.describe()})" if self.venv.venv is not None or system_python else ""
        logger.info("%s: started pid %d: %s%s", config.id, child.pid, shlex.join(argv)[:200], where)
        if system_python:
            self.output.note(f"{argv[0]} runs outside any virtualenv: {self.venv.describe()}")
        return child

    async def _terminate(self, child: Child) -> None:
        """The stop ladder for the run's tree. Cancelled part-way, it kills the tree at once."""

        began = time.monotonic()

        def escalate(survivors: int) -> None:
            extended = self._stop_extension() > began  # the process asked for longer while stopping
            waited = format_duration(
                round(time.monotonic() - began, 1) if extended else self.config.stop_timeout
            )
            message = (
                f"{survivors} process(es) still running {waited} after {self.config.stop_signal}; sending "
                "SIGKILL (raise stopTimeout if the process needs longer to shut down)"
            )
            logger.warning("%s: %s", self.config.id, message)
            self.output.note(message)

        try:
            stop_signal = signal.Signals[self.config.stop_signal]
            if self._notify is not None:
                self._notify.stop_began()
            await self._tree.terminate(
                stop_signal,
                self.config.stop_timeout,
                on_escalate=escalate,
                extended_until=self._stop_extension,
            )
            if child.alive:  # killed but not reaped yet
                await child.exited
        except asyncio.CancelledError:
            self._kill_now()
            raise
        self._tree.cleanup()
        self._cleared = child
        self._context.registry.group_gone(child.pid)

    def _stop_extension(self) -> float:
        """Until when the run asked not to be killed while it stops (sd_notify), as time.monotonic()."""
        return self._notify.extended_until if self._notify is not None else 0.0

    def listed_members(self) -> list[int]:
        """For the resource sampler: the members its containment lists without a scan."""
        return self._tree.listed() if self._live_run() is not None else []

    def accounting(self) -> Path | None:
        """For the resource sampler: the cgroup that accounts for the running tree (None: /proc)."""
        return self._tree.accounting() if self._live_run() is not None else None

    async def send_signal(self, sig: signal.Signals, *, tree: bool = False) -> int:
        """Send ``sig`` to the main process (the started child, or a forking process's daemon), or with
        ``tree`` to every process of its tree. Returns how many processes it was sent to. Raises
        ProcessNotRunning when there is none."""
        if self._live_run() is None:
            raise ProcessNotRunning(self.config.id)
        if tree:
            count = await self._tree.signal(sig)
        else:
            try:
                os.kill(self.pid, sig)
                count = 1
            except ProcessLookupError:
                count = 0
        if count == 0:
            raise ProcessNotRunning(self.config.id)
        target = f"the tree ({count} process(es))" if tree else f"pid {self.pid}"
        self.output.note(f"{sig.name} sent to {target}")
        return count

    def kill_now(self) -> None:
        """SIGKILL to the whole tree at once (the manager is being forced down)."""
        self._tree.kill_now()

    def _kill_now(self) -> None:
        """SIGKILL the tree without waiting (a stop cut short); never raises."""
        child = self._child
        if child is not None and (child.alive or self._status is not Status.STOPPED):
            try:
                self._tree.kill_now()
            except Exception:
                logger.exception("%s: cannot kill the tree", self.config.id)

    def _probe_site(self) -> ProbeSite:
        registry = self._context.registry
        return ProbeSite(
            cwd=self.config.cwd, env=self._run_env, owned_pids=registry.owned, on_reaped=registry.reaped
        )

    # ---- what the run wrote ----------------------------------------------------------------------

    def _last_lines(self, count: int = 5) -> tuple[str, ...]:
        """What the run that just ended wrote last (not earlier runs, not the manager's notes)."""
        lines = self.output.since(max(self._run_first_seq, self.output.last_seq - 50))
        return tuple([line.content for line in lines if line.stream != SYSTEM][-count:])

    def _last_stderr_hint(self) -> str:
        for line in reversed(self.output.since(self._run_first_seq)[-20:]):
            if line.stream == STDERR and line.content.strip():
                return f": {line.content.strip()[:200]}"
        return ""

    # ---- state changes, all through here ---------------------------------------------------------

    def _update(
        self,
        *,
        status: Status | None = None,
        last_error: str | None = None,
        ready: bool | None = None,
        published: bool = False,
        force: bool = False,
    ) -> None:
        """Change status, last error or readiness, and publish the change (one event for all).
        ``published``: publish even if none of them changed (the pid did). ``force``: skip the
        transition table (an internal fault may strike in any status)."""
        previous = self._status
        changed = published
        if status is not None and status is not previous:
            if not force:
                check_transition(previous, status)
            self._status = status
            changed = True
        if last_error is not None and last_error != self._last_error:
            self._last_error = last_error
            changed = True
        if ready is not None and ready != self._ready:
            self._ready = ready
            changed = True
        if not changed:
            return
        self._context.bus.publish(
            StatusChanged(
                self.config.id,
                self._status,
                previous,
                self.pid,
                self._clock.time(),
                self.restart_count,
                self._last_error,
                self._ready,
            )
        )
        self._settle()

    def _became_ready(self) -> None:
        if self._status is Status.STARTING:
            self._update(status=Status.RUNNING, ready=True)

    def _not_ready(self, reason: str) -> None:
        if reason:
            self._update(last_error=f"not ready yet: {reason}")
        elif self._last_error.startswith("not ready yet: "):
            self._update(last_error="")

    def _mark_unhealthy(self, reason: str) -> None:
        self._unhealthy = reason
        self._wake()

    def _set_status_text(self, text: str) -> None:
        if text != self._status_text:
            self._status_text = text
            self._update(published=True)

    def _set_main_pid(self, pid: int) -> None:
        if pid != self._main_pid:
            self._main_pid = pid
            self._update(published=True)

    def _stopping(self) -> None:
        self._update(ready=False)

    def _log_file_problem(self, problem: str) -> None:
        """A log file became unwritable ("": writable again): shown in the state and lastError."""
        previous, self._log_error = self._log_error, problem
        if problem == previous:
            return
        if problem:
            self.output.note(f"{problem}; output stays in memory")
            self._update(last_error=problem)
        elif self._last_error == previous:
            self._update(last_error="")
        else:
            self._update(published=True)

    # ---- waking and waiting ----------------------------------------------------------------------

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        self._settle()

    async def _wait_for(self, *futures: asyncio.Future[Any], timeout: float = 0) -> None:
        """Sleep until one of ``futures`` is done, an intent wakes the owner, or ``timeout`` passes."""
        loop = asyncio.get_running_loop()
        self._wakeup = loop.create_future()
        waits: list[asyncio.Future[Any]] = [self._wakeup, *futures]
        timer = self._spawn_task(self._clock.sleep(timeout), "timer") if timeout > 0 else None
        if timer is not None:
            waits.append(timer)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    def _settle(self) -> None:
        """Something changed: release the operations whose condition now holds."""
        for condition, waiter in list(self._waiters):
            if condition() and not waiter.done():
                waiter.set_result(None)

    async def _until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition`` holds; it is checked at each _settle()."""
        while not condition():
            entry = (condition, asyncio.get_running_loop().create_future())
            self._waiters.append(entry)
            try:
                await entry[1]
            finally:
                self._waiters.remove(entry)

    def _spawn_task(self, coroutine: Awaitable[None], name: str) -> asyncio.Task[None]:
        assert self._tasks is not None, "the owner runs"
        return self._tasks.create_task(_reported(coroutine, self, name), name=name)

    def _take_restart(self) -> str:
        reason, self._restart_reason = self._restart_reason or "restart requested", None
        return reason

    # ---- configuration and shutdown --------------------------------------------------------------

    def reconfigure(self, config: ProcessConfig) -> None:
        """Take a changed config; it applies from the next start (the caller restarts if needed)."""
        self.config = config
        self.venv = find_venv(config)
        self.interpreter = resolve_interpreter(config, self.venv)
        self.output.set_rotation(config.log_max_size, config.log_backups)

    def close(self) -> None:
        """Release descriptors once the process is stopped (manager shutdown)."""
        if self._child is not None:
            self._child.close_pipes()
        self.output.close()


class _Report:
    """The health monitor's view of its process: reports, never writes."""

    def __init__(self, process: ManagedProcess) -> None:
        self._process = process

    def note(self, text: str) -> None:
        self._process.output.note(text)

    def not_ready(self, reason: str) -> None:
        self._process._not_ready(reason)

    def became_ready(self) -> None:
        self._process._became_ready()

    def unhealthy(self, reason: str) -> None:
        self._process._mark_unhealthy(reason)

    def status_text(self, text: str) -> None:
        self._process._set_status_text(text)

    def main_pid(self, pid: int) -> None:
        self._process._set_main_pid(pid)

    def stopping(self) -> None:
        self._process._stopping()


async def _captured(coroutine: Awaitable[None]) -> Exception | None:
    """Run ``coroutine``; its fault is returned to the one who awaits the task (a task of the
    process's group must not raise: the group would cancel the owner)."""
    try:
        await coroutine
    except Exception as exc:
        return exc
    return None


async def _reported(coroutine: Awaitable[None], process: ManagedProcess, name: str) -> None:
    """A helper task of a process: a fault of its own is shown at once, never swallowed."""
    try:
        await coroutine
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.error("%s: %s failed: %r", process.config.id, name, exc, exc_info=exc)
        process.output.note(f"internal error in {name}: {exc!r}")
        process._update(last_error=f"internal error in {name}: {exc!r}")


def describe_pid(pid: int) -> str:
    """``1234 (redis-server 127.0.0.1:6379)``: a pid and its command line, short."""
    command = backend.current().facts.cmdline(pid)
    if len(command) > 60:
        command = command[:57] + "..."
    return f"{pid} ({command})" if command else str(pid)


def _pid_in(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and 0 < int(text) <= 1 << 22 else None


async def _read_pid_file(path: Path, timeout: float) -> int | None:
    """The pid in ``path``, waiting up to ``timeout`` for it to be written (a daemon writes it after
    its parent exits). Watched with inotify on its folder: no polling."""
    try:
        await inotify.wait_until(
            path.parent, inotify.IN_FILE_WRITTEN, lambda: _pid_in(path) is not None, timeout
        )
    except FileNotFoundError:
        return None
    return _pid_in(path)


def _wall(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(moment))
