"""Programs that daemonize on purpose: ``"type": "forking"`` (the started process exits 0 once its daemon
runs), and the words a simple process gets when it exits and leaves descendants running."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from processman import ProcessConfig, ProcessManager
from processman.engine.states import Status
from tests.conftest import alive, config, free_port, wait_for_path, wait_until
from tests.engine.test_containment import TAGS_LOSE_PROCESS_TITLE, needs_cgroups

Factory = Callable[..., ProcessManager]
needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

# Forks a daemon that keeps its environment (so both containments find it) and exits 0.
DAEMONIZES = """
import os, sys, time
ready, told = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open({out!r}, "w").write(str(os.getpid()))
        os.write(told, b"x")
        time.sleep(600)
    os._exit(0)
os.close(told)
os.read(ready, 1)  # the daemon runs: now exit, as a daemonizing program does
"""


def _redis(tmp_path: Path, **fields: object) -> tuple[ProcessConfig, int]:
    port = free_port()
    conf = tmp_path / "redis.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndaemonize yes\npidfile {tmp_path / 'redis.pid'}\n"
        f'dir {tmp_path}\nsave ""\nappendonly no\nlogfile {tmp_path / "redis.log"}\n'
    )
    return ProcessConfig(id="redis", command="redis-server", args=(str(conf),), **fields), port  # type: ignore[arg-type]


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


@needs_redis
@pytest.mark.parametrize(
    ("containment", "pid_file"),
    [
        pytest.param("cgroup", True, id="cgroup-pid-file", marks=needs_cgroups),
        pytest.param("cgroup", False, id="cgroup-oldest-member", marks=needs_cgroups),
        pytest.param(
            "tags",
            True,
            id="tags-pid-file",
            marks=pytest.mark.xfail(strict=True, reason=TAGS_LOSE_PROCESS_TITLE),
        ),
    ],
)
async def test_a_forking_redis_runs_and_stops(
    manager_factory: Factory, tmp_path: Path, containment: str, pid_file: bool
) -> None:
    fields: dict[str, object] = {"type": "forking", "backoff": 0.05, "max_retries": 0}
    if pid_file:
        fields["pid_file"] = str(tmp_path / "redis.pid")
    redis, port = _redis(tmp_path, **fields)
    manager = manager_factory(redis, containment=containment)
    await manager.start()
    daemon = 0
    try:
        await wait_until(manager, lambda: manager.state("redis").status is Status.RUNNING, what="running")
        daemon = int(await wait_for_path(tmp_path / "redis.pid"))
        state = manager.state("redis")
        assert state.pid == daemon and state.ready
        assert _ping(port)
        assert manager.state("redis").status is Status.RUNNING and manager.state("redis").restart_count == 0
        assert any("its daemon is pid" in line.content for line in manager.logs("redis"))
        await manager.stop_process("redis")
        assert not alive(daemon)
        assert manager.state("redis").status is Status.STOPPED
    finally:
        if daemon and alive(daemon):  # the tag containment lost it: do not leak it
            os.kill(daemon, signal.SIGKILL)


async def test_a_forking_process_whose_daemon_ends_is_restarted(
    manager_factory: Factory, tmp_path: Path
) -> None:
    out = tmp_path / "daemon"
    code = DAEMONIZES.format(out=str(out)).replace("time.sleep(600)", "time.sleep(0.5)")
    manager = manager_factory(config("d", code, type="forking", min_uptime=0))
    await manager.start()
    first = int(await wait_for_path(out))
    await wait_until(manager, lambda: manager.state("d").restart_count >= 1, what="a restart")
    exit_record = manager.state("d").exits[0]
    assert exit_record.reason == f"its daemon (pid {first}) and every process of its tree ended"
    await manager.stop_process("d")


async def test_a_forking_process_that_leaves_nothing_is_a_failed_start(
    manager_factory: Factory,
) -> None:
    manager = manager_factory(config("nothing", "pass", type="forking", max_retries=0))
    await manager.start()
    await wait_until(manager, lambda: manager.state("nothing").status is Status.FAILED, what="failed")
    assert any("left no process running" in line.content for line in manager.logs("nothing"))


async def test_a_simple_process_that_leaves_a_daemon_is_told_about_type_forking(
    manager_factory: Factory, tmp_path: Path
) -> None:
    out = tmp_path / "daemon"
    manager = manager_factory(config("d", DAEMONIZES.format(out=str(out)), restart="never"))
    await manager.start()
    await wait_until(manager, lambda: manager.state("d").status is Status.COMPLETED, what="completed")
    daemon = int(await wait_for_path(out))
    assert not alive(daemon)
    error = manager.state("d").last_error or manager.state("d").exits[-1].reason
    assert f"its descendants were still running ({daemon} (" in error
    assert "and were stopped" in error and '"type": "forking"' in error


@needs_cgroups
@needs_redis
async def test_redis_daemonized_without_type_forking_is_explained(
    manager_factory: Factory, tmp_path: Path
) -> None:
    redis, _port = _redis(tmp_path, restart="never")
    manager = manager_factory(redis, containment="cgroup")
    await manager.start()
    await wait_until(
        manager, lambda: manager.state("redis").status is Status.COMPLETED, timeout=20, what="completed"
    )
    reason = manager.state("redis").exits[-1].reason
    assert reason.startswith("exited with code 0; its descendants were still running (")
    assert "redis-server" in reason and '"type": "forking"' in reason
    found = re.search(r"still running \((\d+) ", reason)
    assert found is not None
    assert not alive(int(found.group(1)))
