"""Containment: every descendant is found and stopped, whatever it does to hide.

Real programs that hide from the tag containment (a new process title wipes the environment, ``setsid``
leaves the process group, a non-dumpable process's environment cannot be read by another user), each
run by a real ``serve`` on both containments, in three scenarios: a stop, a SIGKILL of the manager (the
guardian cleans up), and a SIGKILL of manager and guardian followed by the next start on the same
folder. The tag containment's documented limits are marked ``xfail(strict=True)``: they must fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

import processman
from processman import ProcessConfig, ProcessManager, Status
from processman.config import expand_instances
from processman.engine import cgroups
from processman.engine.containment import ContainmentError, choose
from processman.engine.posix import GUARDIAN_NAME, TagScanner
from tests.conftest import TAGS, alive, config, free_port, wait_for, wait_until

CGROUPS = cgroups.find_mount() is not None and os.geteuid() == 0
needs_cgroups = pytest.mark.skipif(not CGROUPS, reason="needs cgroup v2 and root")

TAGS_LOSE_SETSID_UNTAGGED = (
    "tags: a descendant that leaves the process group (setsid) and drops PROCESSMAN_TAG is out of reach"
)
TAGS_LOSE_PROCESS_TITLE = (
    "tags: a new process title (setproctitle, redis) wipes the environment, so the tag is lost"
)
TAGS_LOSE_NON_DUMPABLE = (
    "tags: under a manager that is not root, a non-dumpable descendant's environment cannot be read"
)


@dataclass(frozen=True)
class Case:
    """A program that leaves a hidden descendant; ``escapee`` finds that descendant's pid."""

    name: str
    entry: Callable[[Path], dict[str, Any]]
    escapee: Callable[[Path], int | None]
    tags_limit: str | None  # why the tag containment cannot catch it (None: it can)
    needs: str | None = None  # a program that must be installed


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _python_entry(code: str) -> dict[str, Any]:
    return {"id": "hider", "command": sys.executable, "args": ["-c", textwrap.dedent(code)]}


def _untagged_setsid(tmp: Path) -> dict[str, Any]:
    # The grandchild drops the tag and leaves the session and the group: `env -u ... setsid -f`.
    grandchild = (
        f"import os, time; open({str(tmp / 'escapee')!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    )
    return _python_entry(f"""
        import subprocess, sys, time
        subprocess.run(["env", "-u", "PROCESSMAN_TAG", "setsid", "-f", sys.executable, "-c", {grandchild!r}])
        time.sleep(600)
        """)


def _setproctitle_setsid(tmp: Path) -> dict[str, Any]:
    grandchild = (
        "import os, time, setproctitle; os.setsid(); setproctitle.setproctitle('hidden worker'); "
        f"open({str(tmp / 'escapee')!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    )
    return _python_entry(f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {grandchild!r}])
        time.sleep(600)
        """)


def _redis_conf(tmp: Path) -> Path:
    conf = tmp / "redis.conf"
    conf.write_text(
        f"port {free_port()}\nbind 127.0.0.1\ndaemonize yes\npidfile {tmp / 'redis.pid'}\n"
        f'dir {tmp}\nsave ""\nappendonly no\nlogfile {tmp / "redis.log"}\n'
    )
    return conf


def _redis(tmp: Path) -> dict[str, Any]:
    # The shell stays, so the run goes on while the daemon lives, whatever the containment.
    script = f"redis-server {_redis_conf(tmp)} && exec sleep 600"
    return {"id": "hider", "command": "/bin/sh", "args": ["-c", script]}


def _redis_forking(tmp: Path) -> dict[str, Any]:
    conf = str(_redis_conf(tmp))
    return {
        "id": "hider",
        "command": "redis-server",
        "args": [conf],
        "type": "forking",
        "pidFile": str(tmp / "redis.pid"),
    }


def _ssh_agent(tmp: Path) -> dict[str, Any]:
    script = f"ssh-agent -a {tmp / 'agent.sock'} > {tmp / 'agent.out'} && exec sleep 600"
    return {"id": "hider", "command": "/bin/sh", "args": ["-c", script]}


def _agent_pid(tmp: Path) -> int | None:
    try:
        match = re.search(r"SSH_AGENT_PID=(\d+)", (tmp / "agent.out").read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


CASES = [
    Case(
        "untagged-setsid", _untagged_setsid, lambda tmp: _read_pid(tmp / "escapee"), TAGS_LOSE_SETSID_UNTAGGED
    ),
    Case(
        "setproctitle-setsid",
        _setproctitle_setsid,
        lambda tmp: _read_pid(tmp / "escapee"),
        TAGS_LOSE_PROCESS_TITLE,
    ),
    Case(
        "redis-daemonize",
        _redis,
        lambda tmp: _read_pid(tmp / "redis.pid"),
        TAGS_LOSE_PROCESS_TITLE,
        "redis-server",
    ),
    Case(
        "redis-forking",
        _redis_forking,
        lambda tmp: _read_pid(tmp / "redis.pid"),
        TAGS_LOSE_PROCESS_TITLE,
        "redis-server",
    ),
    Case("ssh-agent", _ssh_agent, _agent_pid, None, "ssh-agent"),
]
SCENARIOS = ["stop", "manager-killed", "next-start"]


def _params() -> Iterator[Any]:
    for case in CASES:
        for scenario in SCENARIOS:
            yield pytest.param(
                case, "cgroup", scenario, id=f"{case.name}-cgroup-{scenario}", marks=needs_cgroups
            )
            marks = [pytest.mark.xfail(strict=True, reason=case.tags_limit)] if case.tags_limit else []
            yield pytest.param(case, "tags", scenario, id=f"{case.name}-tags-{scenario}", marks=marks)


class Serve:
    """A real ``processman serve`` on a data folder, its output read line by line."""

    def __init__(
        self,
        data: Path,
        containment: str,
        prefix: list[str] | None = None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        env = dict(os.environ, **(env or {}), PROCESSMAN_CONTAINMENT=containment)
        command = [python, "-m", "processman", "serve", "--dir", str(data), "--http", "off"]
        self.process = subprocess.Popen(
            [*(prefix or []), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        self.lines: list[str] = []

    def wait_for_line(self, marker: str, timeout: float = 20.0) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if marker in line:
                    return line
            assert time.monotonic() < deadline, f"serve never said {marker!r}: {self.lines}"
            line = self.process.stdout.readline().decode()
            assert line, f"serve exited early: {self.lines}"
            self.lines.append(line)

    def guardian(self) -> psutil.Process:
        children = psutil.Process(self.process.pid).children()
        found = [child for child in children if GUARDIAN_NAME in child.cmdline()]
        assert len(found) == 1, children
        return found[0]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        assert self.process.stdout is not None
        self.process.stdout.close()


def _gone(pid: int, timeout: float) -> bool:
    try:
        wait_for(lambda: not alive(pid), timeout, f"pid {pid} to end")
    except AssertionError:
        return False
    return True


def _kill(pid: int | None) -> None:
    if pid is not None and alive(pid):
        os.kill(pid, signal.SIGKILL)


def _run_cgroup(data: Path) -> Path | None:
    try:
        recorded = json.loads((data / "processman" / "run.json").read_text()).get("cgroup")
    except (OSError, ValueError):
        return None
    return Path(recorded) if recorded else None


@pytest.mark.parametrize(("case", "containment", "scenario"), list(_params()))
def test_nothing_is_left(case: Case, containment: str, scenario: str, tmp_path: Path) -> None:
    if case.needs and shutil.which(case.needs) is None:
        pytest.skip(f"{case.needs} is not installed (scripts/test.sh installs it)")
    data = tmp_path / "data"
    data.mkdir()
    (data / "pb_processes.json").write_text(json.dumps([case.entry(tmp_path)]))
    serve = Serve(data, containment)
    escapee: int | None = None
    second: Serve | None = None
    try:
        # serve's start-up line says which (the tags containment is "portable" under that backend)
        serve.wait_for_line(f"containment: {TAGS if containment == 'tags' else containment} (")
        serve.wait_for_line("started pid")
        escapee = wait_for(lambda: case.escapee(tmp_path), 20, f"the {case.name} descendant")
        assert escapee is not None and alive(escapee)
        run_cgroup = _run_cgroup(data)
        if scenario == "stop":
            serve.stop()
            assert _gone(escapee, 5.0), f"{case.name}: pid {escapee} outlived the stop"
        elif scenario == "manager-killed":
            serve.kill()
            assert _gone(escapee, 2.0), f"{case.name}: pid {escapee} outlived the killed manager"
        else:
            serve.guardian().kill()
            serve.kill()
            assert alive(escapee)  # nothing watched over it this time
            second = Serve(data, containment)
            second.wait_for_line("started pid")
            assert _gone(escapee, 5.0), f"{case.name}: the next start left pid {escapee} running"
            second.stop()
        if run_cgroup is not None:
            assert wait_for(lambda: not run_cgroup.exists(), 5, "the run cgroup to be removed")
    finally:
        serve.close()
        if second is not None:
            second.close()
        _kill(escapee)
        _kill(case.escapee(tmp_path))  # the second run's, which the tag containment loses too
        _remove_cgroup(_run_cgroup(data))


@needs_cgroups
def test_a_killed_manager_with_many_processes_leaves_no_cgroup(tmp_path: Path) -> None:
    """The guardian removes the run cgroup after a SIGKILL of the manager even when its processes are
    still exiting as it first tries (with one process the first try is usually late enough)."""
    data = tmp_path / "data"
    data.mkdir()
    count = 100
    entries = [{"id": f"s{index}", "command": "sleep", "args": ["300"]} for index in range(count)]
    (data / "pb_processes.json").write_text(json.dumps(entries))
    serve = Serve(data, "cgroup")
    try:
        serve.wait_for_line("containment: cgroup (")
        run_cgroup = _run_cgroup(data)
        assert run_cgroup is not None
        wait_for(lambda: len(cgroups.members(run_cgroup)) == count, 20, f"{count} processes")
        serve.kill()
        assert wait_for(lambda: not run_cgroup.exists(), 5, "the run cgroup to be removed")
    finally:
        serve.close()
        _remove_cgroup(_run_cgroup(data))


def _remove_cgroup(path: Path | None) -> None:
    if path is not None and path.exists():
        cgroups.kill(path)
        wait_for(lambda: not cgroups.populated(path), 5, "the leftover cgroup to empty")
        cgroups.remove(path)


# ---- the unprivileged manager in a delegated cgroup ------------------------------------------------

NON_DUMPABLE_SETSID = """
import ctypes, os, subprocess, sys, time
grandchild = '''
import ctypes, os, time
os.setsid()
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: /proc/PID/environ is root's only
open(%r, "w").write(str(os.getpid()))
time.sleep(600)
'''
subprocess.Popen([sys.executable, "-c", grandchild])
time.sleep(600)
"""


@pytest.fixture
def delegated_cgroup() -> Iterator[Path]:
    """A cgroup chowned to nobody, as systemd's Delegate=yes does: the directory and the files that
    delegation hands over (cgroup.procs, cgroup.subtree_control, cgroup.threads)."""
    mount = cgroups.find_mount()
    assert mount is not None
    path = mount[0] / f"processman-test-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir()
    user = pwd.getpwnam("nobody")
    for target in (path, path / "cgroup.procs", path / "cgroup.subtree_control", path / "cgroup.threads"):
        os.chown(target, user.pw_uid, user.pw_gid)
    try:
        yield path
    finally:
        if cgroups.populated(path):
            cgroups.kill(path)
            wait_for(lambda: not cgroups.populated(path), 5, "the delegated cgroup to empty")
        cgroups.remove(path)


def _as_nobody_in(cgroup: Path) -> list[str]:
    # Enter the delegated cgroup as root, then drop to nobody: the manager starts inside it.
    return [
        "/bin/sh",
        "-c",
        'echo $$ > "$0/cgroup.procs" && exec setpriv --reuid nobody --regid nogroup --clear-groups "$@"',
        str(cgroup),
    ]


def _unprivileged_params() -> Iterator[Any]:
    for scenario in SCENARIOS:
        yield pytest.param("cgroup", scenario, id=f"cgroup-{scenario}")
        marks = [pytest.mark.xfail(strict=True, reason=TAGS_LOSE_NON_DUMPABLE)]
        yield pytest.param("tags", scenario, id=f"tags-{scenario}", marks=marks)


# nobody runs the system's Python 3.11 with this checkout and its virtualenv's packages on the path
# (the virtualenv's interpreter may live in a folder that nobody cannot enter).
NOBODY_PYTHON = "/usr/bin/python3"


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="processman-nobody-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@needs_cgroups
@pytest.mark.skipif(not os.path.exists(NOBODY_PYTHON), reason=f"needs {NOBODY_PYTHON}")
@pytest.mark.parametrize(("containment", "scenario"), list(_unprivileged_params()))
def test_unprivileged_manager_in_a_delegated_cgroup(
    containment: str, scenario: str, delegated_cgroup: Path, shared_folder: Path
) -> None:
    data = shared_folder / "data"
    data.mkdir()
    data.chmod(0o777)
    out = shared_folder / "escapee"
    entry = {"id": "hider", "command": NOBODY_PYTHON, "args": ["-c", NON_DUMPABLE_SETSID % str(out)]}
    (data / "pb_processes.json").write_text(json.dumps([entry]))
    paths = [str(Path(processman.__file__).parents[1]), *site.getsitepackages()]
    options: dict[str, Any] = {
        "prefix": _as_nobody_in(delegated_cgroup),
        "python": NOBODY_PYTHON,
        "env": {"PYTHONPATH": os.pathsep.join(paths)},
    }
    serve = Serve(data, containment, **options)
    escapee: int | None = None
    second: Serve | None = None
    try:
        serve.wait_for_line("started pid")
        escapee = wait_for(lambda: _read_pid(out), 20, "the non-dumpable descendant")
        assert escapee is not None and alive(escapee)
        assert psutil.Process(escapee).uids().real != 0
        if scenario == "stop":
            serve.stop()
            assert _gone(escapee, 5.0), f"pid {escapee} outlived it"
        elif scenario == "manager-killed":
            serve.kill()
            assert _gone(escapee, 2.0), f"pid {escapee} outlived the killed manager"
        else:
            serve.guardian().kill()
            serve.kill()
            assert alive(escapee)
            second = Serve(data, containment, **options)
            second.wait_for_line("started pid")
            assert _gone(escapee, 5.0), f"pid {escapee} outlived it"
            second.stop()
    finally:
        serve.close()
        if second is not None:
            second.close()
        _kill(escapee)
        _kill(_read_pid(out))  # the second run's, which the tag containment loses too


# ---- the pieces ------------------------------------------------------------------------------------


def test_the_cgroup2_mount_is_read_from_mountinfo(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 /ns /sys/fs/cgroup/my\\040unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n"
    )
    assert cgroups.find_mount(str(mountinfo)) == (Path("/sys/fs/cgroup/my unified"), "/ns")
    mountinfo.write_text("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n")
    assert cgroups.find_mount(str(mountinfo)) is None


def test_an_unknown_containment_is_refused() -> None:
    with pytest.raises(ContainmentError, match="expected one of auto, cgroup, tags, got 'jails'"):
        choose("run", TagScanner(), "jails")


def test_tags_when_asked_for() -> None:
    containment = choose("run", TagScanner(), None, {"PROCESSMAN_CONTAINMENT": "tags"})
    assert containment.name == TAGS


@needs_cgroups
def test_auto_takes_cgroups_here_and_makes_nothing_before_open() -> None:
    containment = choose("probe-run", TagScanner(), "auto")
    assert containment.name == "cgroup"
    assert containment.guardian_cgroup() is not None
    assert not Path(containment.guardian_cgroup() or "").exists()  # the write test left nothing


@needs_cgroups
async def test_a_stop_right_after_the_start_stops_a_child_not_yet_in_its_cgroup(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    # The wrapper enters the cgroup a moment after the spawn: the stop must not find an empty cgroup
    # and then wait forever for a child it never signalled.
    manager = manager_factory(config("quick", "import time; time.sleep(600)"), containment="cgroup")
    await manager.start()
    await asyncio.wait_for(manager.stop_process("quick"), 10)
    for _ in range(5):
        await manager.start_process("quick")
        await asyncio.wait_for(manager.stop_process("quick"), 10)
    assert manager.containment.name == "cgroup"


@needs_cgroups
async def test_resource_figures_count_the_members_that_lost_their_tag(
    manager_factory: Callable[..., ProcessManager], tmp_path: Path
) -> None:
    # The sampler finds a tree by its tag and group; the cgroup lists the rest.
    entry = _untagged_setsid(tmp_path)
    hider = ProcessConfig(id="hider", command=entry["command"], args=tuple(entry["args"]))
    manager = manager_factory(hider, containment="cgroup", metrics_interval=0.1)
    await manager.start()
    escapee = await asyncio.to_thread(wait_for, lambda: _read_pid(tmp_path / "escapee"), 20, "the escapee")
    assert alive(escapee)

    def counted() -> bool:
        usage = manager.state("hider")
        process = manager._processes["hider"]
        return usage.pid != 0 and process.usage is not None and process.usage.processes == 2

    await wait_until(manager, counted, what="both processes counted")


@needs_cgroups
async def test_a_cgroups_cpu_time_is_its_trees_even_for_processes_gone_before_the_sample(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    # A child that burns CPU and exits between two samples is in no /proc scan, but in its cgroup's
    # cpu.stat: the tree's CPU time is the cgroup's.
    spin = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"
    burst = f"""
import subprocess, sys, time
subprocess.run([sys.executable, "-c", {spin!r}])
print("burnt", flush=True)
time.sleep(600)
"""
    manager = manager_factory(config("burst", burst), containment="cgroup", metrics_interval=0)
    await manager.start()
    burnt = lambda: any(line.content == "burnt" for line in manager.logs("burst", 20))  # noqa: E731
    await wait_until(manager, burnt, what="the burst", timeout=20)
    await manager.resources.sample()
    seconds = manager.resources.cpu_seconds()["burst"]
    assert seconds >= 0.4, seconds


def test_a_cgroups_memory_is_read_where_the_memory_controller_is_on(tmp_path: Path) -> None:
    # This host's cgroup v2 has no memory controller: the files are made here as the kernel writes them.
    (tmp_path / "memory.current").write_text("1048576\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    assert cgroups.usage(tmp_path) == (1048576, 2.5)
    (tmp_path / "memory.current").unlink()  # no memory controller: memory comes from /proc
    assert cgroups.usage(tmp_path) == (None, 2.5)


@needs_cgroups
async def test_process_ids_that_read_alike_get_cgroups_of_their_own(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    # "web:0" (instance 0 of "web") and "web-0" are two processes; "cpu.stat" is an id, not a file.
    sleeper = "import time; time.sleep(600)"
    configs = [*expand_instances(config("web", sleeper, instances=1)), config("web-0", sleeper)]
    manager = manager_factory(*configs, config("cpu.stat", sleeper), containment="cgroup")
    await manager.start()
    assert [manager.state(i).status for i in ("web:0", "web-0", "cpu.stat")] == [Status.RUNNING] * 3
    web = manager.state("web:0").pid
    await manager.stop_process("web-0")
    assert manager.state("web:0").pid == web and alive(web) and not manager.state("web:0").exits


@needs_cgroups
async def test_a_stop_at_once_after_the_start_escalates_whatever_the_stop_signal(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    # SIGWINCH (httpd's graceful stop) is ignored by the /bin/sh wrapper that has not entered the
    # cgroup yet and by the program: the ladder must still end with SIGKILL after stopTimeout.
    sleeper = config("winch", "import time; time.sleep(600)", stop_signal="SIGWINCH", stop_timeout=0.3)
    manager = manager_factory(sleeper, containment="cgroup")
    await manager.start()
    for _ in range(5):
        async with asyncio.timeout(10):
            await manager.stop_process("winch")
        assert manager.state("winch").status is Status.STOPPED
        await manager.start_process("winch")


SECOND_MANAGER = """
import asyncio, sys
from pathlib import Path
from processman import ManagerOptions, ProcessConfig, ProcessManager
from processman.errors import AlreadyRunningElsewhere

async def main() -> None:
    web = ProcessConfig(id="web", command=sys.executable, args=("-c", "import time; time.sleep(600)"))
    manager = ProcessManager([web], ManagerOptions(state_dir=Path(sys.argv[1]), containment="cgroup"))
    for _ in range(2):  # refused again, not "started" silently
        try:
            await manager.start()
        except AlreadyRunningElsewhere:
            print("refused", flush=True)
    await manager.close()

asyncio.run(main())
"""


@needs_cgroups
async def test_a_start_refused_for_a_folder_in_use_leaves_nothing_and_can_be_retried(
    manager_factory: Callable[..., ProcessManager], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = manager_factory(
        config("web", "import time; time.sleep(600)"), containment="cgroup", state_dir=state
    )
    await first.start()
    own = cgroups.own_cgroup_path()
    before = sorted(path.name for path in own.iterdir() if path.name.startswith(cgroups.RUN_PREFIX))
    second = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SECOND_MANAGER,
        str(state),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(second.communicate(), 30)
    assert out.decode().split() == ["refused", "refused"], err.decode()[-2000:]
    after = sorted(path.name for path in own.iterdir() if path.name.startswith(cgroups.RUN_PREFIX))
    assert after == before, "the refused start left its run cgroup"
