"""``processman serve`` as PID 1 of a real PID namespace, as in a container (``unshare --pid --fork
--mount-proc``, which needs root): orphaned grandchildren are reaped, SIGTERM (``docker stop``) stops every
tree with its grace, and a stop asked for by SIGTERM exits 0. And the example container that runs it so:
no docker engine here, so its Dockerfile is linted (hadolint), parsed (the official parser) and its COPYs
replayed into a folder where ``processman check`` must pass the config it ships."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import dockerfile
import pytest

from processman.cli.startup import stop_budget
from processman.config import load_config
from processman.pocketbase.install import install
from tests.conftest import free_port, python_entry, wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "examples" / "container" / "Dockerfile"
POCKETBASE = Path(sys.executable).parent / "pocketbase"

needs_namespace = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a PID namespace needs root and unshare(1)",
)

ORPHANS = 20

# Forks ORPHANS times; each child forks a grandchild and exits at once, so the grandchild is an orphan
# that PID 1 adopts. The grandchild waits until it has been adopted, writes "its pid, its new parent" and
# exits: a zombie of PID 1 until PID 1 reaps it. One more orphan lives on and, like the sidecar itself,
# writes a file when SIGTERM comes (the stop's grace), not when the namespace dies (SIGKILL).
SPAWNER = """
import os, signal, sys, time
out = sys.argv[1]

def on_term(name):
    def handler(signum, frame):
        with open(os.path.join(out, name), "w") as f:
            f.write("graceful")
        os._exit(0)
    return handler

def orphan(body):
    if os.fork() == 0:
        middle = os.getpid()
        if os.fork() == 0:
            while os.getppid() == middle:
                time.sleep(0.01)  # until the middle child is gone and this one adopted
            body()
        os._exit(0)
    os.wait()

def report():
    with open(os.path.join(out, "orphans"), "a") as f:
        f.write(f"{os.getpid()} {os.getppid()}\\n")
    os._exit(0)

def live_on():
    signal.signal(signal.SIGTERM, on_term("orphan-stopped"))
    with open(os.path.join(out, "orphan-ready"), "w") as f:
        f.write(str(os.getpid()))
    while True:
        signal.pause()

signal.signal(signal.SIGTERM, on_term("sidecar-stopped"))
for _ in range(ORPHANS):
    orphan(report)
orphan(live_on)
while True:
    signal.pause()
""".replace("ORPHANS", str(ORPHANS))


class Namespace:
    """``processman serve`` as PID 1 of a new PID namespace. ``init`` is its pid seen from here."""

    def __init__(self, popen: subprocess.Popen[bytes], output: Path) -> None:
        self.popen = popen
        self.output = output
        self.init = wait_for(self._init_pid, 10, "the namespace's PID 1")

    def _init_pid(self) -> int | None:
        for children in Path(f"/proc/{self.popen.pid}/task").glob("*/children"):
            pids = children.read_text().split()
            if pids:
                return int(pids[0])
        if self.popen.poll() is not None:
            raise AssertionError(f"unshare exited with {self.popen.returncode}: {self.log()}")
        return None

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def members(self) -> dict[int, tuple[int, str]]:
        """Each process of the namespace: its pid inside -> (its pid here, its state letter)."""
        found = {}
        own = os.readlink(f"/proc/{self.init}/ns/pid")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns/pid") != own:
                    continue
                status = dict(
                    line.split(":", 1) for line in (entry / "status").read_text().splitlines() if ":" in line
                )
                inner = int(status["NSpid"].split()[-1])
                found[inner] = (int(entry.name), status["State"].split()[0])
        return found

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"PID 1 did not exit within {timeout}s:\n{self.log()[-3000:]}") from None


@pytest.fixture
def run_as_pid1(tmp_path: Path) -> Iterator[Callable[..., Namespace]]:
    started: list[Namespace] = []

    def start(
        processes: list[dict[str, object]], *, prefix: tuple[str, ...] = (), pocketbase: bool = False
    ) -> Namespace:
        data_dir = tmp_path / "pb_data"
        data_dir.mkdir(exist_ok=True)
        (data_dir / "pb_processes.json").write_text(json.dumps(processes))
        if pocketbase:  # `pocketbase serve` with the hooks is PID 1; it starts the supervisor
            hooks = tmp_path / "pb_hooks"
            install(data_dir, hooks, python=sys.executable)
            port = str(free_port())
            serve = [str(POCKETBASE), "serve", "--http", f"127.0.0.1:{port}", "--dir", str(data_dir)]
            serve += ["--hooksDir", str(hooks)]
        else:
            serve = [sys.executable, "-m", "processman", "serve", "--dir", str(data_dir), "--http", "off"]
        output = tmp_path / "serve.out"
        with output.open("ab") as out:
            popen = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount-proc", *prefix, *serve],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        namespace = Namespace(popen, output)
        started.append(namespace)
        return namespace

    yield start
    for namespace in started:
        if namespace.popen.poll() is None:
            # The namespace ends with its PID 1: everything in it is killed by the kernel.
            with contextlib.suppress(ProcessLookupError):
                os.kill(namespace.init, signal.SIGKILL)
            namespace.popen.wait(10)
        if namespace.popen.stdin is not None:
            namespace.popen.stdin.close()


def orphans_reaped_then_graceful_stop(
    tmp_path: Path, namespace_of: Callable[[list[dict[str, object]]], Namespace], *, no_zombie: bool
) -> tuple[Namespace, dict[int, int], int]:
    """Runs the spawner under ``namespace_of``: waits until its orphans reported and were reaped, then
    sends SIGTERM to PID 1 and checks the grace. Returns the namespace, each orphan's adopter, the exit."""
    out = tmp_path / "out"
    out.mkdir()
    sidecar = python_entry("spawner", SPAWNER, args=["-u", "-c", textwrap.dedent(SPAWNER), str(out)])
    namespace = namespace_of([{**sidecar, "stopTimeout": "20s"}])
    reports = out / "orphans"
    lines = wait_for(
        lambda: reports.exists() and len(reports.read_text().splitlines()) == ORPHANS and reports.read_text(),
        30,
        f"{ORPHANS} orphans to report",
    ).splitlines()
    orphans = {int(pid): int(parent) for pid, parent in (line.split() for line in lines)}

    def reaped() -> bool:
        members = namespace.members()
        zombies = [pid for pid, (_, state) in members.items() if state == "Z"] if no_zombie else []
        return not set(orphans) & set(members) and not zombies

    wait_for(reaped, 10, "every orphan reaped" + (" and no zombie left" if no_zombie else ""))
    wait_for((out / "orphan-ready").exists, 10, "the long-lived orphan")

    os.kill(namespace.init, signal.SIGTERM)  # what `docker stop` sends
    code = namespace.wait()
    assert (out / "sidecar-stopped").read_text() == "graceful"
    assert (out / "orphan-stopped").read_text() == "graceful", "the adopted orphan got the stop signal too"
    return namespace, orphans, code


@needs_namespace
def test_pid1_reaps_orphans_and_stops_with_grace_on_sigterm(
    tmp_path: Path, run_as_pid1: Callable[..., Namespace]
) -> None:
    namespace, orphans, code = orphans_reaped_then_graceful_stop(tmp_path, run_as_pid1, no_zombie=True)
    assert set(orphans.values()) == {1}, "each orphan was adopted by PID 1, serve"
    assert "SIGTERM received" in namespace.log()
    assert code == 0, namespace.log()


@needs_namespace
def test_pocketbase_as_pid1_its_supervisor_reaps_and_stops_the_sidecars(
    tmp_path: Path, run_as_pid1: Callable[..., Namespace]
) -> None:
    """``pocketbase serve`` as PID 1 (its own SIGTERM handling, exit 0): the supervisor its hook starts
    is the subreaper of the sidecars, so their orphans are its to reap, not PocketBase's."""
    assert os.access(POCKETBASE, os.X_OK), f"{POCKETBASE} is missing: pip install -e '.[test]'"
    # PocketBase reaps none of its own children (where it finds xdg-open, a zombie stays), so only the
    # sidecars' orphans are looked at: serve as PID 1 (the example container) has no such gap.
    namespace, orphans, code = orphans_reaped_then_graceful_stop(
        tmp_path, lambda processes: run_as_pid1(processes, pocketbase=True), no_zombie=False
    )
    assert len(set(orphans.values())) == 1 and 1 not in orphans.values(), "adopted by the supervisor"
    assert code == 0, namespace.log()


HOLD_SIGTERM = """
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
sys.stdin.readline()
os.execv(sys.argv[1], sys.argv[1:])
"""


@needs_namespace
def test_a_sigterm_that_came_before_the_handlers_is_not_lost(
    tmp_path: Path, run_as_pid1: Callable[..., Namespace]
) -> None:
    """PID 1 ignores a signal whose handler is the default: serve holds SIGTERM pending (blocked) until
    its handler exists. Here PID 1 blocks it, gets it, then becomes serve, which must act on it."""
    sidecar = python_entry("sidecar", "import signal; signal.pause()")
    namespace = run_as_pid1([sidecar], prefix=(sys.executable, "-c", HOLD_SIGTERM))

    def sigterm_in(field: str) -> bool:
        status = Path(f"/proc/{namespace.init}/status").read_text()
        return bool(int(status.split(f"{field}:")[1].split()[0], 16) & (1 << (signal.SIGTERM - 1)))

    wait_for(lambda: sigterm_in("SigBlk"), 10, "PID 1 to block SIGTERM")
    os.kill(namespace.init, signal.SIGTERM)
    wait_for(lambda: sigterm_in("ShdPnd"), 10, "SIGTERM pending")
    assert namespace.popen.stdin is not None
    namespace.popen.stdin.write(b"go\n")
    namespace.popen.stdin.flush()
    code = namespace.wait()
    assert "SIGTERM received" in namespace.log()
    assert code == 0, namespace.log()


def test_the_example_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert os.access(hadolint, os.X_OK), f"{hadolint} is missing: pip install -e '.[test]'"
    done = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_example_container_runs_processman_as_pid1_with_what_it_copies(tmp_path: Path) -> None:
    commands = dockerfile.parse_file(str(DOCKERFILE))
    [entrypoint] = [command for command in commands if command.cmd == "ENTRYPOINT"]
    assert entrypoint.json, "the exec form: processman itself is PID 1, not /bin/sh"
    assert entrypoint.value[:2] == ("processman", "serve")
    assert not [command for command in commands if command.cmd == "CMD"]
    user = [command for command in commands if command.cmd == "USER"][-1]
    assert user.value[0].split(":")[0] not in ("root", "0")
    assert commands.index(user) < commands.index(entrypoint)

    # The COPYs, from the build context (the repository's root) into a folder standing for the image's /.
    image = tmp_path / "image"
    for command in commands:
        if command.cmd != "COPY":
            continue
        *sources, target = command.value
        for source in sources:
            origin = ROOT / source
            assert origin.exists(), f"COPY {source}: not in the repository"
            destination = image / target.lstrip("/")
            if target.endswith("/") or len(sources) > 1:
                destination /= origin.name
            destination.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, destination)
            else:
                shutil.copy(origin, destination)

    arguments = list(entrypoint.value)
    config = image / arguments[arguments.index("--config") + 1].lstrip("/")
    assert config.is_file(), "the config the entrypoint names is copied into the image"
    # What the config names (the scripts, pocketbase and node on the PATH) must be found where it runs.
    path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "processman",
            "check",
            "--config",
            str(config),
            "--dir",
            str(tmp_path / "pb_data"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": path},
    )
    assert done.returncode == 0, done.stderr
    # The grace the Dockerfile tells `docker stop` to give is what the config's stops need.
    budget = stop_budget(load_config(config).processes)
    assert f"docker stop -t {budget:.0f} " in DOCKERFILE.read_text()
