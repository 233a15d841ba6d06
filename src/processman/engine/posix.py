"""Operating-system plumbing: process trees, the stop ladder, the subreaper and the guardian.

How a process tree is found: every child starts in its own session (so its own process group) with
``PROCESSMAN_TAG=<run id>:<process id>`` in its environment, which every descendant inherits. A tree is
the child's process group plus every process that carries its tag, so a double-forked daemon that
called ``setsid`` is still found. Waiting and the facts (group, tag) go through the process backend
(:mod:`processman.engine.backend`): pidfds and ``/proc`` on Linux, kqueue or ``SIGCHLD`` and psutil
elsewhere.

How nothing outlives a manager killed with SIGKILL: a tiny guardian process, started in its own session,
holds a pipe from the manager. When the pipe reaches end of file (the manager is gone, however it
died) the guardian terminates every process that carries the run's tag, then kills what is left. The
manager watches its guardian in turn: one that dies is replaced at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import os.path
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable

from processman.engine import backend
from processman.engine.libc import libc
from processman.environment import TAG_VARIABLE

logger = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36


def set_child_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process instead of init (the linux backend only)."""
    if not backend.current().subreaper:
        return False
    return bool(libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def raise_open_file_limit() -> None:
    """Each child needs three descriptors (two pipes and a pidfd): lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard)
            )


class Snapshot:
    """Live (non-zombie) processes on the machine, by tag and by process group."""

    def __init__(self) -> None:
        self.by_tag: dict[str, list[int]] = {}
        self.by_group: dict[int, list[int]] = {}


class TagScanner:
    """Finds the tagged processes on the machine.

    ``fresh()`` returns a snapshot taken after the call; every caller that asks before that scan runs
    shares it, so stopping 500 processes at once reads /proc a handful of times, not 500 times.
    """

    def __init__(self) -> None:
        self._own_pid = os.getpid()
        self._pending: asyncio.Future[Snapshot] | None = None
        self._facts = backend.current().facts

    def scan(self) -> Snapshot:
        snapshot = Snapshot()
        seen = {self._own_pid}
        facts = self._facts
        # A daemon forked while the scan runs, by a parent that exits before it is read, is in no
        # listing read so far: list the processes again and read the newcomers (a few passes at most).
        for _pass in range(3):
            pids = [pid for pid in facts.pids() if pid not in seen]
            if not pids:
                break
            seen.update(pids)
            for pid in pids:
                stat = facts.stat(pid)
                if stat is None:  # gone, or a zombie
                    continue
                snapshot.by_group.setdefault(stat.group, []).append(pid)
                tag = facts.tag(pid)
                if tag is not None:
                    snapshot.by_tag.setdefault(tag, []).append(pid)
        return snapshot

    async def fresh(self) -> Snapshot:
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            # Runs after the callbacks already queued: callers of this same moment join this scan.
            loop.call_soon(self._run_pending)
        return await asyncio.shield(self._pending)

    def _run_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None or pending.done():
            return
        try:
            pending.set_result(self.scan())
        except OSError as exc:
            pending.set_exception(exc)

    async def tree(self, tag: str, group: int | None) -> list[int]:
        """Every live process that carries ``tag`` or belongs to process group ``group``."""
        snapshot = await self.fresh()
        members = set(snapshot.by_tag.get(tag, ()))
        if group is not None:
            members.update(snapshot.by_group.get(group, ()))
        return sorted(members)

    def tagged_with_prefix(self, prefix: str) -> list[int]:
        snapshot = self.scan()
        return [pid for tag, pids in snapshot.by_tag.items() if tag.startswith(prefix) for pid in pids]


def send_signal(pids: Iterable[int], group: int | None, sig: signal.Signals) -> None:
    """``sig`` to process group ``group`` and to each of ``pids`` outside it: once each, since a second
    signal may reach a process whose handler already runs, and Python restores the default action
    (death) while it exits."""
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group is None or os.getpgid(pid) != group:
                os.kill(pid, sig)


async def wait_for_exit(pids: Iterable[int], timeout: float | None) -> set[int]:
    """Wait until every pid has exited (or become a zombie), at most ``timeout`` seconds (None: no
    limit). Returns the pids still alive. Through the backend: pidfds on Linux, nothing polls."""
    return await backend.current().wait_for_exit(pids, timeout)


async def terminate_tree(
    group: int | None,
    tag: str,
    scanner: TagScanner,
    timeout: float,
    *,
    on_escalate: Callable[[int], None] | None = None,
    sig: signal.Signals = signal.SIGTERM,
    extended_until: Callable[[], float] = lambda: 0.0,
) -> None:
    """The stop ladder: ``sig`` (SIGTERM) to the group and the tagged processes, wait ``timeout``,
    SIGKILL, and repeat until nothing of the tree is left (a tree may fork while it is being stopped).

    ``extended_until``: a ``time.monotonic()`` before which the process asked not to be killed (sd_notify
    ``EXTEND_TIMEOUT_USEC=`` while it stops); the grace lasts until then, however often it asks."""
    first = True
    for _round in range(50):
        targets = await scanner.tree(tag, group)
        if not targets:
            return
        send_signal(targets, group, sig)
        survivors = await wait_for_exit(targets, timeout if first else 2.0)
        while first and survivors and (left := extended_until() - time.monotonic()) > 0:
            survivors = await wait_for_exit(survivors, left)
        if first and survivors and on_escalate is not None:
            on_escalate(len(survivors))
        first = False
        # Survivors, and anything forked during the grace period, get SIGKILL in the next rounds.
        sig = signal.SIGKILL
    logger.error("process tree %s is still alive after repeated SIGKILL", tag)


def kill_tree_now(group: int | None, tag: str, scanner: TagScanner) -> None:
    """SIGKILL to the group and every tagged process at once, without waiting: the end of a stop
    ladder that was cancelled part-way (a stop that is not finished must not leave the tree alive)."""
    snapshot = scanner.scan()
    members = set(snapshot.by_tag.get(tag, ()))
    if group is not None:
        members.update(snapshot.by_group.get(group, ()))
    send_signal(members, group, signal.SIGKILL)


# The guardian waits as a tiny shell (a few hundred KB, where an idle Python takes 4 MB): it appends
# each "+G" and "-G" the manager sends to its record, forgets the record on "!" (the manager then sends
# the live groups again: the record stays bounded), exits on "=" (the manager stopped everything), and
# at end of file (the manager is gone) becomes the Python cleanup below, which replays the record. It
# only appends: taking a group out of a list in the shell costs time in proportion to the list, and
# 1000 children stopping kept dash busy for seconds.
GUARDIAN_SHELL = r"""
trap '' INT TERM HUP QUIT
g=
while IFS= read -r w; do
  case $w in
    [+-]*) g="$g $w" ;;
    !) g= ;;
    =) exit 0 ;;
  esac
done
exec "$1" -I -S -c "$2" "$3" "$4" "$5" "$6" "$7" $g
"""
# Its name in ``ps`` and /proc/PID/cmdline, until it becomes the cleanup.
GUARDIAN_NAME = "processman-guardian"

# argv: the tag variable, the run id, the grace in seconds, the run cgroup ("" without), the folder
# psutil is installed in ("" with /proc: the portable backend's facts), then the record of groups as
# the shell kept it: "+GROUP" and "-GROUP" in the order they were told, replayed here.
GUARDIAN_SOURCE = r"""
import os, signal, sys, time
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(s, signal.SIG_IGN)
mark = (sys.argv[1] + "=" + sys.argv[2] + ":").encode()
groups = set()
for w in sys.argv[6:]:
    (groups.add if w[0] == "+" else groups.discard)(int(w[1:]))
cg = sys.argv[4]
lib = sys.argv[5]
if lib:  # the portable backend: psutil, from the folder it was installed in
    sys.path.insert(0, lib)
    import psutil
    prefix = sys.argv[2] + ":"
    def tagged():
        found = []
        for p in psutil.process_iter():
            try:
                if p.environ().get(sys.argv[1], "").startswith(prefix) and p.status() != "zombie":
                    found.append(p.pid)
            except Exception:
                continue
        return found
else:
    def tagged():
        found = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open("/proc/" + name + "/environ", "rb") as f:
                        env = f.read()
                except OSError:
                    continue
                if env.startswith(mark) or (b"\0" + mark) in env:
                    found.append(int(name))
        return found
def in_cgroup():
    found = []
    for d, _, _ in os.walk(cg):
        try:
            found += [int(w) for w in open(d + "/cgroup.procs").read().split()]
        except (OSError, ValueError):
            pass
    return found
def hit(sig):
    for pid in in_cgroup() if cg else ():
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    for g in groups:
        try:
            os.killpg(g, sig)
        except OSError:
            pass
    pids = tagged()
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    return pids + (in_cgroup() if cg else [])
if hit(signal.SIGTERM):
    deadline = time.monotonic() + float(sys.argv[3])
    while (tagged() or (cg and in_cgroup())) and time.monotonic() < deadline:
        time.sleep(0.02)
for _ in range(50):
    if cg:
        try:
            with open(cg + "/cgroup.kill", "w") as f:
                f.write("1")
        except OSError:
            pass
    if not hit(signal.SIGKILL):
        break
    time.sleep(0.02)
for d, _, _ in os.walk(cg, topdown=False) if cg else ():
    try:
        os.rmdir(d)
    except OSError:
        pass
"""


class Guardian:
    """A separate tiny process that cleans up the run's processes if the manager dies abruptly.

    Created inside a running event loop, it is watched there (through the backend: a pidfd, kqueue or
    SIGCHLD; no polling): a guardian that
    dies is logged as an error and replaced at once by one that watches the same process groups, so a
    later SIGKILL of the manager still leaves nothing behind. One that keeps dying at start is given up
    after a few tries.
    """

    QUICK_DEATH = 1.0  # seconds: a guardian that dies sooner than this after its start died at start
    MAX_QUICK_DEATHS = 3

    def __init__(
        self,
        run_id: str,
        grace: float = 0.5,
        on_reaped: Callable[[], None] | None = None,
        cgroup: str | None = None,
    ) -> None:
        self._run_id = run_id
        self._grace = grace
        # With cgroups, the guardian also stops every process of the run cgroup, then cgroup.kill.
        self._cgroup = cgroup
        # Called once a dead guardian is reaped, as the owners of children do: an OrphanReaper leaves
        # the other zombies alone while the guardian's, which is not its to reap, comes first.
        self._on_reaped = on_reaped
        self._groups: set[int] = set()
        self._closing = False
        self._quick_deaths = 0
        self._watch: backend.Watch | None = None
        self._backend = backend.current()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # no loop to watch it from: it still does its job while it lives
            self._loop = None
        self._start()

    def __repr__(self) -> str:
        return f"<Guardian pid={self.pid} groups={len(self._groups)}>"

    def _start(self) -> None:
        argv = [
            "/bin/sh",
            "-c",
            GUARDIAN_SHELL,
            GUARDIAN_NAME,
            sys.executable,
            GUARDIAN_SOURCE,
            TAG_VARIABLE,
            self._run_id,
            str(self._grace),
            self._cgroup or "",
            # No /proc to read: psutil, which -S leaves out, from where it is installed.
            _psutil_folder() if self._backend.facts.name == "psutil" else "",
        ]
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        self.pid = self._process.pid
        self._started = time.monotonic()
        self.recorded = len(self._groups)  # lines in the shell's record (see GUARDIAN_SHELL)
        if self._groups:
            self._send("".join(f"+{group}\n" for group in sorted(self._groups)))
        if self._loop is not None:
            try:
                self._watch = self._backend.watch(self.pid, self._on_exit, child=True)
            except OSError as exc:
                logger.warning("cannot watch the guardian (pid %d): %s", self.pid, exc)

    def _on_exit(self) -> None:
        if self._closing:
            self._unwatch()
            return
        status = self._process.poll()  # reaps it if it has exited
        if status is None:
            return  # another child's SIGCHLD
        self._unwatch()
        if self._on_reaped is not None:
            self._on_reaped()
        how = f"killed by {_signal_name(-status)}" if status < 0 else f"exit code {status}"
        lived = time.monotonic() - self._started
        self._quick_deaths = self._quick_deaths + 1 if lived < self.QUICK_DEATH else 0
        if self._quick_deaths >= self.MAX_QUICK_DEATHS:
            logger.error(
                "the guardian (pid %d) died (%s), %d times in a row at start: giving up; if processman is "
                "killed with SIGKILL now, its processes keep running until its next start",
                self.pid,
                how,
                self._quick_deaths,
            )
            return
        old = self.pid
        self._close_stdin()
        try:
            self._start()
        except OSError as exc:
            logger.error(
                "the guardian (pid %d) died (%s) and a new one cannot start (%s); if processman is "
                "killed with SIGKILL now, its processes keep running until its next start",
                old,
                how,
                exc,
            )
            return
        logger.error(
            "the guardian (pid %d) died (%s); started a new one (pid %d) watching %d process group(s)",
            old,
            how,
            self.pid,
            len(self._groups),
        )

    def _unwatch(self) -> None:
        """Stop watching (on the loop's thread); safe to call twice."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()

    @staticmethod
    def record_bound(groups: int) -> int:
        """The most lines the shell's record holds with ``groups`` live groups: beyond it, the record is
        replaced by the live groups."""
        return 2 * groups + 64

    def watch_group(self, group: int) -> None:
        self._tell(group, True)

    def forget_group(self, group: int) -> None:
        self._tell(group, False)

    def _tell(self, group: int, alive: bool) -> None:
        if self._cgroup:  # the run cgroup holds every process of the run, group or not
            return
        if alive:
            self._groups.add(group)
        else:
            self._groups.discard(group)
        self.recorded += 1
        if self.recorded > self.record_bound(len(self._groups)):
            self.recorded = len(self._groups)
            self._send("!\n" + "".join(f"+{live}\n" for live in sorted(self._groups)))
        else:
            self._send(f"{'+' if alive else '-'}{group}\n")

    def _send(self, text: str) -> None:
        stdin = self._process.stdin
        if stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):  # a dead guardian: its successor gets every group
            stdin.write(text.encode())
            stdin.flush()

    def _close_stdin(self) -> None:
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()

    def close(self, clean: bool = False) -> None:
        """Called after a stop (from any thread). ``clean``: the manager stopped every process, so the
        guardian exits without looking (a look at /proc costs milliseconds per hundred processes);
        otherwise it cleans up what is left of the run, as after a SIGKILL of the manager."""
        self._closing = True
        loop = self._loop
        if loop is not None and self._watch is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                self._unwatch()
            else:
                with contextlib.suppress(RuntimeError):  # a closed loop: nothing watches anymore
                    loop.call_soon_threadsafe(self._unwatch)
        if clean:
            self._send("=\n")
        self._close_stdin()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class OrphanReaper:
    """Reaps descendants re-parented to this process (it is a subreaper) without touching the exit
    status of the processes the engine waits for itself."""

    def __init__(self, is_owned: Callable[[int], bool]) -> None:
        self._is_owned = is_owned

    def reap(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            if self._is_owned(info.si_pid):
                return  # its owner reaps it, then calls reap() again for the rest
            with contextlib.suppress(ChildProcessError):
                os.waitpid(info.si_pid, os.WNOHANG)


def _psutil_folder() -> str:
    """Where psutil is installed (the portable backend has already imported it)."""
    import psutil

    return os.path.dirname(os.path.dirname(psutil.__file__))
