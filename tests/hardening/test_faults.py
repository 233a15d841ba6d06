"""Faults around the manager: killed mid-restart, a log folder that is full or read-only, PocketBase
stalling while logs are mirrored, the config replaced by garbage, a child's folder deleted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from click.testing import CliRunner

from processman import ProcessManager, Status
from processman.api import AdminToken, AnyOf, PocketBaseSuperuser
from processman.cli import main
from processman.engine.posix import GUARDIAN_NAME
from processman.logs import RotatingFile
from tests.api.conftest import POCKETBASE, serving
from tests.api.conftest import TOKEN as API_TOKEN
from tests.api.conftest import pocketbase as api_pocketbase
from tests.conftest import config, wait_until
from tests.hardening.conftest import Record, Scale, Serve, child, tagged, wait_for
from tests.pocketbase.conftest import PocketBase, sidecar

Factory = Callable[..., ProcessManager]

# Holds a TCP port for as long as it lives: a second copy of it could not start.
PORT_HOLDER = """
import socket, sys, time
server = socket.socket()
server.bind(("127.0.0.1", {port}))
server.listen()
print("holding", {port}, flush=True)
while True:
    time.sleep(1)
"""
TREE = """
import subprocess, sys, time
kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"]) for _ in range(5)]
print("tree up", flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize("guardian", ["guardian alive", "guardian killed too"])
def test_manager_killed_mid_restart_then_started_again(
    serve_factory: Callable[..., Serve], tmp_path: Path, guardian: str, figures: Record
) -> None:
    from tests.hardening.conftest import free_port

    port = free_port()
    processes = [
        child("flappy", "import time\ntime.sleep(0.05)", backoff="1ms", minUptime="0s"),
        child("holder", PORT_HOLDER.format(port=port)),
        child("tree", TREE),
    ]
    serve = serve_factory(processes)
    old_run = serve.run_id()
    wait_for(lambda: serve.states()["flappy"]["restartCount"] >= 5, 20, "flappy restarting")
    wait_for(lambda: "tree up" in serve.output(), 10, "the tree")
    old = tagged(f"{old_run}:")
    assert len(old) >= 7  # holder, tree and its 5, flappy (unless between runs)
    if guardian == "guardian killed too":
        guardians = [p for p in psutil.Process(serve.pid).children() if GUARDIAN_NAME in p.cmdline()]
        assert len(guardians) == 1
        os.kill(serve.pid, signal.SIGSTOP)  # so that it cannot start a new guardian
        guardians[0].kill()
    killed = time.monotonic()
    os.kill(serve.pid, signal.SIGKILL)
    assert serve.popen is not None
    serve.popen.wait()
    if guardian == "guardian alive":
        wait_for(lambda: not tagged(f"{old_run}:"), 5, "the guardian to clean up")
    else:
        assert len(tagged(f"{old_run}:")) >= 6  # nothing watched over them this time
    # Started again at once, on the same folder: it must neither refuse nor run anything twice.
    again = serve_factory(processes, data_dir=serve.data_dir)
    wait_for(lambda: not tagged(f"{old_run}:"), 10, "the old run's processes to go")
    cleaned = time.monotonic() - killed
    new_run = again.run_id()
    assert new_run != old_run
    wait_for(lambda: len(tagged(f"{new_run}:tree")) == 6, 15, "the new tree")
    wait_for(lambda: again.states()["holder"]["status"] == "running", 15, "the new holder")
    assert len(tagged(f"{new_run}:holder")) == 1
    assert again.output().count("Address already in use") == 0
    what = "the guardian" if guardian == "guardian alive" else "the next start (run.json)"
    figures(f"SIGKILL mid-restart, {guardian}: old processes removed by {what} after", f"{cleaned:.2f} s")


# ---- the log folder ------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, *options: str) -> Iterator[Path]:
    """A small real filesystem of our own: full and read-only are states of it, not of the machine."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI and the dev machines run as root)")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(("size=1m", *options)), "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, *options: str) -> None:
    subprocess.run(["mount", "-o", ",".join(("remount", *options)), str(path)], check=True)


WRITER = """
import itertools, sys, time
for i in itertools.count():
    sys.stdout.write("%099d\\n" % i)
    if i % 50 == 0:
        sys.stdout.flush()
        time.sleep(0.005)
"""


async def test_a_full_log_folder_loses_only_the_file_copy_and_recovers(
    manager_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, figures: Record
) -> None:
    monkeypatch.setattr(RotatingFile, "RETRY_AFTER", 0.3)  # the production pause is 5 s
    state = tmp_path / "state"
    with tmpfs(state / "logs"):
        manager = manager_factory(config("writer", WRITER), state_dir=state)
        await manager.start()
        output = manager._get("writer").output  # the counters of the files
        log = state / "logs" / "writer.out.log"
        await wait_until(manager, lambda: output.dropped_file_bytes > 0, what="the disk to fill")
        assert log.stat().st_size > 900_000
        pid = manager.state("writer").pid
        remount(state / "logs", "size=64m")  # space again
        size = log.stat().st_size
        await wait_until(manager, lambda: log.stat().st_size > size + 100_000, what="writing to resume")
        await manager.stop_process("writer")
        written = int(manager.logs("writer", 1)[-1].content) + 1  # lines "%099d\n" from 0
        on_disk = log.stat().st_size
        dropped = output.dropped_file_bytes
        # Every byte is either in the file or counted as dropped; the child never noticed.
        assert on_disk + dropped == written * 100, (on_disk, dropped, written)
        state_ = manager.state("writer")
        assert state_.restart_count == 0 and state_.exits[-1].reason.startswith("killed by signal 15")
        assert pid != 0
    figures(
        "log folder full: lost", f"{dropped} bytes of the file copy (counted); memory and child unaffected"
    )


async def test_a_read_only_log_folder_keeps_output_in_memory_then_files_resume(
    manager_factory: Factory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(RotatingFile, "RETRY_AFTER", 0.3)
    state = tmp_path / "state"
    with tmpfs(state / "logs", "ro"):
        manager = manager_factory(config("writer", WRITER), state_dir=state)
        await manager.start()
        output = manager._get("writer").output
        await wait_until(manager, lambda: output.dropped_file_bytes > 100_000, what="writes refused")
        assert len(manager.logs("writer", 1000)) == 1000  # memory has the lines
        warnings = [r.getMessage() for r in caplog.records if "cannot write log file" in r.getMessage()]
        assert warnings and "Read-only file system" in warnings[0]
        assert len(warnings) <= 4, "the warning repeats at most once per retry period"
        remount(state / "logs", "rw")
        log = state / "logs" / "writer.out.log"
        await wait_until(manager, lambda: log.exists() and log.stat().st_size > 100_000, what="files resume")
        assert manager.state("writer").status is Status.RUNNING
        await manager.stop_process("writer")


# ---- PocketBase stalls while logs are mirrored ---------------------------------------------------

CHATTY = """
import itertools, time
for i in itertools.count():
    print(f"mirror line {i}", flush=(i % 20 == 0))
    if i % 20 == 0:
        time.sleep(0.01)
"""


@pytest.mark.pocketbase
def test_pocketbase_stalls_while_logs_are_mirrored_and_comes_back(
    tmp_path: Path, scale: Scale, figures: Record
) -> None:
    """PocketBase stops answering (a pause, a hung disk) while a sidecar writes 2,000 lines a second.
    The sidecar never notices; what PocketBase could not take is counted in its log; every line
    PocketBase got plus every line counted adds up to every line written; the files have them all."""
    stall = scale.pick(3.0, 30.0)
    app = PocketBase(tmp_path / "pb")
    lines = 'data.process = "chatty"'
    try:
        app.install([sidecar("chatty", CHATTY)])
        app.start()
        pid = app.wait_running("chatty")["chatty"]["pid"]
        wait_for(lambda: app.log_count(lines) > 100, 15, "lines in PocketBase's logs")
        app.signal(signal.SIGSTOP)
        time.sleep(stall)
        app.signal(signal.SIGCONT)
        assert app.wait_running("chatty")["chatty"]["pid"] == pid  # the sidecar never noticed
        stopped = app.http.post("/api/pm/chatty/stop", headers=app.superuser())
        assert stopped.status_code == 200, stopped.text
        # processman's own file is the complete record.
        logged = (app.data_dir / "processman" / "logs" / "chatty.out.log").read_text().splitlines()
        assert [int(line.split()[-1]) for line in logged] == list(range(len(logged)))

        def accounted() -> tuple[int, int] | None:
            got = app.log_count(lines)
            counted = sum(int(w["data"]["notMirrored"]) for w in app.logs('message ~ "were not copied"'))
            return (got, counted) if got + counted >= len(logged) else None

        got, counted = wait_for(accounted, 30, "every line mirrored or counted", interval=0.5)
        assert got <= len(logged), "lines were mirrored twice"
        figures(
            f"PocketBase stopped {stall:.0f} s while mirroring 2,000 lines/s",
            f"{got} of {len(logged)} lines reached it, {counted} counted as not copied, "
            "0 missing from the files",
        )
    finally:
        app.close()


# ---- the config file -----------------------------------------------------------------------------

GARBAGE = [
    b'[{"id": "a", "command": "sleep", "args": ["3600"]',  # cut short while being written
    bytes(range(256)) * 4,
    b'{"processes": "all of them"}',
    b'[{"id": "a", "command": "sleep", "args": ["3600"], "backoff": "soon"}, 7]',
]


def test_the_config_replaced_by_garbage_while_running_changes_nothing(
    serve_factory: Callable[..., Serve],
) -> None:
    """serve applies changes to its config file. Garbage written over it (in place, in two parts, as an
    editor or a careless script would) is refused each time and changes nothing; the next good file is
    applied."""
    sleeper = {"command": "sleep", "args": ["3600"]}
    serve = serve_factory([{"id": "a", **sleeper}, {"id": "b", **sleeper}])
    before = {pid: state["pid"] for pid, state in serve.states().items()}
    for refused, garbage in enumerate(GARBAGE, start=1):
        with serve.config_path.open("wb") as file:
            file.write(garbage[: len(garbage) // 2])
            file.flush()
            time.sleep(0.05)
            file.write(garbage[len(garbage) // 2 :])

        def refused_so_far(count: int = refused) -> bool:
            return serve.output().count("config changed but not applied") >= count

        wait_for(refused_so_far, 10, f"garbage {refused} to be refused")
        states = serve.states()
        assert {pid: state["pid"] for pid, state in states.items()} == before
        assert all(state["status"] == "running" for state in states.values())
        check = CliRunner().invoke(main, ["check", "--config", str(serve.config_path)])
        assert check.exit_code == 1, check.output
        assert check.exception is None or isinstance(check.exception, SystemExit), check.exception
        assert re.search(r"(line \d+ column \d+|expected|cannot be read)", check.output), check.output
    serve.config_path.write_text(json.dumps([{"id": "a", **sleeper}, {"id": "c", **sleeper}]))
    wait_for(lambda: set(serve.states()) == {"a", "c"}, 10, "the good file to be applied")
    wait_for(lambda: serve.states()["c"]["status"] == "running", 10, "c running")
    assert serve.states()["a"]["pid"] == before["a"]  # unchanged entries are left alone
    assert "Traceback" not in serve.output()


# ---- a child's folder deleted ----------------------------------------------------------------------


async def test_a_childs_folder_deleted_while_it_runs(manager_factory: Factory, tmp_path: Path) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    manager = manager_factory(
        config("homeless", "import time\ntime.sleep(3600)", cwd=folder, dev_mode=True, backoff=0.05)
    )
    await manager.start()
    pid = manager.state("homeless").pid
    shutil.rmtree(folder)
    await asyncio.sleep(0.2)
    assert manager.state("homeless").pid == pid  # it runs on in its deleted folder
    await manager.restart_process("homeless")
    await wait_until(
        manager, lambda: "does not exist" in manager.state("homeless").last_error, what="a spawn error"
    )
    state = manager.state("homeless")
    assert state.status in (Status.CRASHED, Status.STARTING)
    assert f"working directory {folder} does not exist" in state.last_error
    folder.mkdir()
    await wait_until(
        manager, lambda: manager.state("homeless").status is Status.RUNNING, what="running again"
    )
    await manager.stop_process("homeless")


@pytest.mark.pocketbase
async def test_pocketbase_goes_away_and_comes_back_for_token_checks(
    manager_factory: Factory, tmp_path: Path
) -> None:
    """``serve --pocketbase-url``: superuser tokens are checked with PocketBase. While it is gone they
    get 503 (the admin token still works); once it is back they work again, with nothing restarted."""
    manager = manager_factory(config("web", "import time\ntime.sleep(3600)"))
    await manager.start()
    with api_pocketbase(tmp_path) as app:
        authenticator = AnyOf(AdminToken(API_TOKEN), PocketBaseSuperuser(app.url))
        async with (
            serving(manager, authenticator) as service,
            httpx.AsyncClient(timeout=15) as client,
        ):
            # A second superuser: its token has never been checked, so no verdict of it is cached (a
            # second sign-in of the first one within the same second would give the same token).
            second = {"email": "second@example.com", "password": "S3cond!pass"}
            made = await client.post(
                f"{app.url}/api/collections/_superusers/records",
                json={**second, "passwordConfirm": second["password"]},
                headers={"Authorization": app.superuser_token},
            )
            assert made.status_code == 200, made.text
            login = {"identity": second["email"], "password": second["password"]}
            answer = await client.post(
                f"{app.url}/api/collections/_superusers/auth-with-password", json=login
            )
            unused = answer.json()["token"]

            async def status(token: str) -> int:
                headers = {"Authorization": token}
                return (await client.get(f"{service.url}/api/pm/list", headers=headers)).status_code

            assert await status(app.superuser_token) == 200
            app.process.kill()
            app.process.wait()
            assert await status(unused) == 503
            assert await status(f"Bearer {API_TOKEN}") == 200
            again = subprocess.Popen(
                [
                    str(POCKETBASE),
                    "serve",
                    "--http",
                    app.url.removeprefix("http://"),
                    "--dir",
                    str(tmp_path / "pb_data"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                async with asyncio.timeout(20):
                    while True:
                        with contextlib.suppress(httpx.TransportError):
                            if (await client.get(f"{app.url}/api/health")).status_code == 200:
                                break
                        await asyncio.sleep(0.05)
                assert await status(unused) == 200
            finally:
                again.terminate()
                again.wait(10)
    assert manager.state("web").restart_count == 0
