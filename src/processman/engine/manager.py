"""The set of managed processes: start and stop them all, look them up, and publish their events."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from processman.config import NotifyTarget, ProcessConfig, load_config
from processman.config_watch import watch_file
from processman.engine import backend
from processman.engine.backend import Backend, Watch
from processman.engine.clock import SYSTEM_CLOCK, Clock
from processman.engine.containment import Containment, choose, clean_up_previous_cgroup
from processman.engine.dependencies import DependencyGate, stop_in_order
from processman.engine.events import Event, EventBus, Listener, LogLines, ProcessRemoved, Subscription
from processman.engine.leftovers import RunFile, clean_up_previous_run
from processman.engine.posix import (
    Guardian,
    OrphanReaper,
    TagScanner,
    raise_open_file_limit,
    set_child_subreaper,
)
from processman.engine.process import ManagedProcess, ProcessContext, ProcessState
from processman.engine.reload import ReloadPlan, plan_reload
from processman.engine.resources import ManagerUsage, ResourceSampler
from processman.engine.runs import Run, RunHistory
from processman.engine.runstore import FILE_NAME as RUNS_FILE
from processman.engine.runstore import RunStore
from processman.engine.states import Desired, Status
from processman.environment import PocketBaseInfo
from processman.errors import ConfigError, DuplicateProcess, ManagerNotRunning, ProcessNotFound, SignalRefused
from processman.logs import LoggingSink, LogLine
from processman.notify import EmailSender, Notifier, NotifierOptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManagerOptions:
    """How a manager runs. The defaults suit embedding; ``processman serve`` turns everything on.

    state_dir: folder for log files and the run file (None: neither).
    adopt_orphans: become the Linux child subreaper, so double-forked daemons re-parent to the manager
        and are reaped by it. Changes how the host process reaps, so it is off for embedding.
    guardian: start the guardian that cleans up if the manager is killed with SIGKILL.
    log_output: pass child output to Python logging (stdout INFO, stderr ERROR), one record per
        line; or, with ``output_echo``, each batch of lines to that callable (from a thread of its own).
    """

    state_dir: Path | None = None
    pocketbase: PocketBaseInfo | None = None
    adopt_orphans: bool = False
    guardian: bool = True
    log_output: bool = True
    output_echo: Callable[[LogLines], None] | None = None
    # More counts of dropped log lines, by consumer (serve's console), for the manager's figures.
    log_drops: Callable[[], Mapping[str, int]] | None = None
    watch_ignore: tuple[Path, ...] = ()
    # Seconds between looks at the config file for changes (with ``watch_config``).
    config_poll: float = 1.0
    # Seconds between samples of each tree's CPU and memory (and maxMemory checks); 0 turns them off.
    metrics_interval: float = 2.0
    # The file the processes came from: ``reload_from_file()`` re-reads it, and with ``watch_config``
    # every change to it is applied (a broken file changes nothing).
    config_path: Path | None = None
    watch_config: bool = False
    # Time for backoff delays and probe intervals (tests pass a clock they move by hand).
    clock: Clock = SYSTEM_CLOCK
    # How process trees are kept together: "auto" (cgroup v2 where the manager may create cgroups, else
    # tags), "cgroup" or "tags"; None reads PROCESSMAN_CONTAINMENT (see engine/containment.py).
    containment: str | None = None
    # Where every process's events go (the config's top-level "notify"; each process adds its own),
    # how emails are sent (PocketBase mode), and the pace of deliveries.
    notify: tuple[NotifyTarget, ...] = ()
    email_sender: EmailSender | None = None
    notifier: NotifierOptions = field(default_factory=NotifierOptions)


class ProcessManager:
    """Supervises a set of processes from inside an asyncio program.

    >>> async def main() -> None:
    ...     manager = ProcessManager([ProcessConfig(id="worker", command="python3", args=("worker.py",))])
    ...     async with manager:                  # starts every registered process
    ...         print(manager.state("worker").status)
    ...         await manager.restart_process("worker")
    ...     # leaving the block stops every process tree
    """

    def __init__(
        self, processes: Iterable[ProcessConfig] = (), options: ManagerOptions | None = None
    ) -> None:
        self.options = options or ManagerOptions()
        self.run_id = secrets.token_hex(6)
        self.events = EventBus()
        self._scanner = TagScanner()
        # The backend first: an unknown PROCESSMAN_BACKEND is refused here, before anything starts.
        self.backend: Backend = backend.current()
        self.containment: Containment = choose(self.run_id, self._scanner, self.options.containment)
        self._processes: dict[str, ManagedProcess] = {}
        self._context = ProcessContext(
            run_id=self.run_id,
            bus=self.events,
            scanner=self._scanner,
            pocketbase=self.options.pocketbase,
            log_folder=None if self.options.state_dir is None else self.options.state_dir / "logs",
            dependencies=DependencyGate(self.events, lambda: self._processes.values()),
            clock=self.options.clock,
            containment=self.containment,
        )
        self._context.registry.on_group = self._on_group
        self._guardian: Guardian | None = None
        self._run_file: RunFile | None = None
        self._logging_sink: LoggingSink | None = None
        self._reaper: OrphanReaper | None = None
        self._reaper_watch: Watch | None = None
        # Every task of the manager lives in this group, run by the root task from start() to close().
        self._tasks: asyncio.TaskGroup | None = None
        self._root: asyncio.Task[None] | None = None
        self._owners: dict[str, asyncio.Task[None]] = {}  # each process's owner task
        self._watchers: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self.resources = ResourceSampler(
            self.run_id,
            lambda: self._processes.values(),
            self.options.metrics_interval,
            self._dropped_lines,
            clock=self.options.clock,
        )
        self.notifier = Notifier(
            self.events,
            self._state_if_known,
            lambda process_id: process.config if (process := self._processes.get(process_id)) else None,
            self.options.notify,
            email=self.options.email_sender,
            options=self.options.notifier,
        )
        self._running = False
        self._shutdown: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        self._config_watch: asyncio.Task[None] | None = None
        # The run history on disk (state_dir/runs.sqlite3), open from start() to close().
        self._run_store: RunStore | None = None
        self._stored_runs: dict[str, list[Run]] = {}
        self._histories: dict[str, RunHistory] = {}  # each id's last history, kept when it is removed
        self._forget_run_store: Callable[[], None] | None = None
        for config in processes:
            self.register(config)

    def __repr__(self) -> str:
        running = sum(1 for p in self._processes.values() if p.pid)
        return f"<ProcessManager processes={len(self._processes)} running={running}>"

    # ---- registration and lookup -----------------------------------------------------------------

    async def apply(self, configs: Iterable[ProcessConfig], *, dry_run: bool = False) -> ReloadPlan:
        """Make the set of processes match ``configs``: add new ones, stop removed ones, restart
        changed ones and leave unchanged ones alone (same pid). Returns the plan it followed."""
        configs = list(configs)
        async with self._reload_lock:
            plan = plan_reload([p.config for p in self._processes.values()], configs)
            if dry_run or (plan.empty and [p.config for p in self._processes.values()] == configs):
                return plan
            logger.info("applying config: %s", plan.summary())
            await asyncio.gather(*(self._remove(process_id) for process_id in plan.removed))
            by_id = {config.id: config for config in configs}
            for process_id in plan.unchanged:
                self._processes[process_id].reconfigure(by_id[process_id])
            await asyncio.gather(*(self._change(by_id[process_id]) for process_id in plan.changed))
            for process_id in plan.added:
                self.register(by_id[process_id])
            self._processes = {config.id: self._processes[config.id] for config in configs}
            self.resources.wake()  # a maxMemory may need samples now
            if self._running:
                await asyncio.gather(
                    *(
                        self.start_process(process_id)
                        for process_id in plan.added
                        if self._processes[process_id].config.autostart
                    )
                )
            return plan

    async def reload_from_file(self, *, dry_run: bool = False) -> ReloadPlan:
        """Re-read ``options.config_path`` and apply it. A file with errors changes nothing: raises
        ConfigError listing every problem."""
        if self.options.config_path is None:
            raise ConfigError("this manager was not started from a config file")
        loaded = load_config(self.options.config_path)
        if not loaded.exists:
            raise ConfigError(f"{loaded.path}: file not found; nothing changed")
        if loaded.errors:
            # A reload applies all or nothing: no entry is skipped, whatever the loader's words say.
            lines = (
                str(problem).removesuffix("; entry skipped").removesuffix("; target skipped")
                for problem in loaded.errors
            )
            raise ConfigError("\n".join(lines) + "\nnothing changed")
        plan = await self.apply(loaded.processes, dry_run=dry_run)
        if not dry_run:
            self.notifier.targets = loaded.notify
        return plan

    async def _remove(self, process_id: str) -> None:
        process = self._processes[process_id]
        await self._stop_watcher(process_id)
        await process.stop()
        owner = self._owners.pop(process_id, None)
        if owner is not None:
            owner.cancel()
            await asyncio.gather(owner, return_exceptions=True)
        process.close()
        del self._processes[process_id]
        self.events.publish(ProcessRemoved(process_id, self.options.clock.time()))

    async def _change(self, config: ProcessConfig) -> None:
        process = self._processes[config.id]
        await self._stop_watcher(config.id)
        process.reconfigure(config)
        if process.desired is Desired.RUNNING:
            await process.restart("config changed")
        elif self._running and config.autostart and not config.is_job and process.status is Status.FAILED:
            # It failed on its own (a one-shot task, a service that gave up): the new config is a new
            # try, as at start-up. A completed task is not run again (run it); what the user stopped,
            # or a job they disarmed, stays so.
            await process.start()
        self._ensure_watcher(process)

    async def _stop_watcher(self, process_id: str) -> None:
        watcher = self._watchers.pop(process_id, None)
        if watcher is not None:
            task, stop = watcher
            stop.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def register(self, config: ProcessConfig) -> None:
        """Add a process. Once the manager runs, a newly registered process starts at once: use
        ``await start_process(id)`` after registering from a running manager."""
        if config.id in self._processes:
            raise DuplicateProcess(config.id)
        process = self._processes[config.id] = ManagedProcess(config, self._context)
        self._seed_runs(process)
        self.resources.wake()  # a maxMemory may need samples now
        if self._tasks is not None:
            self._own(process)

    def _own(self, process: ManagedProcess) -> None:
        assert self._tasks is not None, "the manager runs"
        process_id = process.config.id
        process.has_owner = True
        self._owners[process_id] = self._tasks.create_task(_owner(process), name=f"process {process_id}")

    @property
    def ids(self) -> list[str]:
        return list(self._processes)

    def _get(self, process_id: str) -> ManagedProcess:
        try:
            return self._processes[process_id]
        except KeyError:
            raise ProcessNotFound(process_id) from None

    def state(self, process_id: str) -> ProcessState:
        return self._get(process_id).state()

    def _state_if_known(self, process_id: str) -> ProcessState | None:
        process = self._processes.get(process_id)
        return None if process is None else process.state()

    def states(self) -> list[ProcessState]:
        """Every process, in registration (config) order."""
        return [process.state() for process in self._processes.values()]

    def logs(self, process_id: str, lines: int = 100) -> list[LogLine]:
        """The last ``lines`` lines (at most 1000 are kept), oldest first."""
        return self._get(process_id).output.tail(lines)

    def logs_since(self, process_id: str, seq: int) -> list[LogLine]:
        """Lines after sequence number ``seq`` still in memory: resume a stream from a cursor."""
        return self._get(process_id).output.since(seq)

    def partial_lines(self, process_id: str) -> list[LogLines]:
        """The lines the process is redrawing (progress bars) as last shown: one partial event per stream
        at most, for a stream that starts while a bar is on screen."""
        return self._get(process_id).output.partial_lines()

    def last_log_seq(self, process_id: str) -> int:
        return self._get(process_id).output.last_seq

    def subscribe(self, *, process_id: str | None = None, maxsize: int = 1000) -> Subscription:
        """Status changes, exits and log lines as they happen (see ``engine.events``)."""
        if process_id is not None:
            self._get(process_id)
        return self.events.subscribe(process_id=process_id, maxsize=maxsize)

    def add_listener(self, listener: Listener) -> None:
        self.events.add_listener(listener)

    def manager_usage(self) -> ManagerUsage:
        """The manager's own memory, CPU, descriptors, event-loop lag and dropped log lines."""
        return self.resources.manager_usage()

    def _dropped_lines(self) -> dict[str, int]:
        sink = self._logging_sink
        more = self.options.log_drops() if self.options.log_drops is not None else {}
        return {
            "logging": sink.dropped if sink is not None else 0,
            "subscribers": self.events.dropped_lines,
            **more,
        }

    # ---- operations on one process ---------------------------------------------------------------

    async def start_process(self, process_id: str) -> None:
        process = self._get(process_id)
        self._check_not_closing(process_id)
        await process.start()
        self._ensure_watcher(process)

    async def run_process(self, process_id: str) -> Run | None:
        """One run now of a job or a one-shot task (trigger manual), following its overlap policy:
        the run begun or skipped, or None when it was queued or waits for its dependencies."""
        process = self._get(process_id)
        self._check_not_closing(process_id)
        return await process.run_now()

    def runs(self, process_id: str, limit: int | None = None) -> list[Run]:
        """The process's run history, newest first; for a process no longer in the config, the runs
        kept of it (from this manager's time, or on record). Raises ProcessNotFound for an id never
        seen."""
        process = self._processes.get(process_id)
        if process is not None:
            return process.runs.recent(limit)
        history = self._histories.get(process_id)
        if history is not None:
            return history.recent(limit)
        stored = self._stored_runs.get(process_id)
        if stored:
            return RunHistory(process_id, len(stored), stored).recent(limit)
        raise ProcessNotFound(process_id)

    async def stop_process(self, process_id: str) -> None:
        await self._get(process_id).stop()

    async def restart_process(self, process_id: str) -> None:
        process = self._get(process_id)
        self._check_not_closing(process_id)
        await process.restart("restart requested")
        self._ensure_watcher(process)

    async def signal_process(
        self, process_id: str, name: str, *, tree: bool = False, force: bool = False
    ) -> tuple[signal.Signals, int]:
        """Send signal ``name`` ("HUP", "SIGUSR1", "term") to a process's main pid, or with ``tree`` to
        every process of its tree. SIGKILL and SIGSTOP bypass the stop ladder (nothing is stopped in
        order, a stopped tree never ends): they are refused unless ``force``. Returns the signal and how
        many processes it reached. Raises SignalRefused, ProcessNotFound, ProcessNotRunning."""
        process = self._get(process_id)
        sig = parse_signal(name, force=force)
        return sig, await process.send_signal(sig, tree=tree)

    def _check_not_closing(self, process_id: str) -> None:
        if self._shutdown is not None:  # a start now would be killed without grace by the shutdown
            raise ManagerNotRunning(process_id)

    # ---- the whole set ---------------------------------------------------------------------------

    async def __aenter__(self) -> ProcessManager:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Prepare the machinery and start every registered process, in parallel."""
        if self._shutdown is not None:
            await self.close()  # a close() that was cancelled part-way finishes first
            self._shutdown = None
        if self._running:
            return
        options = self.options
        raise_open_file_limit()
        if options.state_dir is not None:
            # First: a folder another manager owns is refused before anything of this run exists.
            self._run_file = RunFile(options.state_dir, self.run_id, self.containment.record())
            previous = self._run_file.claim()
            if previous is not None:
                await clean_up_previous_cgroup(previous.get("cgroup"))
                await clean_up_previous_run(previous, self._scanner)
        try:
            self.containment.open()
        except BaseException:
            if self._run_file is not None:
                self._run_file.remove()
                self._run_file = None
            raise
        self._running = True
        # As PID 1 (a container), every orphan is ours to reap whatever the backend.
        pid1 = os.getpid() == 1 and hasattr(os, "waitid")
        if options.adopt_orphans and (set_child_subreaper() or pid1):
            self._reaper = OrphanReaper(self._is_owned)
            self._context.registry.on_reaped = self._reaper.reap
            self._reaper_watch = self.backend.on_sigchld(self._reaper.reap)
        if options.guardian:
            self._guardian = Guardian(
                self.run_id,
                on_reaped=self._context.registry.reaped,
                cgroup=self.containment.guardian_cgroup(),
            )
        if options.log_output:
            self._logging_sink = LoggingSink(self.events, emit=options.output_echo)
        if options.state_dir is not None:
            await self._open_run_store(options.state_dir / RUNS_FILE)
        self.resources.start()
        group_ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._root = asyncio.create_task(self._run_tasks(group_ready), name="processman manager")
        await group_ready
        self._spawn(self.notifier.run(), "notifications")
        for process in self._processes.values():
            self._own(process)
        await asyncio.gather(
            *(self.start_process(pid) for pid, process in self._processes.items() if process.config.autostart)
        )
        if options.watch_config and options.config_path is not None:
            self._config_watch = self._spawn(self._watch_config(options.config_path), "watch config")

    async def _run_tasks(self, ready: asyncio.Future[None]) -> None:
        """The root task: holds the task group of every process's owner and the manager's watchers
        until close() cancels it."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            ready.set_result(None)
            try:
                await asyncio.get_running_loop().create_future()  # until cancelled
            finally:
                self._tasks = None

    def _spawn(self, coroutine: Awaitable[None], name: str) -> asyncio.Task[None]:
        """A task in the manager's group whose fault is logged at once (and ends only that task)."""
        assert self._tasks is not None, "the manager runs"
        return self._tasks.create_task(_logged(coroutine, name), name=name)

    async def start_all(self) -> None:
        """Start every process that is not starting or running."""
        await asyncio.gather(
            *(
                self.start_process(process.config.id)
                for process in self._processes.values()
                if process.status not in (Status.STARTING, Status.RUNNING, Status.SCHEDULED)
            )
        )

    async def stop_all(self) -> None:
        """Stop every process tree, in parallel; returns when nothing is left."""
        await stop_in_order(self._processes.values())

    def kill_all_now(self) -> None:
        """SIGKILL to every tree at once, without waiting (a second Ctrl+C)."""
        for process in self._processes.values():
            process.kill_now()

    async def restart_all(self) -> None:
        await asyncio.gather(*(self.restart_process(process_id) for process_id in self._processes))

    async def close(self) -> None:
        """Stop everything and release the machinery. Safe to call twice; cancelled part-way, the
        shutdown goes on (no tree is left running), and the next close() waits for it to end."""
        if self._shutdown is None:
            if not self._running:
                return
            self._shutdown = asyncio.create_task(self._close(), name="processman shutdown")
        await asyncio.shield(self._shutdown)

    async def _close(self) -> None:
        if self._config_watch is not None:
            self._config_watch.cancel()
            await asyncio.gather(self._config_watch, return_exceptions=True)
            self._config_watch = None
        for task, stop in self._watchers.values():
            stop.set()
            task.cancel()
        await asyncio.gather(*(task for task, _ in self._watchers.values()), return_exceptions=True)
        self._watchers.clear()
        await self.resources.close()
        await self.stop_all()
        # A crash or give-up right before the shutdown is still told (a few seconds at most).
        await self.notifier.flush()
        if self._root is not None:
            self._root.cancel()  # the owners, now idle, and the watchers
            await asyncio.gather(self._root, return_exceptions=True)
            self._root = None
        self._owners.clear()
        await self._context.prober.aclose()
        for process in self._processes.values():
            process.close()
        if self._reaper is not None:
            if self._reaper_watch is not None:
                self._reaper_watch.cancel()
                self._reaper_watch = None
            self._reaper.reap()
        await self.containment.close()
        if self._guardian is not None:
            # Every tree is stopped (and the run cgroup emptied): nothing is left for it to find.
            await asyncio.to_thread(self._guardian.close, True)
            self._guardian = None
        if self._run_file is not None:
            self._run_file.remove()
        if self._logging_sink is not None:
            self._logging_sink.close()
        await self._close_run_store()
        self.events.close()
        self._running = False

    # ---- internals -------------------------------------------------------------------------------

    async def _open_run_store(self, path: Path) -> None:
        """Read the runs on record (in a thread) before any owner starts, and from now on write every
        run there without waiting for the disk."""
        store = self._run_store = RunStore(path)
        self._stored_runs = await asyncio.to_thread(store.open)
        for process in self._processes.values():
            self._seed_runs(process)
        self._forget_run_store = self.events.add_listener(store.listener)

    def _seed_runs(self, process: ManagedProcess) -> None:
        """A process's earlier runs, so its numbering goes on after them: those on record, or for a
        process removed and put back by a reload, those of its previous history (runs it holds
        already, from an earlier start of this manager, are not added twice)."""
        process_id = process.config.id
        known = self._histories.get(process_id)
        self._histories[process_id] = process.runs
        if known is not None and known is not process.runs:
            earlier = known.recent()
        else:
            earlier = self._stored_runs.get(process_id, [])
        newest = process.runs.recent(1)
        after = newest[0].number if newest else 0
        earlier = [run for run in earlier if run.number > after]
        if earlier:
            process.runs.seed(earlier)

    async def _close_run_store(self) -> None:
        """Write the last runs (waiting a few seconds at most) and close the database."""
        store, self._run_store = self._run_store, None
        if store is None:
            return
        if self._forget_run_store is not None:
            self._forget_run_store()
            self._forget_run_store = None
        self._stored_runs = {}
        await asyncio.to_thread(store.close)

    def _is_owned(self, pid: int) -> bool:
        return pid in self._context.registry.owned or (
            self._guardian is not None and pid == self._guardian.pid
        )

    def _on_group(self, group: int, alive: bool) -> None:
        if self._guardian is not None:
            if alive:
                self._guardian.watch_group(group)
            else:
                self._guardian.forget_group(group)
        if self._run_file is not None:
            if alive:
                self._run_file.child_started(group)
            else:
                self._run_file.child_gone(group)

    async def _watch_config(self, path: Path) -> None:
        async def on_change() -> None:
            try:
                plan = await self.reload_from_file()
            except ConfigError as exc:
                logger.error("config changed but not applied:\n%s", exc)
            else:
                logger.info("config %s reloaded: %s", path, plan.summary())

        await watch_file(path, on_change, self.options.config_poll)

    def _ensure_watcher(self, process: ManagedProcess) -> None:
        config = process.config
        if (
            not config.dev_mode
            or self._tasks is None
            or self._shutdown is not None
            or config.id in self._watchers
        ):
            return
        from processman.watch import watch_and_notify  # watchfiles: only when something is watched

        ignore = list(self.options.watch_ignore)
        if self.options.state_dir is not None:
            ignore.append(self.options.state_dir)

        async def on_change(paths: set[str]) -> None:
            shown = ", ".join(sorted(paths)[:3]) + (" ..." if len(paths) > 3 else "")
            logger.info("%s: files changed (%s); restarting", config.id, shown)
            await process.restart_if_running(f"files changed: {shown}")

        stop = asyncio.Event()
        paths = [config.cwd / path for path in config.watch_paths]
        task = self._spawn(
            watch_and_notify(paths, on_change, stop, ignore_paths=ignore, debounce=config.watch_debounce),
            f"watch {config.id}",
        )
        self._watchers[config.id] = (task, stop)


# Signals that would bypass the stop ladder: sent only when asked with force.
FORCE_ONLY = (signal.SIGKILL, signal.SIGSTOP)


def parse_signal(name: str, *, force: bool = False) -> signal.Signals:
    """``"HUP"``, ``"sighup"``, ``"SIGHUP"`` -> SIGHUP. Raises SignalRefused for an unknown name, and
    for SIGKILL or SIGSTOP without ``force``."""
    wanted = name.strip().upper()
    wanted = wanted if wanted.startswith("SIG") else "SIG" + wanted
    try:
        sig = signal.Signals[wanted]
    except KeyError:
        raise SignalRefused(
            f"unknown signal {name!r}: expected a name like HUP, TERM, USR1 or SIGQUIT"
        ) from None
    if sig in FORCE_ONLY and not force:
        raise SignalRefused(
            f"{sig.name} bypasses the stop ladder (use stop, or send it with force: "
            f'"force": true, or --force)'
        )
    return sig


async def _owner(process: ManagedProcess) -> None:
    """Runs a process's owner; if the owner itself ever fails, the tree is killed, the process shown
    failed with the error, and a new owner takes over: one process's fault never ends the others."""
    while True:
        try:
            await process.run()
            return
        except Exception as exc:
            logger.exception("%s: the process's owner failed; a new one takes over", process.config.id)
            process.has_owner = True
            process._kill_now()
            process.fail(f"internal error in processman, process stopped: {exc!r}")


async def _logged(coroutine: Awaitable[None], name: str) -> None:
    try:
        await coroutine
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("%s stopped by an internal error", name)


__all__ = ["Event", "ManagerOptions", "ProcessManager"]
