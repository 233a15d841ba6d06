"""What a result was measured on: the machine, and the version of every manager."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from typing import Any

from bench.managers.processman import processman_python
from bench.peers import REPO_DIR, Peers, versions


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def commit() -> str:
    """The checkout's commit, with ``+changes`` when src/ differs from it (processman runs from the
    working tree)."""
    head = subprocess.run(
        ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no", "src"],
        capture_output=True,
        text=True,
        check=False,
    )
    return (head.stdout.strip() or "?") + (" +changes" if dirty.stdout.strip() else "")


def _processman_version() -> str:
    done = subprocess.run(
        [processman_python(), "-m", "processman", "--version"], capture_output=True, text=True, check=False
    )
    version = done.stdout.strip().rsplit(" ", 1)[-1] or "?"
    python = subprocess.run([processman_python(), "--version"], capture_output=True, text=True, check=False)
    return f"{version} (commit {commit()}, {python.stdout.strip()})"


def describe(peers: Peers, *, quick: bool) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "quick": quick,
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "memory_gib": _memory_gib(),
            "kernel": platform.release(),
            "system": platform.system(),
        },
        "versions": {"processman": _processman_version(), **versions(peers)},
    }
