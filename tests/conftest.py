"""Shared helpers: real child processes from small Python programs, and waiting on events."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import socket
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from processman import ManagerOptions, ProcessConfig, ProcessManager
from processman.engine import backend
from processman.environment import TAG_VARIABLE

# The backend this test run uses (PROCESSMAN_BACKEND): scripts/test.sh runs the engine, orphan, leftovers,
# hardening and PocketBase tests a second time with the portable one.
PORTABLE = backend.current().name == "portable"
# What the tags containment is called under this backend.
TAGS = "portable" if PORTABLE else "tags"

# Tests of what only the linux backend has, skipped (with this reason, shown by pytest -rs) under the
# portable backend. Patterns are fnmatch patterns of test node ids.
CGROUP_ONLY = "cgroup v2 containment: the linux backend only"
NEWCOMERS = "reads only the newest pids, which /proc/loadavg names: the linux backend only"
LINUX_ONLY: dict[str, str] = {
    "tests/engine/test_containment.py::*cgroup*": CGROUP_ONLY,
    "tests/engine/test_containment.py::test_unprivileged_manager_in_a_delegated_cgroup*": (
        "a delegated cgroup: the linux backend only"
    ),
    "tests/engine/test_containment.py::test_auto_takes_cgroups*": CGROUP_ONLY,
    "tests/engine/test_containment.py::test_resource_figures_count_the_members_that_lost_their_tag": (
        "members listed by their cgroup: the linux backend only"
    ),
    "tests/engine/test_containment.py::test_a_stop_at_once_after_the_start_escalates_*": CGROUP_ONLY,
    "tests/engine/test_containment.py::test_a_start_refused_for_a_folder_in_use*": CGROUP_ONLY,
    "tests/engine/test_forking.py::*cgroup*": CGROUP_ONLY,
    "tests/engine/test_forking.py::test_redis_daemonized_without_type_forking_*": CGROUP_ONLY,
    "tests/engine/test_resource_sampling.py::test_a_read_looks_at_the_trees_and_the_newcomers_*": NEWCOMERS,
    "tests/engine/test_resource_sampling.py::test_every_process_is_read_again_now_and_then": NEWCOMERS,
    "tests/engine/test_resource_sampling.py::test_the_children_of_other_programs_are_not_asked_*": NEWCOMERS,
    "tests/hardening/test_pid1.py::test_pocketbase_as_pid1_its_supervisor_reaps_*": (
        "the child subreaper (orphans re-parent to the supervisor, not PocketBase as PID 1): linux only"
    ),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not PORTABLE:
        return
    for item in items:
        for pattern, reason in LINUX_ONLY.items():
            if fnmatch.fnmatchcase(item.nodeid, pattern):
                item.add_marker(pytest.mark.skip(reason=f"portable backend: {reason}"))
                break


def python(code: str, **fields: Any) -> dict[str, Any]:
    """Config fields that run ``code`` in a fresh Python interpreter."""
    return {"command": sys.executable, "args": ("-u", "-c", textwrap.dedent(code)), **fields}


def python_entry(process_id: str, code: str, **fields: Any) -> dict[str, Any]:
    """A pb_processes.json entry that runs ``code`` in this Python (for a real ``serve``)."""
    return {
        "id": process_id,
        "command": sys.executable,
        "args": ["-u", "-c", textwrap.dedent(code)],
        **fields,
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Re-check something outside this process (HTTP, /proc, files) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def config(process_id: str, code: str, **fields: Any) -> ProcessConfig:
    fields.setdefault("backoff", 0.05)
    return ProcessConfig(id=process_id, **python(code, **fields))


async def wait_until(
    manager: ProcessManager, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Wait until ``predicate()`` holds, re-checking on every event the manager publishes."""
    if predicate():
        return
    with manager.subscribe(maxsize=100_000) as events:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            # Re-check at least every 0.2 s: some conditions (a file appearing) publish no event.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(events.get(), min(remaining, 0.2))


async def wait_for_path(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout}s")
        await asyncio.sleep(0.02)
    return path.read_text().strip()


def tagged_processes(prefix: str) -> list[int]:
    """Live (non-zombie) processes whose PROCESSMAN_TAG starts with ``prefix``."""
    found = []
    for process in psutil.process_iter(["environ", "status"]):
        try:
            env = process.info["environ"] or {}
            if (
                env.get(TAG_VARIABLE, "").startswith(prefix)
                and process.info["status"] != psutil.STATUS_ZOMBIE
            ):
                found.append(process.pid)
        except (psutil.Error, KeyError):
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return left


@pytest.fixture
async def manager_factory(tmp_path: Path) -> AsyncIterator[Callable[..., ProcessManager]]:
    """Builds managers that are always closed (every tree stopped) at the end of the test."""
    made: list[ProcessManager] = []

    def make(*configs: ProcessConfig, **options: Any) -> ProcessManager:
        options.setdefault("state_dir", tmp_path / "state")
        options.setdefault("log_output", False)
        manager = ProcessManager(configs, ManagerOptions(**options))
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.close()
        assert tagged_processes(f"{manager.run_id}:") == [], "a test left processes behind"
        run_cgroup = manager.containment.guardian_cgroup()
        assert run_cgroup is None or not Path(run_cgroup).exists(), "a test left its run cgroup behind"
