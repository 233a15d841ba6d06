"""No orphans, ever: grandchildren, double-forked daemons, SIGTERM-deaf children, a SIGKILLed manager."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from processman import ProcessManager
from processman.engine import posix
from processman.environment import TAG_VARIABLE
from tests.conftest import alive, config, tagged_processes, wait_for, wait_for_path, wait_gone, wait_until

Factory = Callable[..., ProcessManager]

GRANDCHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open({out!r}, "w").write(str(child.pid))
time.sleep(600)
"""

# Forks, the first child calls setsid and forks again, the middle exits: the daemon is re-parented and
# sits in its own session, out of the original process group.
DAEMON = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open({out!r}, "w").write(str(os.getpid()))
        time.sleep(600)
    os._exit(0)
time.sleep(600)
"""


async def test_stop_kills_grandchildren(manager_factory: Factory, tmp_path: Path) -> None:
    out = tmp_path / "grandchild"
    manager = manager_factory(config("parent", GRANDCHILD.format(out=str(out))))
    await manager.start()
    grandchild = int(await wait_for_path(out))
    assert alive(grandchild)
    await manager.stop_process("parent")
    assert not alive(grandchild)


async def test_stop_kills_a_double_forked_setsid_daemon(manager_factory: Factory, tmp_path: Path) -> None:
    out = tmp_path / "daemon"
    manager = manager_factory(config("forker", DAEMON.format(out=str(out))), adopt_orphans=True)
    await manager.start()
    daemon = int(await wait_for_path(out))
    assert os.getsid(daemon) != os.getsid(manager.state("forker").pid)
    await manager.stop_process("forker")
    assert not alive(daemon)


async def test_a_crash_takes_its_leftover_descendants_with_it(
    manager_factory: Factory, tmp_path: Path
) -> None:
    # Otherwise each restart would add a grandchild (one holding a port, say) to the pile.
    out = tmp_path / "grandchild"
    code = GRANDCHILD.format(out=str(out)).replace(
        "time.sleep(600)\n", "time.sleep(0.3)\nraise SystemExit(1)\n"
    )
    manager = manager_factory(config("leaky", code, backoff=0.05))
    await manager.start()
    first = int(await wait_for_path(out))
    await wait_until(manager, lambda: manager.state("leaky").restart_count >= 1, what="a restart")
    assert await wait_gone([first]) == []


async def test_stop_fork_storm(manager_factory: Factory) -> None:
    code = """
    import subprocess, sys, time
    kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(30)]
    print("ready", flush=True)
    time.sleep(600)
    """
    manager = manager_factory(config("storm", textwrap.dedent(code)))
    await manager.start()
    await wait_until(manager, lambda: any(x.content == "ready" for x in manager.logs("storm")), what="ready")
    # Re-checked: now and then one child's environment cannot be read at the first look (1 run in 20).
    storm = f"{manager.run_id}:storm"
    await asyncio.to_thread(wait_for, lambda: len(tagged_processes(storm)) == 31, 5, "31 tagged processes")
    await manager.stop_process("storm")
    assert tagged_processes(f"{manager.run_id}:storm") == []


def _serve(tmp_path: Path, processes: str) -> subprocess.Popen[bytes]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "pb_processes.json").write_text(processes)
    return subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(data), "--http", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_started(
    serve: subprocess.Popen[bytes], count: int, timeout: float = 15.0, marker: str = "started pid"
) -> list[str]:
    """Read serve's output until ``count`` lines contain ``marker``; returns the lines read."""
    assert serve.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while sum(marker in line for line in lines) < count:
        assert time.monotonic() < deadline, f"serve did not start {count} children: {lines}"
        line = serve.stdout.readline().decode()
        assert line, f"serve exited early: {lines}"
        lines.append(line)
    return lines


def _run_id_children(serve_pid: int) -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process(serve_pid).children(recursive=True)]


async def test_manager_killed_with_sigkill_leaves_nothing_within_two_seconds(tmp_path: Path) -> None:
    out = tmp_path / "daemon"
    processes = (
        '[{"id": "daemon", "command": "%s", "args": ["-c", %s]},'
        ' {"id": "tree", "command": "%s", "args": ["-c", %s]}]'
        % (
            sys.executable,
            _json(DAEMON.format(out=str(out))),
            sys.executable,
            _json(GRANDCHILD.format(out=str(tmp_path / "grandchild"))),
        )
    )
    serve = _serve(tmp_path, processes)
    try:
        _wait_started(serve, 2)
        daemon = int(await wait_for_path(out))
        grandchild = int(await wait_for_path(tmp_path / "grandchild"))
        children = _run_id_children(serve.pid)
        watched = [daemon, grandchild, *children]
        assert all(alive(pid) for pid in (daemon, grandchild))
        serve.send_signal(signal.SIGKILL)
        serve.wait()
        assert await wait_gone(watched, timeout=2.0) == []
    finally:
        serve.kill()
        serve.wait()
        assert serve.stdout is not None
        serve.stdout.close()


def _guardians(serve_pid: int) -> list[int]:
    """The live guardians of a serve (its children named ``processman-guardian``)."""
    import psutil

    found = []
    for process in psutil.Process(serve_pid).children():
        try:
            if posix.GUARDIAN_NAME in process.cmdline() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except psutil.Error:  # gone, or a zombie
            continue
    return found


async def test_a_dead_guardian_is_replaced_at_once(tmp_path: Path) -> None:
    """Without its guardian a manager killed with SIGKILL would leave every child running: one that
    dies is noticed, said, and replaced by one that watches the same process groups."""
    out = tmp_path / "grandchild"
    processes = '[{"id": "tree", "command": "%s", "args": ["-c", %s]}]' % (
        sys.executable,
        _json(GRANDCHILD.format(out=str(out))),
    )
    serve = _serve(tmp_path, processes)
    try:
        _wait_started(serve, 1)
        grandchild = int(await wait_for_path(out))
        children = [pid for pid in _run_id_children(serve.pid) if pid not in _guardians(serve.pid)]
        [first] = _guardians(serve.pid)
        os.kill(first, signal.SIGKILL)
        [second] = wait_for(
            lambda: [pid for pid in _guardians(serve.pid) if pid != first], 5, "a new guardian"
        )
        lines = _wait_started(serve, 1, marker="started a new one")
        assert f"guardian (pid {first}) died" in lines[-1], lines[-1]
        assert f"started a new one (pid {second})" in lines[-1], lines[-1]
        serve.send_signal(signal.SIGKILL)
        serve.wait()
        assert await wait_gone([grandchild, *children], timeout=2.0) == []
    finally:
        serve.kill()
        serve.wait()
        assert serve.stdout is not None
        serve.stdout.close()
        _kill_what_the_run_left(tmp_path)


def _kill_what_the_run_left(tmp_path: Path) -> None:
    """After a failure: nothing of the run stays behind the test."""
    run_file = tmp_path / "data" / "processman" / "run.json"
    if run_file.exists():
        for pid in tagged_processes(f"{json.loads(run_file.read_text())['runId']}:"):
            os.kill(pid, signal.SIGKILL)


async def test_next_start_cleans_up_what_a_previous_run_left(tmp_path: Path) -> None:
    # Kill the manager *and* its guardian so the children survive, then start again on the same folder.
    out = tmp_path / "grandchild"
    processes = '[{"id": "tree", "command": "%s", "args": ["-c", %s]}]' % (
        sys.executable,
        _json(GRANDCHILD.format(out=str(out))),
    )
    serve = _serve(tmp_path, processes)
    try:
        _wait_started(serve, 1)
        grandchild = int(await wait_for_path(out))
        import psutil

        everything = psutil.Process(serve.pid).children(recursive=True)
        guardian = [p for p in everything if p.pid != grandchild and posix.GUARDIAN_NAME in p.cmdline()]
        assert len(guardian) == 1
        serve.send_signal(signal.SIGSTOP)  # so that it cannot start a new guardian
        guardian[0].send_signal(signal.SIGKILL)
        serve.send_signal(signal.SIGKILL)
        serve.wait()
        out.unlink()
        assert alive(grandchild)  # nothing watched over it this time
    finally:
        serve.kill()
        serve.wait()
        assert serve.stdout is not None
        serve.stdout.close()
    second = _serve(tmp_path, processes)
    try:
        lines = _wait_started(second, 1)
        assert any("left behind by a previous run" in line for line in lines)
        assert await wait_gone([grandchild], timeout=5.0) == []
        assert await wait_for_path(out)  # the new run is up
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=15)
        assert second.stdout is not None
        second.stdout.close()


def _json(text: str) -> str:
    return json.dumps(textwrap.dedent(text))


async def test_serve_stops_children_on_sigterm_and_twice_forces(tmp_path: Path) -> None:
    deaf = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    deaf += "print('deaf now')\ntime.sleep(600)"
    processes = '[{"id": "deaf", "command": "%s", "args": ["-c", %s], "stopTimeout": "60s"}]' % (
        sys.executable,
        _json(deaf),
    )
    serve = _serve(tmp_path, processes)
    try:
        _wait_started(serve, 1, marker="| deaf now")
        children = _run_id_children(serve.pid)
        serve.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        assert serve.poll() is None  # waiting for the deaf child's 60 s grace
        serve.send_signal(signal.SIGINT)  # the second signal forces
        assert await asyncio.to_thread(serve.wait, 10) == 128 + signal.SIGTERM
        assert await wait_gone(children, timeout=2.0) == []
    finally:
        serve.kill()
        serve.wait()
        assert serve.stdout is not None
        serve.stdout.close()


async def test_a_guardian_that_dies_at_every_start_is_given_up(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(posix, "GUARDIAN_SHELL", "exit 7")
    guardian = posix.Guardian("no-run")
    try:
        deadline = time.monotonic() + 10
        while "giving up" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            await asyncio.sleep(0.02)  # the deaths arrive through the loop: let it run
        assert caplog.text.count("started a new one") == posix.Guardian.MAX_QUICK_DEATHS - 1
        assert "died (exit code 7), 3 times in a row at start: giving up" in caplog.text
    finally:
        guardian.close()


@pytest.mark.parametrize("clean", [True, False])
def test_a_guardian_told_of_a_clean_stop_leaves_without_cleaning_up(clean: bool) -> None:
    """After a clean stop the guardian exits without its look at /proc; otherwise (its manager gone
    with processes left) it stops what carries the run's tag and is in the groups it was told of."""
    run_id = f"guardian-{os.getpid()}-{clean}"
    child = subprocess.Popen(
        ["sleep", "600"], env={**os.environ, TAG_VARIABLE: f"{run_id}:p"}, start_new_session=True
    )
    try:
        guardian = posix.Guardian(run_id, grace=0.2)
        guardian.watch_group(child.pid)
        guardian.close(clean=clean)
        assert guardian._process.returncode == 0
        assert (child.poll() is None) is clean
    finally:
        child.kill()
        child.wait()


def test_a_guardian_keeps_what_it_was_told_in_a_bounded_record() -> None:
    """Groups come and go with every restart: the guardian's record of them stays bounded (it is
    compacted to the groups alive), and after its manager is gone it stops exactly the groups it was
    last told of, not those forgotten, even a group forgotten and then told of again."""
    run_id = f"guardian-record-{os.getpid()}"
    children = [subprocess.Popen(["sleep", "600"], start_new_session=True) for _ in range(30)]
    try:
        guardian = posix.Guardian(run_id, grace=0.2)
        for child in children:
            guardian.watch_group(child.pid)
        for _round in range(5):  # restarts: each group forgotten and told of again
            for child in children:
                guardian.forget_group(child.pid)
                guardian.watch_group(child.pid)
        kept, forgotten = children[:3], children[3:]
        for child in forgotten:
            guardian.forget_group(child.pid)
        assert guardian.recorded <= posix.Guardian.record_bound(len(kept))
        guardian.close(clean=False)
        assert all(child.wait(5) == -signal.SIGTERM for child in kept)
        assert all(child.poll() is None for child in forgotten)
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_a_guardian_with_a_cgroup_is_told_of_no_groups() -> None:
    """With cgroups the run cgroup holds every process of the run: the guardian kills it and needs no
    process groups (each line it is told costs the shell work while the manager stops)."""
    guardian = posix.Guardian(f"guardian-cgroup-{os.getpid()}", cgroup="/nonexistent-cgroup")
    try:
        guardian.watch_group(os.getpid())
        guardian.forget_group(os.getpid())
        assert guardian.recorded == 0
    finally:
        guardian.close(clean=True)
