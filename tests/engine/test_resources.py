"""Resource use, maxMemory, OS limits and crash history, with real children that really allocate,
spin and exit."""

from __future__ import annotations

import ast
import asyncio
import re
import resource
import time
from collections.abc import Callable

import psutil

from processman import ProcessManager, Status
from processman.api.wire import state_to_json
from processman.engine.events import EventBus
from processman.engine.posix import TagScanner
from processman.engine.process import ManagedProcess, ProcessContext
from processman.engine.procfs import PAGE_SIZE
from processman.engine.resources import ResourceSampler, apply_limits, read_stat
from tests.conftest import config, wait_until

Factory = Callable[..., ProcessManager]
MB = 1024 * 1024
SLEEPER = "import time\nwhile True: time.sleep(1)"
SPINNER = "while True: pass"
# Resident at once: bytes of b"x" * n are written, so every page is really in memory.
HOG = """
import time
print("allocating {mb}MB", flush=True)
hog = b"x" * ({mb} << 20)
print("allocated", flush=True)
while True: time.sleep(1)
"""
# A parent and a grandchild of the same tree, each holding memory.
FAMILY = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; hog = b'x' * (30 << 20); time.sleep(600)"])
hog = b"x" * (20 << 20)
print("ready", flush=True)
time.sleep(600)
"""


def running(manager: ProcessManager, process_id: str) -> bool:
    return manager.state(process_id).status is Status.RUNNING


# ---- maxMemory -------------------------------------------------------------------------------


async def test_a_child_above_max_memory_is_restarted_with_the_reason(manager_factory: Factory) -> None:
    manager = manager_factory(config("hog", HOG.format(mb=80), max_memory=40 * MB), metrics_interval=0.05)
    await manager.start()
    first_pid = manager.state("hog").pid
    await wait_until(
        manager,
        lambda: manager.state("hog").restart_count >= 1 and running(manager, "hog"),
        what="a restart for memory",
    )
    state = manager.state("hog")
    assert state.pid != first_pid
    assert re.fullmatch(r"memory \d+(\.\d)?MB above maxMemory 40MB", state.last_error), state.last_error
    exit = state_to_json(state)["recentExits"][0]
    assert exit["reason"] == state.last_error
    assert exit["signal"] == "SIGTERM" and exit["exitCode"] is None
    # Under load the limit may be caught before the allocation ends.
    assert exit["lastLines"] in (["allocating 80MB"], ["allocating 80MB", "allocated"])
    assert any("restarting: memory" in line.content for line in manager.logs("hog"))


async def test_memory_must_stay_above_the_limit_for_two_samples(manager_factory: Factory) -> None:
    # metrics_interval 0: no background sampling, this test takes each sample itself.
    manager = manager_factory(
        config("hog", HOG.format(mb=80), max_memory=40 * MB),
        config("small", HOG.format(mb=1), max_memory=40 * MB),
        metrics_interval=0,
    )
    await manager.start()
    await wait_until(manager, lambda: len(manager.logs("hog")) == 2, what="the allocation")
    pid = manager.state("hog").pid
    await manager.resources.sample()
    memory = manager.state("hog").memory
    assert memory is not None and memory > 80 * MB
    assert manager.state("hog").pid == pid and manager.state("hog").last_error == ""
    await manager.resources.sample()
    await wait_until(manager, lambda: manager.state("hog").restart_count == 1, what="the restart")
    for _ in range(3):
        await manager.resources.sample()
    small = manager.state("small")
    assert small.restart_count == 0 and small.last_error == "" and small.status is Status.RUNNING


async def test_a_user_stop_wins_over_memory_restarts(manager_factory: Factory) -> None:
    manager = manager_factory(config("hog", HOG.format(mb=80), max_memory=40 * MB), metrics_interval=0.05)
    await manager.start()
    await wait_until(manager, lambda: manager.state("hog").restart_count >= 1, what="a memory restart")
    await manager.stop_process("hog")
    restarts = manager.state("hog").restart_count
    samples = manager.resources.samples
    await wait_until(manager, lambda: manager.resources.samples >= samples + 5, what="five more samples")
    state = manager.state("hog")
    assert state.status is Status.STOPPED and state.pid == 0 and state.restart_count == restarts


async def test_restart_for_never_starts_a_stopped_process() -> None:
    process = ManagedProcess(config("idle", SLEEPER), ProcessContext("test", EventBus(), TagScanner()))
    try:
        process.restart_for("memory 2GB above maxMemory 1GB")
        assert process.status is Status.STOPPED and process.pid == 0
        assert process.restart_count == 0 and process.last_error == "" and not process.exit_records()
    finally:
        process.close()


# ---- usage -----------------------------------------------------------------------------------


async def test_cpu_and_memory_cover_the_whole_tree(manager_factory: Factory) -> None:
    manager = manager_factory(config("family", FAMILY), config("spinner", SPINNER), metrics_interval=0)
    await manager.start()
    await wait_until(manager, lambda: len(manager.logs("family")) == 1, what="the family to allocate")
    await manager.resources.sample()
    assert manager.state("spinner").cpu is None  # one sample: no rate yet
    await asyncio.sleep(0.5)
    await manager.resources.sample()
    trees = manager.resources.usage()
    assert trees["family"].processes == 2
    family = state_to_json(manager.state("family"))
    assert family["memory"] >= 50 * MB and family["memory"] == trees["family"].memory
    assert family["cpu"] is not None and family["cpu"] < 50
    spinner = manager.state("spinner")
    times = psutil.Process(spinner.pid).cpu_times()
    counted = manager.resources.cpu_seconds()["spinner"]
    # It kept spinning since the sample; a cgroup also counts the wrapper that placed it there.
    assert -0.05 <= times.user + times.system - counted < 0.25
    # A busy loop gets about 100% of a core; a loaded machine gives it less, but never as little as
    # the sleeping family gets.
    assert spinner.cpu is not None and spinner.cpu > max(5.0, family["cpu"]), (spinner.cpu, family["cpu"])

    await manager.stop_process("spinner")
    assert state_to_json(manager.state("spinner"))["cpu"] is None
    assert state_to_json(manager.state("spinner"))["memory"] is None
    counted = manager.resources.cpu_seconds()["spinner"]
    await manager.resources.sample()
    assert manager.resources.cpu_seconds()["spinner"] == counted  # a counter keeps its value


def test_read_stat_parses_this_process() -> None:
    import os

    stat = read_stat(os.getpid())
    assert stat is not None
    assert stat.group == os.getpgid(0)
    assert stat.rss_pages * PAGE_SIZE > 1 * MB
    assert read_stat(2**22 + 1) is None  # above pid_max: never a process


async def test_manager_usage_reports_itself(manager_factory: Factory) -> None:
    manager = manager_factory(config("a", SLEEPER), config("b", SLEEPER), metrics_interval=30)
    await manager.start()
    usage = manager.manager_usage()
    assert usage.memory > 5 * MB and usage.cpu_seconds > 0
    assert usage.open_fds >= 6  # two pipes and a pidfd per child
    assert usage.log_lines_dropped == {"logging": 0, "subscribers": 0}

    time.sleep(0.6)  # noqa: ASYNC251 -- blocks the event loop on purpose: the lag probe must see it
    await asyncio.sleep(0.3)
    usage = manager.manager_usage()
    assert usage.loop_lag is not None and 0.3 <= usage.loop_lag < 5, usage.loop_lag
    assert usage.sample_seconds is not None and usage.sample_seconds < 5


async def test_lines_a_slow_subscriber_drops_are_counted(manager_factory: Factory) -> None:
    manager = manager_factory(config("talker", "for i in range(200): print(i)\nimport time; time.sleep(60)"))
    with manager.subscribe(process_id="talker", maxsize=1):  # never read
        await manager.start()
        await wait_until(manager, lambda: manager.last_log_seq("talker") == 200, what="200 lines")
    dropped = manager.manager_usage().log_lines_dropped["subscribers"]
    assert 0 < dropped <= 200


# ---- OS limits -------------------------------------------------------------------------------

REPORT_LIMITS = """
import resource, time
names = ("RLIMIT_NOFILE", "RLIMIT_CPU", "RLIMIT_CORE")
print({name: resource.getrlimit(getattr(resource, name)) for name in names}, flush=True)
time.sleep(600)
"""


async def test_limits_are_applied_at_spawn(manager_factory: Factory) -> None:
    limits = {"openFiles": 123, "cpuSeconds": 1000, "coreSize": 0}
    manager = manager_factory(config("limited", REPORT_LIMITS, limits=limits), config("free", REPORT_LIMITS))
    await manager.start()
    await wait_until(manager, lambda: all(manager.logs(i) for i in ("limited", "free")), what="reports")
    limited = ast.literal_eval(manager.logs("limited")[0].content)
    assert limited == {"RLIMIT_NOFILE": (123, 123), "RLIMIT_CPU": (1000, 1001), "RLIMIT_CORE": (0, 0)}
    free = ast.literal_eval(manager.logs("free")[0].content)
    assert free["RLIMIT_NOFILE"] == resource.getrlimit(resource.RLIMIT_NOFILE)
    assert manager.state("limited").last_error == ""


async def test_cpu_seconds_ends_a_spinning_child_with_sigxcpu(manager_factory: Factory) -> None:
    manager = manager_factory(config("spin", SPINNER, limits={"cpuSeconds": 1}, backoff=60))
    await manager.start()
    await wait_until(manager, lambda: bool(manager.state("spin").exits), what="the CPU limit")
    exit = state_to_json(manager.state("spin"))["recentExits"][0]
    assert exit["signal"] == "SIGXCPU", exit


async def test_a_limit_that_cannot_be_applied_is_reported_and_the_process_runs(
    manager_factory: Factory,
) -> None:
    manager = manager_factory(config("greedy", SLEEPER, limits={"openFiles": 2**40, "coreSize": 0}))
    await manager.start()
    state = manager.state("greedy")
    assert state.status is Status.RUNNING
    assert state.last_error.startswith(f"limits.openFiles {2**40} not applied: above"), state.last_error
    assert any("limits.openFiles" in line.content for line in manager.logs("greedy"))


def test_apply_limits_to_a_process_that_is_gone() -> None:
    assert apply_limits(2**22 + 1, {"openFiles": 10}) == []


# ---- crash history ---------------------------------------------------------------------------


async def test_each_exit_keeps_its_own_last_lines(manager_factory: Factory) -> None:
    code = "import os\nfor i in range(7): print(f'{os.getpid()} line {i}')\nraise SystemExit(3)"
    manager = manager_factory(config("flaky", code, min_uptime=0.0))  # every run healthy: no backoff
    await manager.start()
    await wait_until(manager, lambda: manager.state("flaky").restart_count >= 25, what="25 restarts")
    exits = state_to_json(manager.state("flaky"))["recentExits"]
    assert len(exits) == 20
    pids = set()
    for exit in exits:
        assert (exit["exitCode"], exit["signal"], exit["reason"]) == (3, None, "exited with code 3")
        pid = exit["lastLines"][0].split()[0]
        assert exit["lastLines"] == [f"{pid} line {i}" for i in range(2, 7)]
        pids.add(pid)
    assert len(pids) == 20  # each record holds the lines of its own run


async def test_an_exit_by_signal_is_recorded(manager_factory: Factory) -> None:
    code = "import os, signal\nprint('going', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)"
    manager = manager_factory(config("killed", code, backoff=60))
    await manager.start()
    await wait_until(manager, lambda: bool(manager.state("killed").exits), what="the exit")
    exit = state_to_json(manager.state("killed"))["recentExits"][0]
    assert (exit["exitCode"], exit["signal"]) == (None, "SIGKILL")
    assert exit["reason"] == "killed by signal 9 (SIGKILL)" and exit["lastLines"] == ["going"]


async def test_the_lag_probe_sleeps_while_nobody_reads_the_figures() -> None:
    """On demand and unread, the lag probe's timer stops after its tick; a reader sets it again."""
    sampler = ResourceSampler("lag-probe", list, interval=30)
    sampler.on_demand = True
    sampler.start()
    try:
        assert sampler.probing_lag
        deadline = time.monotonic() + 10
        while sampler.probing_lag:
            assert time.monotonic() < deadline, "the lag probe kept ticking while nobody read"
            await asyncio.sleep(0.05)
        with sampler.reading():
            assert sampler.probing_lag
    finally:
        await sampler.close()
