"""Process facts: which processes exist, and of each its start time, parent, process group, CPU time,
memory, environment tag and command line.

One interface, two sources: ``/proc`` on Linux (:class:`processman.engine.procfs.ProcfsFacts`, the
fastest) and psutil everywhere else (:class:`processman.engine.psutil_facts.PsutilFacts`: macOS, the
BSDs, and Linux with ``PROCESSMAN_BACKEND=portable``). The backend (:mod:`processman.engine.backend`)
picks one; psutil is imported only when the portable backend is chosen (1.2 MB the linux backend does
not need).
"""

from __future__ import annotations

from typing import Protocol

from processman.engine.procfs import ProcStat


class Facts(Protocol):
    name: str  # "/proc" or "psutil", for people

    def pids(self) -> set[int]:
        """Every pid on the machine (that this process can see)."""
        ...

    def stat(self, pid: int) -> ProcStat | None:
        """A live process's start, group, CPU and memory; None for a zombie or a process that is gone."""
        ...

    def alive(self, pid: int) -> bool:
        """``pid`` runs and is not a zombie."""
        ...

    def tag(self, pid: int) -> str | None:
        """The ``PROCESSMAN_TAG`` of ``pid``'s environment; None without one or when it cannot be read."""
        ...

    def start_time(self, pid: int) -> float | None:
        """When ``pid`` started, in seconds since the epoch; None when it is gone or a zombie."""
        ...

    def cmdline(self, pid: int) -> str:
        """The command line with spaces between the words; "" when it cannot be read."""
        ...

    def newest_pid(self) -> int | None:
        """The last pid handed out, when the system says (Linux); None: every read lists every pid."""
        ...

    def own_memory(self) -> int:
        """This process's resident bytes."""
        ...

    def own_open_fds(self) -> int:
        """How many descriptors this process has open."""
        ...
