"""The portable backend: chosen where a Linux facility is missing, said so at start-up, and its exit
watching (SIGCHLD for children, a growing timer for other processes) without pidfds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from processman import ProcessManager
from processman.cli import UNSUPPORTED
from processman.engine import backend
from processman.engine.backend import BackendError, choose
from processman.engine.portable import PortableBackend
from tests.conftest import PORTABLE, alive, config, python_entry, tagged_processes, wait_for_path
from tests.engine.test_orphans import DAEMON

# Each Linux facility, taken away in the serve process before processman looks for it.
TAKE_AWAY = {
    "pidfd": "import os; del os.pidfd_open",
    "prctl": textwrap.dedent(
        """
        import ctypes
        class NoPrctl(ctypes.CDLL):
            def __getattr__(self, name):
                if name == "prctl":
                    raise AttributeError(name)
                return super().__getattr__(name)
        ctypes.CDLL = NoPrctl
        """
    ),
    "proc": "import processman.engine.procfs as procfs; procfs.PROC = '/nonexistent/proc'",
}
REASONS = {
    "pidfd": "os.pidfd_open is missing",
    "prctl": "prctl is missing",
    "proc": "/nonexistent/proc cannot be read",
}


def serve_with(data: Path, setup: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    code = f"{setup}\nimport runpy, sys\n"
    code += "sys.argv = ['processman', 'serve', '--dir', sys.argv[1], '--http', 'off']\n"
    code += "runpy.run_module('processman', run_name='__main__')"
    return subprocess.Popen(
        [sys.executable, "-c", code, str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        start_new_session=True,
    )


def read_until(process: subprocess.Popen[bytes], marker: str) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    while not any(marker in line for line in lines):
        line = process.stdout.readline().decode()
        assert line, f"serve exited before saying {marker!r}: {lines}"
        lines.append(line)
    return lines


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="takes Linux facilities away")
@pytest.mark.parametrize("facility", sorted(TAKE_AWAY))
def test_a_missing_linux_facility_chooses_the_portable_backend_and_says_why(
    tmp_path: Path, facility: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "started"
    sleeper = python_entry("sleeper", f"import time; open({str(out)!r}, 'w').write('up'); time.sleep(600)")
    (data / "pb_processes.json").write_text(json.dumps([sleeper]))
    env = {"PROCESSMAN_BACKEND": "auto", "PROCESSMAN_CONTAINMENT": "auto"}
    process = serve_with(data, TAKE_AWAY[facility], env)
    try:
        lines = read_until(process, "containment:")
        backend_line = next(line for line in lines if "backend:" in line)
        assert f"backend: portable ({REASONS[facility]}" in backend_line, lines
        assert "containment: portable (" in lines[-1], lines
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in (0, 143), lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_the_backend_follows_processman_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose({"PROCESSMAN_BACKEND": "portable"}).name == "portable"
    with pytest.raises(BackendError, match="expected one of auto, linux, portable, got 'bsd'"):
        choose({"PROCESSMAN_BACKEND": "bsd"})
    monkeypatch.setitem(backend.PROBES, "pidfd", lambda: "os.pidfd_open is missing")
    chosen = choose({})
    assert (chosen.name, chosen.reason) == ("portable", "os.pidfd_open is missing")
    with pytest.raises(BackendError, match="linux backend was asked for but cannot be used here"):
        choose({"PROCESSMAN_BACKEND": "linux"})


def test_the_linux_backend_where_everything_is_there() -> None:
    if backend.missing_facilities():
        pytest.skip(f"this machine lacks a Linux facility: {backend.missing_facilities()}")
    assert choose({}).name == "linux"


@pytest.mark.parametrize(("name", "loaded"), [("linux", False), ("portable", True)])
def test_psutil_is_loaded_by_the_portable_backend_only(name: str, loaded: bool) -> None:
    """psutil is 1.2 MB of serve's memory that the linux backend, reading /proc, does not need."""
    if name == "linux" and backend.missing_facilities():
        pytest.skip(f"this machine lacks a Linux facility: {backend.missing_facilities()}")
    code = (
        "import sys\n"
        "import processman.cli.serve, processman.runner, processman.engine.manager\n"
        "from processman.engine import backend, posix\n"
        "print(backend.current().name, 'psutil' in sys.modules)\n"
    )
    environ = {**os.environ, "PROCESSMAN_BACKEND": name}
    done = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [name, str(loaded)], done.stderr


def test_an_unknown_backend_is_one_sentence_from_serve(tmp_path: Path) -> None:
    (tmp_path / "pb_processes.json").write_text("[]")
    result = subprocess.run(
        [sys.executable, "-m", "processman", "serve", "--dir", str(tmp_path), "--http", "off"],
        capture_output=True,
        env={**os.environ, "PROCESSMAN_BACKEND": "bsd"},
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr.decode()
    assert (
        result.stderr.decode()
        .strip()
        .endswith("PROCESSMAN_BACKEND: expected one of auto, linux, portable, got 'bsd'")
    )


def test_cgroups_asked_for_with_the_portable_backend_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "pb_processes.json").write_text("[]")
    result = subprocess.run(
        [sys.executable, "-m", "processman", "serve", "--dir", str(tmp_path), "--http", "off"],
        capture_output=True,
        env={**os.environ, "PROCESSMAN_BACKEND": "portable", "PROCESSMAN_CONTAINMENT": "cgroup"},
        timeout=60,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "Error: cgroup containment was asked for but the portable backend has no cgroups "
        "(PROCESSMAN_BACKEND=portable); unset PROCESSMAN_CONTAINMENT or set it to tags"
    )


@pytest.mark.skipif(bool(backend.missing_facilities()), reason="needs the linux backend")
def test_cgroups_asked_for_where_there_are_none_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "pb_processes.json").write_text("[]")
    no_cgroups = textwrap.dedent(
        """
        from processman.engine import cgroups
        def probe(run_id):
            raise cgroups.CgroupUnavailable("no cgroup v2 mount in /proc/self/mountinfo")
        cgroups.RunCgroup.probe = staticmethod(probe)
        """
    )
    process = serve_with(
        tmp_path, no_cgroups, {"PROCESSMAN_BACKEND": "linux", "PROCESSMAN_CONTAINMENT": "cgroup"}
    )
    assert process.stdout is not None
    output = process.stdout.read().decode()
    process.stdout.close()
    assert process.wait(timeout=60) == 1, output
    assert "Traceback" not in output
    assert output.strip().splitlines()[-1] == (
        "Error: cgroup containment was asked for but cannot be used: "
        "no cgroup v2 mount in /proc/self/mountinfo"
    )


def test_windows_is_refused_with_one_sentence() -> None:
    # click is imported first, as it would be on Windows; then the platform is Windows.
    code = (
        "import click, os, runpy, sys\n"
        "sys.platform = 'win32'; os.name = 'nt'\n"
        "sys.argv = ['processman', 'serve']\n"
        "runpy.run_module('processman', run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.decode().strip() == UNSUPPORTED
    assert result.stdout == b""


# ---- exit watching without pidfds -----------------------------------------------------------------


async def test_a_child_exit_is_seen_through_sigchld() -> None:
    portable = PortableBackend("test", use_kqueue=False)
    assert portable.exits == "SIGCHLD"
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    reaped: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def reap() -> None:
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        if pid and not reaped.done():
            reaped.set_result(status)

    watch = portable.watch(child.pid, reap, child=True)
    try:
        await asyncio.sleep(0)  # the first check runs at once, while it still runs
        assert not reaped.done()
        assert child.stdin is not None
        child.stdin.write(b"bye")
        child.stdin.close()
        status = await asyncio.wait_for(reaped, 10)
    finally:
        watch.cancel()
        child.returncode = 0
    assert os.waitstatus_to_exitcode(status) == 0
    # The handler is gone with the last watch: SIGCHLD is left as it was.
    assert signal.getsignal(signal.SIGCHLD) in (signal.SIG_DFL, None)


async def test_wait_for_exit_of_a_process_that_is_not_a_child(tmp_path: Path) -> None:
    portable = PortableBackend("test", use_kqueue=False)
    out = tmp_path / "grandchild"
    go = tmp_path / "go"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import os, subprocess, sys, time
                code = "import os, time\\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)"
                child = subprocess.Popen([sys.executable, "-c", code])
                open({str(out)!r}, "w").write(str(child.pid))
                child.wait()
                """
            ),
        ]
    )
    try:
        while not out.exists() or not out.read_text():
            await asyncio.sleep(0.01)
        grandchild = int(out.read_text())
        assert await portable.wait_for_exit([grandchild], 0.05) == {grandchild}
        go.write_text("")
        assert await portable.wait_for_exit([grandchild], 30) == set()
        assert not alive(grandchild)
    finally:
        parent.kill()
        parent.wait()


async def test_a_zombie_child_counts_as_exited() -> None:
    portable = PortableBackend("test", use_kqueue=False)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        assert await portable.wait_for_exit([child.pid], 30) == set()
        assert not alive(child.pid)  # a zombie: nobody has reaped it yet
    finally:
        child.wait()  # reaps the zombie at once


# ---- the engine on the portable backend (the second pass of scripts/test.sh) ---------------------


@pytest.mark.skipif(not PORTABLE, reason="runs in the portable pass (PROCESSMAN_BACKEND=portable)")
async def test_a_double_forked_setsid_daemon_is_found_by_its_tag_without_a_subreaper(
    manager_factory: Callable[..., ProcessManager], tmp_path: Path
) -> None:
    out = tmp_path / "daemon"
    manager = manager_factory(config("forker", DAEMON.format(out=str(out))), adopt_orphans=True)
    await manager.start()
    assert (manager.backend.name, manager.containment.name) == ("portable", "portable")
    daemon = int(await wait_for_path(out))
    forker = manager.state("forker").pid
    # Its own session, and not re-parented to the manager (no subreaper): only its tag says it is ours.
    assert os.getsid(daemon) not in (os.getsid(forker), os.getsid(0))
    assert psutil.Process(daemon).ppid() != os.getpid()
    assert daemon in tagged_processes(f"{manager.run_id}:forker")
    await manager.stop_process("forker")
    assert not alive(daemon)
