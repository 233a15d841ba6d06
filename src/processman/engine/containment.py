"""Containment: how the processes of a managed process are kept together, found and stopped.

A manager chooses one containment when it is made, and every process uses it:

``cgroup``
    Linux cgroup v2 (:mod:`processman.engine.cgroups`): each process instance runs in a cgroup of its
    own below the run's cgroup, entered before the child runs anything. Its members are its tree, and
    nothing a process does can take it out: a new title or environment, ``setsid``, a double fork, a
    non-dumpable flag. ``cgroup.kill`` kills a tree at once; ``populated 0`` says it is gone.
``tags``
    The fallback: a process group per child, ``PROCESSMAN_TAG`` in every descendant's environment (read
    from ``/proc/PID/environ``) and, in ``serve``, the child subreaper. A descendant that leaves the
    group (``setsid``) *and* loses its tag (a rewritten environment: ``setproctitle``, redis's process
    title, ``env -u``) is out of reach; so is one whose environment cannot be read (non-dumpable, under
    a manager that is not root).
``portable``
    The portable backend's (:mod:`processman.engine.portable`): process groups and ``PROCESSMAN_TAG``
    as with tags, the environments read through psutil, and no subreaper, so a daemon that leaves its
    group is found by its tag alone.

Which one: ``ManagerOptions(containment=...)`` or the environment variable ``PROCESSMAN_CONTAINMENT``
(``auto``, ``cgroup``, ``tags``). ``auto`` takes cgroups where the manager may create them (root, a
systemd service with ``Delegate=yes``, a subtree chowned to its user), else tags. With the portable
backend, ``auto`` and ``tags`` are ``portable``, and ``cgroup`` is refused with one sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from signal import Signals
from typing import Any, Protocol

from processman.engine import backend, cgroups, inotify
from processman.engine.posix import TagScanner, kill_tree_now, send_signal, terminate_tree, wait_for_exit
from processman.errors import ProcessmanError

logger = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "PROCESSMAN_CONTAINMENT"
CHOICES = ("auto", "cgroup", "tags")
# After SIGKILL, how long to wait for a tree to go before killing again.
KILL_WAIT = 2.0


def _not_extended() -> float:
    return 0.0


class ContainmentError(ProcessmanError):
    """The containment asked for cannot be used here."""


# How long a child just spawned may take to enter its cgroup (its wrapper's first act: about 1 ms).
ENTER_WAIT = 2.0


class Spawned(Protocol):
    """What a tree needs to know of the child it started."""

    pid: int

    @property
    def alive(self) -> bool: ...


class ProcessTree(Protocol):
    """The processes of one managed process instance."""

    def prepare_spawn(self, argv: Sequence[str]) -> list[str]:
        """The command line that starts ``argv`` inside this tree (``argv`` itself when nothing is
        needed); the tree's place is made ready here."""
        ...

    def spawned(self, child: Spawned) -> None:
        """The tree's main child started."""
        ...

    def accounting(self) -> Path | None:
        """The cgroup whose ``cpu.stat`` (and ``memory.current``, with the memory controller) account
        for the whole tree, processes gone since included; None: count the members in /proc."""
        ...

    async def members(self) -> list[int]:
        """Every live process of the tree."""
        ...

    def listed(self) -> list[int]:
        """The members the containment lists without scanning /proc (a cgroup: ``cgroup.procs``);
        [] when only a scan finds them (tags). Cheap: the resource sampler calls it every sample."""
        ...

    async def signal(self, sig: Signals) -> int:
        """Send ``sig`` to every member; returns how many were sent it."""
        ...

    async def terminate(
        self,
        sig: Signals,
        timeout: float,
        on_escalate: Callable[[int], None] | None = None,
        extended_until: Callable[[], float] = _not_extended,
    ) -> None:
        """The stop ladder: ``sig`` to every member, wait ``timeout`` (or until ``extended_until()``, a
        ``time.monotonic()`` the process asked for), then SIGKILL until nothing of the tree is left.
        ``on_escalate(survivors)`` is told before the SIGKILL."""
        ...

    def kill_now(self) -> None:
        """SIGKILL to the whole tree without waiting (a stop cancelled part-way)."""
        ...

    async def sweep(self, sig: Signals, timeout: float) -> None:
        """The stop ladder for what is left of a run that is over (tags: by tag only, since the
        group id of a child that was reaped may be someone else's now)."""
        ...

    async def wait_empty(self, timeout: float | None) -> bool:
        """Wait until no process of the tree is left, at most ``timeout`` (None: no limit); True when
        none is."""
        ...

    def cleanup(self) -> None:
        """The tree is empty: release what holds its place."""
        ...


class Containment(Protocol):
    """One manager's containment (see the module docstring)."""

    name: str  # "cgroup" or "tags", as /api/health, list and serve show it
    where: str  # what it uses, for people: "cgroup v2 /sys/fs/cgroup/unified/processman-ab12"

    def tree(self, key: str, tag: str) -> ProcessTree: ...

    def open(self) -> None:
        """Make the run's place (the run cgroup); at the manager's start."""
        ...

    def record(self) -> dict[str, Any]:
        """What the run file keeps so that the next start can clean up after a killed manager."""
        ...

    def guardian_cgroup(self) -> str | None:
        """The run cgroup the guardian kills when the manager dies (None: the guardian uses tags)."""
        ...

    async def close(self) -> None:
        """Every tree is stopped: remove the run's place."""
        ...


# ---- tags, process groups and the subreaper ---------------------------------------------------------


class TagTree:
    """A child's process group plus every process that carries its tag."""

    def __init__(self, tag: str, scanner: TagScanner) -> None:
        self._tag = tag
        self._scanner = scanner
        self._child: Spawned | None = None

    def prepare_spawn(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def spawned(self, child: Spawned) -> None:
        self._child = child

    def accounting(self) -> Path | None:
        return None

    @property
    def _group(self) -> int | None:
        return self._child.pid if self._child is not None else None

    async def members(self) -> list[int]:
        return await self._scanner.tree(self._tag, self._group)

    def listed(self) -> list[int]:
        return []

    async def signal(self, sig: Signals) -> int:
        targets = await self.members()
        send_signal(targets, self._group, sig)
        return len(targets)

    async def terminate(
        self,
        sig: Signals,
        timeout: float,
        on_escalate: Callable[[int], None] | None = None,
        extended_until: Callable[[], float] = _not_extended,
    ) -> None:
        await terminate_tree(
            self._group,
            self._tag,
            self._scanner,
            timeout,
            on_escalate=on_escalate,
            sig=sig,
            extended_until=extended_until,
        )

    def kill_now(self) -> None:
        child = self._child
        kill_tree_now(child.pid if child is not None and child.alive else None, self._tag, self._scanner)

    async def sweep(self, sig: Signals, timeout: float) -> None:
        await terminate_tree(None, self._tag, self._scanner, timeout, sig=sig)

    async def wait_empty(self, timeout: float | None) -> bool:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while members := await self.members():
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await wait_for_exit(members, left)  # then look again: a member may have forked
        return True

    def cleanup(self) -> None:
        pass


class TagContainment:
    name = "tags"

    def __init__(self, scanner: TagScanner, reason: str = "") -> None:
        self._scanner = scanner
        self.where = "process groups and PROCESSMAN_TAG" + (f" (no cgroups: {reason})" if reason else "")

    def tree(self, key: str, tag: str) -> ProcessTree:
        return TagTree(tag, self._scanner)

    def open(self) -> None:
        pass

    def record(self) -> dict[str, Any]:
        return {}

    def guardian_cgroup(self) -> str | None:
        return None

    async def close(self) -> None:
        pass


# ---- cgroup v2 ----------------------------------------------------------------------------------------


class PortableContainment(TagContainment):
    """Process groups and the tag, without cgroups or a subreaper (the portable backend)."""

    name = "portable"

    def __init__(self, scanner: TagScanner, reason: str) -> None:
        super().__init__(scanner)
        self.where = f"process groups and PROCESSMAN_TAG, no subreaper (portable backend: {reason})"


class CgroupTree:
    """The members of one process cgroup, and the main child until it is in it: right after the spawn,
    the wrapper may not have entered the cgroup yet (it has forked nothing then)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._child: Spawned | None = None
        self._entered = False  # the child was seen in the cgroup (a process cannot leave it)

    def __repr__(self) -> str:
        return f"<CgroupTree {self.path}>"

    def prepare_spawn(self, argv: Sequence[str]) -> list[str]:
        self.path.mkdir(exist_ok=True)
        return cgroups.wrap(self.path, argv)

    def spawned(self, child: Spawned) -> None:
        self._child = child
        self._entered = False

    def accounting(self) -> Path | None:
        return self.path

    def _outside(self, child: Spawned) -> bool:
        """The child runs but is not in its cgroup (yet)."""
        if self._entered or not child.alive:
            return False
        self._entered = child.pid in cgroups.members(self.path)
        return not self._entered

    def _signal_child(self, sig: Signals) -> int:
        """The child, if it has not entered the cgroup yet (once in, it gets the signal as a member:
        twice would kill a process whose handler is running with the default action)."""
        child = self._child
        if child is None or not self._outside(child):
            return 0
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child.pid, sig)
        return 1

    async def members(self) -> list[int]:
        return cgroups.members(self.path)

    def listed(self) -> list[int]:
        return cgroups.members(self.path)

    async def signal(self, sig: Signals) -> int:
        return self._signal_child(sig) + cgroups.signal_members(self.path, sig)

    async def terminate(
        self,
        sig: Signals,
        timeout: float,
        on_escalate: Callable[[int], None] | None = None,
        extended_until: Callable[[], float] = _not_extended,
    ) -> None:
        child = self._child
        if child is not None and self._outside(child):
            # Just spawned: entering the cgroup is its wrapper's first act. Let it, so the ladder finds
            # it there (a signal the wrapper ignores would leave it to enter, and exec, unseen).
            entered = lambda: not self._outside(child)  # noqa: E731
            with contextlib.suppress(FileNotFoundError):  # the cgroup is gone: nothing to enter
                await inotify.wait_until(self.path / "cgroup.events", inotify.IN_MODIFY, entered, ENTER_WAIT)
            if self._outside(child):  # it never entered: the ladder for it alone
                await _stop_alone(child.pid, sig, timeout)
        if not cgroups.populated(self.path):
            return
        await self.signal(sig)
        if await cgroups.wait_empty(self.path, timeout):
            return
        while (left := extended_until() - time.monotonic()) > 0:
            if await cgroups.wait_empty(self.path, left):
                return
        if on_escalate is not None:
            on_escalate(len(cgroups.members(self.path)))
        for _round in range(10):
            self.kill_now()
            if await cgroups.wait_empty(self.path, KILL_WAIT):
                return
        logger.error("cgroup %s still has processes after repeated SIGKILL", self.path)

    def kill_now(self) -> None:
        self._signal_child(Signals.SIGKILL)
        cgroups.kill(self.path)

    async def sweep(self, sig: Signals, timeout: float) -> None:
        await self.terminate(sig, timeout)
        self.cleanup()

    async def wait_empty(self, timeout: float | None) -> bool:
        return await cgroups.wait_empty(self.path, timeout)

    def cleanup(self) -> None:
        cgroups.remove(self.path)


async def _stop_alone(pid: int, sig: Signals, timeout: float) -> None:
    """The stop ladder for one process outside any cgroup: ``sig``, ``timeout``, SIGKILL."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
    if await wait_for_exit([pid], timeout):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, Signals.SIGKILL)
        await wait_for_exit([pid], KILL_WAIT)


class CgroupContainment:
    name = "cgroup"

    def __init__(self, run: cgroups.RunCgroup) -> None:
        self._run = run
        self.where = f"cgroup v2 {run.path}"

    @property
    def path(self) -> Path:
        return self._run.path

    def tree(self, key: str, tag: str) -> ProcessTree:
        return CgroupTree(self._run.process(key))

    def open(self) -> None:
        try:
            self._run.create()
        except OSError as exc:
            raise ContainmentError(
                f"cannot create cgroup {self._run.path}: {exc.strerror or exc} "
                f"(set {ENVIRONMENT_VARIABLE}=tags to run without cgroups)"
            ) from exc

    def record(self) -> dict[str, Any]:
        return {"cgroup": str(self._run.path)}

    def guardian_cgroup(self) -> str | None:
        return str(self._run.path)

    async def close(self) -> None:
        if cgroups.populated(self._run.path):
            cgroups.kill(self._run.path)
            await cgroups.wait_empty(self._run.path, KILL_WAIT)
        self._run.close()


def choose(
    run_id: str, scanner: TagScanner, wanted: str | None, environ: Mapping[str, str] = os.environ
) -> Containment:
    """The containment of a manager: ``wanted`` (None: ``PROCESSMAN_CONTAINMENT``, else ``auto``).
    Raises ContainmentError when cgroups are asked for by name and cannot be used."""
    choice = (wanted or environ.get(ENVIRONMENT_VARIABLE) or "auto").strip().lower()
    if choice not in CHOICES:
        raise ContainmentError(f"containment: expected one of {', '.join(CHOICES)}, got {choice!r}")
    chosen = backend.current()
    if chosen.name == "portable":
        if choice == "cgroup":
            raise ContainmentError(
                f"cgroup containment was asked for but the {chosen.name} backend has no cgroups "
                f"({chosen.reason}); unset {ENVIRONMENT_VARIABLE} or set it to tags"
            )
        return PortableContainment(scanner, chosen.reason)
    if choice == "tags":
        return TagContainment(scanner, "tags were asked for")
    try:
        return CgroupContainment(cgroups.RunCgroup.probe(run_id))
    except cgroups.CgroupUnavailable as exc:
        if choice == "cgroup":
            raise ContainmentError(f"cgroup containment was asked for but cannot be used: {exc}") from exc
        logger.debug("cgroups cannot be used: %s", exc)
        return TagContainment(scanner, str(exc))


async def clean_up_previous_cgroup(recorded: object) -> int:
    """Kill and remove the run cgroup a previous (killed) run left. Returns how many processes were
    in it. Only a ``processman-*`` cgroup inside the cgroup2 mount is touched."""
    if not isinstance(recorded, str) or not recorded:
        return 0
    path = Path(recorded)
    mount = cgroups.find_mount()
    if mount is None or not path.name.startswith(cgroups.RUN_PREFIX) or not path.is_relative_to(mount[0]):
        return 0
    found = len(cgroups.members(path))
    if found:
        logger.warning("cleaning up %d process(es) left behind by a previous run in %s", found, path)
        cgroups.kill(path)
        await cgroups.wait_empty(path, KILL_WAIT * 2)
    if not cgroups.remove(path):
        logger.warning("cannot remove cgroup %s left by a previous run", path)
    return found
