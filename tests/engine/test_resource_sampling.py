"""The narrow resource sample: only the trees' known members and the processes started since the last
read are read, never every process on the machine, and a tree that forks later is still counted whole."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from processman import ProcessManager, Status
from processman.engine import resources
from processman.engine.procfs import ProcStat
from processman.engine.resources import ProcTable, ResourceSampler, started_between
from processman.environment import TAG_VARIABLE
from tests.conftest import config, wait_until
from tests.engine.clock import ManualClock, settle

Factory = Callable[..., ProcessManager]
MB = 1024 * 1024
# Forks when the test writes to the FIFO: a spinning grandchild in its group holding 30 MB, and a
# daemon in a session of its own (found by its tag only) holding 20 MB.
FORKER = """
import subprocess, sys, time
hog = b"x" * (10 << 20)
print("ready", flush=True)
open({fifo!r}).read()
spin = "import sys; hog = b'x' * (30 << 20); print('in', flush=True)\\nwhile True: pass"
spinner = subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE)
sleep = "import time; hog = b'x' * (20 << 20); print('in', flush=True); time.sleep(600)"
daemon = subprocess.Popen([sys.executable, "-c", sleep], stdout=subprocess.PIPE, start_new_session=True)
spinner.stdout.readline(), daemon.stdout.readline()
print("forked", spinner.pid, daemon.pid, flush=True)
time.sleep(600)
"""
# For the table on its own: on each line read, forks a daemon that keeps the tag and leaves the group,
# and a child that stays in the group without the tag (an empty environment).
PARENT = """
import subprocess, sys
print("ready", flush=True)
for _ in sys.stdin:
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    daemon = subprocess.Popen(sleep, start_new_session=True)
    bare = subprocess.Popen(sleep, env={})
    print(daemon.pid, bare.pid, flush=True)
"""
STRANGERS = 30


@pytest.fixture
def strangers() -> Iterator[list[int]]:
    """Processes that belong to no tree: a full read looks at them, a narrow one never does."""
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(STRANGERS)]
    yield [sleeper.pid for sleeper in sleepers]
    for sleeper in sleepers:
        sleeper.kill()
        sleeper.wait()


@pytest.fixture
def parent() -> Iterator[subprocess.Popen[str]]:
    """A tagged process in a session of its own that forks on demand (see PARENT)."""
    env = {**os.environ, TAG_VARIABLE: "sampling-test:parent"}
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PARENT)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    yield process
    found = [p.pid for p in psutil.process_iter() if _tag(p.pid) == "sampling-test:parent"]
    for pid in found:
        os.kill(pid, signal.SIGKILL)
    # The bare children carry no tag: they are found by the parent's process group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()
    process.stdout.close()


def _tag(pid: int) -> str | None:
    try:
        return psutil.Process(pid).environ().get(TAG_VARIABLE)
    except psutil.Error:
        return None


def _fork(parent: subprocess.Popen[str]) -> tuple[int, int]:
    assert parent.stdin is not None and parent.stdout is not None
    parent.stdin.write("fork\n")
    parent.stdin.flush()
    daemon, bare = parent.stdout.readline().split()
    return int(daemon), int(bare)


def _pids(stats: list[ProcStat]) -> set[int]:
    return {stat.pid for stat in stats}


def test_a_read_looks_at_the_trees_and_the_newcomers_only(
    parent: subprocess.Popen[str], strangers: list[int]
) -> None:
    table = ProcTable("sampling-test:", full_scan_every=1000)
    groups = {parent.pid}
    by_tag, by_group = table.read(groups)  # the first read: every process
    assert table.stats_read > STRANGERS
    assert _pids(by_tag["sampling-test:parent"]) == {parent.pid} == _pids(by_group[parent.pid])

    table.read(groups)
    # The parent, and whatever the machine started between the two reads: not the strangers.
    assert table.stats_read < STRANGERS // 2, table.stats_read

    daemon, bare = _fork(parent)
    by_tag, by_group = table.read(groups)
    assert table.stats_read < STRANGERS // 2, table.stats_read
    assert _pids(by_tag["sampling-test:parent"]) == {parent.pid, daemon}  # the bare one has no tag
    assert _pids(by_group[parent.pid]) == {parent.pid, bare}  # the daemon left the group

    table.read(groups)  # the newcomers are members now: read at every sample
    assert _pids(by_tag["sampling-test:parent"]) == {parent.pid, daemon}
    assert _pids(by_group[parent.pid]) == {parent.pid, bare}
    assert table.stats_read < STRANGERS // 2, table.stats_read


def test_every_process_is_read_again_now_and_then(
    parent: subprocess.Popen[str], strangers: list[int]
) -> None:
    table = ProcTable("sampling-test:", full_scan_every=3)
    counts = []
    for _ in range(4):
        table.read({parent.pid})
        counts.append(table.stats_read)
    assert counts[0] > STRANGERS and counts[3] > STRANGERS, counts
    assert counts[1] < STRANGERS // 2 and counts[2] < STRANGERS // 2, counts


def test_the_children_of_other_programs_are_not_asked_for_a_tag(parent: subprocess.Popen[str]) -> None:
    spawner = subprocess.Popen(
        ["sh", "-c", f"read go; for i in $(seq {STRANGERS}); do sleep 600 & done; echo forked; wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        table = ProcTable("sampling-test:", full_scan_every=1000)
        table.read({parent.pid})  # the first read: every process, the spawner among them
        assert table.tags_read > 0
        assert spawner.stdin is not None and spawner.stdout is not None
        spawner.stdin.write("go\n")
        spawner.stdin.flush()
        assert spawner.stdout.readline() == "forked\n"
        daemon, _ = _fork(parent)  # a newcomer of ours meanwhile: its tag is read
        by_tag, _ = table.read({parent.pid})
        assert table.stats_read > STRANGERS  # the spawner's children are newcomers, and read...
        assert table.tags_read < STRANGERS // 2, table.tags_read  # ...but their environments are not
        assert daemon in _pids(by_tag["sampling-test:parent"])
    finally:
        os.killpg(spawner.pid, signal.SIGKILL)
        spawner.wait()
        assert spawner.stdin is not None and spawner.stdout is not None
        spawner.stdin.close()
        spawner.stdout.close()


def test_the_newcomers_are_the_pids_after_the_last_one_seen() -> None:
    pids = [2, 300, 301, 302, 4000, 4194304]
    assert started_between(pids, 300, 302) == {301, 302}
    assert started_between(pids, 302, 302) == set()
    # The kernel's counter wrapped past pid_max: from the old last one up, then from the bottom.
    assert started_between(pids, 4000, 2) == {4194304, 2}


async def test_a_tree_that_forks_after_start_is_counted_whole(
    manager_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "FULL_SCAN_EVERY", 10**6)  # only the first read sees every process
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    manager = manager_factory(config("forker", FORKER.format(fifo=str(fifo))), metrics_interval=0)
    await manager.start()
    await wait_until(manager, lambda: len(manager.logs("forker")) == 1, what="ready")
    await manager.resources.sample()
    await manager.resources.sample()
    alone = manager.resources.usage()["forker"]
    assert alone.processes == 1 and alone.memory > 10 * MB

    await asyncio.to_thread(fifo.write_text, "go")
    await wait_until(manager, lambda: len(manager.logs("forker")) == 2, what="the forks")
    spinner, _daemon = (int(pid) for pid in manager.logs("forker")[1].content.split()[1:])
    await manager.resources.sample()
    await asyncio.sleep(0.5)
    spun = psutil.Process(spinner).cpu_times()
    await manager.resources.sample()

    family = manager.resources.usage()["forker"]
    assert family.processes == 3
    assert family.memory >= alone.memory + 50 * MB, (alone.memory, family.memory)
    assert family.cpu_percent is not None and family.cpu_percent > 5, family.cpu_percent
    # The spinner counts whole, from its first instant.
    assert manager.resources.cpu_seconds()["forker"] >= spun.user + spun.system
    state = manager.state("forker")
    assert state.memory == family.memory and state.cpu == family.cpu_percent


# ---- on demand: the full rate only while the figures are read ----------------------------------

SLEEPER = "import time\nwhile True: time.sleep(1)"


async def test_on_demand_takes_no_sample_until_a_reader_comes(manager_factory: Factory) -> None:
    clock = ManualClock()
    manager = manager_factory(config("idle", SLEEPER), metrics_interval=2, clock=clock)
    sampler = manager.resources
    sampler.on_demand = True
    await manager.start()
    await wait_until(manager, lambda: manager.state("idle").status is Status.RUNNING, what="running")
    await wait_until(manager, lambda: sampler.waiting, what="the sampler waiting for a reader")
    taken = sampler.samples
    assert taken >= 1 and not sampler.in_use()
    clock.advance(3600)  # an hour with nobody reading: no sample is due
    await settle()
    assert sampler.waiting and sampler.samples == taken

    with sampler.reading():
        assert sampler.in_use()
        await sampler.fresh()  # the figures are an hour old: wait for the sample the reader brought
        assert sampler.samples == taken + 1
        state = manager.state("idle")
        assert state.memory is not None and state.cpu is not None  # CPU over the hour
        await settle()  # the sampler's pause begins
        clock.advance(2)  # the full rate while it reads
        await wait_until(manager, lambda: sampler.samples >= taken + 2, what="the next sample")
    await settle()
    clock.advance(resources.READ_KEEPS_SAMPLING + 2)  # the reader left a while ago: no sample again
    await wait_until(manager, lambda: sampler.waiting, what="the sampler waiting again")
    count = sampler.samples
    clock.advance(3600)
    await settle()
    assert sampler.waiting and sampler.samples == count


async def _quiet_for_an_hour(manager_factory: Factory) -> tuple[ProcessManager, ManualClock]:
    """A manager on the manual clock, sampling on demand, after an hour with nobody reading."""
    clock = ManualClock()
    manager = manager_factory(config("idle", SLEEPER), metrics_interval=2, clock=clock)
    sampler = manager.resources
    sampler.on_demand = True
    await manager.start()
    await wait_until(manager, lambda: sampler.waiting, what="the sampler waiting for a reader")
    clock.advance(3600)
    await settle()
    return manager, clock


async def test_on_demand_samples_again_when_a_reload_adds_max_memory(manager_factory: Factory) -> None:
    manager, clock = await _quiet_for_an_hour(manager_factory)
    sampler = manager.resources
    taken = sampler.samples
    await manager.apply([config("idle", SLEEPER, max_memory=1024 * MB)])
    assert sampler.in_use()
    await wait_until(manager, lambda: sampler.samples > taken, what="a sample for maxMemory")
    await settle()
    clock.advance(2)  # and the full rate from then on
    await wait_until(manager, lambda: sampler.samples > taken + 1, what="the next sample")
    assert not sampler.waiting


async def test_turning_on_demand_off_samples_again(manager_factory: Factory) -> None:
    manager, _clock = await _quiet_for_an_hour(manager_factory)
    sampler = manager.resources
    taken = sampler.samples
    sampler.on_demand = False  # the HTTP API is gone: every sample again
    await wait_until(manager, lambda: sampler.samples > taken, what="a sample")


async def test_a_sample_after_a_long_gap_reads_every_process(
    strangers: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pid counter may have wrapped since the last sample: newcomers cannot be told by their pid."""
    monkeypatch.setattr(resources, "FULL_SCAN_EVERY", 1000)
    clock = ManualClock()
    sampler = ResourceSampler("gap-test", list, interval=2, clock=clock)  # not started: by hand
    await sampler.sample()  # the first: every process
    assert sampler.table.stats_read > STRANGERS
    clock.advance(2)
    await sampler.sample()
    assert sampler.table.stats_read < STRANGERS // 2, sampler.table.stats_read
    clock.advance(2 * 1000 + 1)
    await sampler.sample()
    assert sampler.table.stats_read > STRANGERS, sampler.table.stats_read


async def test_on_demand_keeps_the_full_rate_for_max_memory(manager_factory: Factory) -> None:
    manager = manager_factory(config("capped", SLEEPER, max_memory=1024 * MB), metrics_interval=0.05)
    manager.resources.on_demand = True
    await manager.start()
    assert manager.resources.in_use()
    # Eight samples take 0.4 s at the full rate; at the idle rate (one per 0.75 s) five at most in 3 s.
    await wait_until(manager, lambda: manager.resources.samples >= 8, timeout=3, what="the full rate")


async def test_fresh_does_not_wait_when_sampling_is_off(manager_factory: Factory) -> None:
    manager = manager_factory(config("idle", SLEEPER), metrics_interval=0)
    manager.resources.on_demand = True
    await manager.start()
    async with asyncio.timeout(1):
        await manager.resources.fresh()
    assert manager.resources.samples == 0
