"""Linux cgroup v2: one cgroup for the run, one per managed process below it.

A process in a cgroup cannot leave it by any means of its own: not by a new process title, a new
environment, ``setsid``, a double fork or ``prctl(PR_SET_DUMPABLE, 0)``. So the members of a process
cgroup (``cgroup.procs``) are its tree, whatever the tree does to hide.

Where the cgroups live: below the manager's own cgroup (the ``0::`` line of ``/proc/self/cgroup``), in
the cgroup2 mount found in ``/proc/self/mountinfo`` (hybrid hosts mount it at
``/sys/fs/cgroup/unified``). So a manager run as a systemd service with ``Delegate=yes``, or in any
subtree chowned to its user, works unprivileged::

    <own cgroup>/processman-<run id>/          the run cgroup
    <own cgroup>/processman-<run id>/web/      one per process instance ("web:0" becomes "web-0")

v2 allows no processes in a cgroup that hands controllers to its children (the no-internal-processes
rule). processman enables no controller itself, so the run cgroup and the manager's own cgroup only
ever need to hold what they hold: the manager stays in its cgroup, the run cgroup holds no process,
process cgroups hold the trees. The manager's own cgroup cannot have controllers in its
``cgroup.subtree_control`` while the manager is in it (the kernel refuses that), except the root
cgroup, to which the rule does not apply; so there is never a reason to move the manager. Controllers
already enabled for the run cgroup (memory on a pure v2 host, say) are passed on to the process
cgroups, which hold processes only in leaves, and give each tree its own ``memory.current``.

A child enters its cgroup *before* it runs anything: it is started through a tiny ``/bin/sh`` wrapper
that writes its own pid into ``cgroup.procs`` and then ``exec``\\ s the real command (same pid). Python's
``subprocess`` has no ``clone3(CLONE_INTO_CGROUP)``, and a ``preexec_fn`` is unsafe in a program with
threads; the wrapper costs about 0.7 ms per spawn (a ``python -I -S`` wrapper costs 9 ms).

Stopped means ``cgroup.events`` says ``populated 0``; the file raises an inotify modify event on every
change, so waiting for it is an event on the event loop, never a poll. Zombies do not count: an exited
process leaves its cgroup before it is reaped.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
from collections.abc import Sequence
from pathlib import Path

from processman.engine import inotify

logger = logging.getLogger(__name__)

RUN_PREFIX = "processman-"
WRAPPER = (
    '{ echo $$ > "$0/cgroup.procs"; } 2>/dev/null'
    ' || { echo "processman: cannot enter cgroup $0" >&2; exit 126; }; exec "$@"'
)

_ESCAPE = re.compile(r"\\([0-7]{3})")


class CgroupUnavailable(Exception):
    """Cgroups cannot be used here; the message says why (for the start-up line and the logs)."""


def find_mount(mountinfo: str = "/proc/self/mountinfo") -> tuple[Path, str] | None:
    """The cgroup2 mount point and the cgroup path at its root ("/" unless it is a bind of a subtree)."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as file:
            lines = file.readlines()
    except OSError:
        return None
    for line in lines:
        before, _, after = line.partition(" - ")
        fields = before.split()
        if len(fields) >= 5 and after.split()[:1] == ["cgroup2"]:
            return Path(_unescape(fields[4])), _unescape(fields[3])
    return None


def _unescape(text: str) -> str:
    # mountinfo writes a space as \040, a tab as \011, a backslash as \134.
    return _ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), text)


def own_cgroup(pid: int | str = "self") -> str | None:
    """The v2 cgroup of ``pid``, from the ``0::`` line of /proc/PID/cgroup."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as file:
            for line in file:
                if line.startswith("0::"):
                    return line[3:].rstrip("\n")
    except OSError:
        pass
    return None


def own_cgroup_path() -> Path:
    """The directory of the manager's own cgroup. Raises CgroupUnavailable."""
    mount = find_mount()
    if mount is None:
        raise CgroupUnavailable("no cgroup2 file system is mounted")
    mount_point, mount_root = mount
    own = own_cgroup()
    if own is None:
        raise CgroupUnavailable("this process is in no cgroup v2 (no 0:: line in /proc/self/cgroup)")
    if own.endswith(" (deleted)"):
        raise CgroupUnavailable(f"this process's cgroup {own} was removed")
    relative = os.path.relpath(own, mount_root)
    if relative.startswith(".."):
        raise CgroupUnavailable(f"this process's cgroup {own} is outside the cgroup2 mount at {mount_point}")
    path = mount_point if relative == "." else mount_point / relative
    if not (path / "cgroup.procs").exists():
        raise CgroupUnavailable(f"{path} is not a cgroup")
    return path


def delegated(path: Path) -> str | None:
    """Why this process may not create cgroups below ``path`` and move processes into them (None: it
    may). Moving a process needs write access to the ``cgroup.procs`` of the common ancestor, here
    ``path`` itself; creating needs write access to the directory (as ``Delegate=yes`` grants)."""
    for target in (path, path / "cgroup.procs"):
        if not os.access(target, os.W_OK):
            return f"{target} is not writable by uid {os.geteuid()} (not root and not delegated)"
    return None


def process_cgroup_name(key: str) -> str:
    """A cgroup name for a process id, one for each id: ids are [A-Za-z0-9._-] plus ":n" for instances,
    so ":" becomes "@", which no id holds ("web:0" and "web-0" stay apart), and "p-" keeps a name off
    the kernel's own files ("cpu.stat" is a process's cgroup "p-cpu.stat")."""
    return "p-" + key.replace(":", "@")


def wrap(path: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` started so that it enters cgroup ``path`` before it runs (the same pid, by exec)."""
    return ["/bin/sh", "-c", WRAPPER, str(path), *argv]


def members(path: Path) -> list[int]:
    """The processes in cgroup ``path`` and below it (a tree may create cgroups of its own when it is
    delegated, like a nested manager)."""
    found: list[int] = []
    _collect(os.fspath(path), found)
    return found


def _collect(directory: str, found: list[int]) -> None:
    # Called for every tree at every stop and sample: plain descriptors, not file objects or os.walk
    # (their fstat, lseek and generator cost more than the read itself with 1000 processes).
    try:
        found.extend(int(word) for word in _read(directory + "/cgroup.procs").split())
        with os.scandir(directory) as entries:
            below = [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
    except (OSError, ValueError):
        return
    for subdirectory in below:
        _collect(subdirectory, found)


def _read(file: str) -> bytes:
    descriptor = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(descriptor, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)


def populated(path: Path) -> bool:
    """Whether any live process is in ``path`` or below it (a removed cgroup is not)."""
    try:
        events = _read(os.path.join(path, "cgroup.events"))
    except OSError:  # removed, or never a cgroup
        return False
    return b"populated 1" in events


def signal_members(path: Path, sig: signal.Signals) -> int:
    """Send ``sig`` to every member; read again once for what forked meanwhile. Returns how many."""
    sent: set[int] = set()
    for _pass in range(2):
        new = [pid for pid in members(path) if pid not in sent]
        for pid in new:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        sent.update(new)
        if not new:
            break
    return len(sent)


def kill(path: Path) -> None:
    """SIGKILL to every process of the cgroup and its descendants at once (``cgroup.kill``, Linux 5.14;
    before that, SIGKILL to each member, which a fork may outrun: the caller repeats until empty)."""
    try:
        with open(path / "cgroup.kill", "w") as file:
            file.write("1")
        return
    except FileNotFoundError:
        if not path.exists():
            return
    except OSError as exc:
        logger.warning("cannot write %s/cgroup.kill: %s", path, exc.strerror or exc)
    signal_members(path, signal.SIGKILL)


def remove(path: Path) -> bool:
    """Remove cgroup ``path`` and the cgroups below it, deepest first; True when it is gone. A cgroup
    that still holds a process stays (EBUSY)."""
    try:
        os.rmdir(path)  # the usual case: no cgroup below it
        return True
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            logger.warning("cannot remove cgroup %s: %s", path, exc.strerror or exc)
            return False
    for directory, _subdirectories, _files in os.walk(path, topdown=False):
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                logger.warning("cannot remove cgroup %s: %s", directory, exc.strerror or exc)
            return False
    return True


async def wait_empty(path: Path, timeout: float | None) -> bool:
    """Wait until no live process is left in ``path`` (``populated 0``), at most ``timeout`` seconds
    (None: no limit); True when it is empty. ``cgroup.events`` raises an inotify modify event on each
    change."""
    try:
        return await inotify.wait_until(
            path / "cgroup.events", inotify.IN_MODIFY, lambda: not populated(path), timeout
        )
    except FileNotFoundError:
        return True  # the cgroup is gone: nothing in it


class RunCgroup:
    """The run's cgroup: created at start, killed and removed at the end."""

    def __init__(self, parent: Path, run_id: str) -> None:
        self.path = parent / f"{RUN_PREFIX}{run_id}"

    @classmethod
    def probe(cls, run_id: str) -> RunCgroup:
        """A run cgroup below the manager's own cgroup, after a write test (created and removed).
        Raises CgroupUnavailable."""
        own = own_cgroup_path()
        reason = delegated(own)
        if reason is not None:
            raise CgroupUnavailable(reason)
        run = cls(own, run_id)
        try:
            run.path.mkdir()
            run.path.rmdir()
        except OSError as exc:
            raise CgroupUnavailable(f"cannot create a cgroup in {own}: {exc.strerror or exc}") from exc
        return run

    def create(self) -> None:
        """Create the run cgroup, and pass on to the process cgroups the controllers it has."""
        self.path.mkdir(exist_ok=True)
        try:
            controllers = (self.path / "cgroup.controllers").read_text().split()
            wanted = [name for name in ("cpu", "memory") if name in controllers]
            if wanted:
                (self.path / "cgroup.subtree_control").write_text(" ".join(f"+{n}" for n in wanted))
        except OSError as exc:
            logger.info("no per-process memory and cpu accounting: %s", exc.strerror or exc)

    def process(self, key: str) -> Path:
        return self.path / process_cgroup_name(key)

    def close(self) -> None:
        """Kill whatever is left and remove every cgroup of the run (synchronous: the last step of a
        manager's shutdown, when every tree was already stopped)."""
        if populated(self.path):
            kill(self.path)
        if not remove(self.path):
            logger.warning("cgroup %s still holds processes; the next start removes it", self.path)

    def __repr__(self) -> str:
        return f"<RunCgroup {self.path}>"


def usage(path: Path) -> tuple[int | None, float | None]:
    """Memory (``memory.current``, bytes) and CPU time (``cpu.stat`` usage_usec, seconds) of a cgroup;
    None where the file is missing (memory needs the memory controller, cpu.stat is always there)."""
    memory: int | None = None
    cpu: float | None = None
    with contextlib.suppress(OSError, ValueError):
        memory = int((path / "memory.current").read_text())
    with contextlib.suppress(OSError, ValueError):
        for line in (path / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                cpu = int(line.split()[1]) / 1e6
    return memory, cpu
