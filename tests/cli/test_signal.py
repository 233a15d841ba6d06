"""Signals: ``processman signal ID SIGNAL`` against a real ``serve`` (a real gunicorn reloads its workers on
HUP), ``POST /api/pm/{id}/signal`` refusals, and ``stopSignal``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from processman import ProcessConfig, ProcessManager
from processman.engine.manager import parse_signal
from processman.errors import SignalRefused
from tests.api.conftest import free_port
from tests.conftest import config, wait_for, wait_for_path, wait_until

WSGI_APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
"""

# Writes which signal stopped it, then exits.
CATCHER = """
import signal, sys, time
def caught(number, frame):
    open({out!r}, "w").write(signal.Signals(number).name)
    sys.exit(0)
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
    signal.signal(sig, caught)
print("waiting", flush=True)
while True:
    time.sleep(1)
"""


def _gunicorn() -> str | None:
    beside = Path(sys.executable).parent / "gunicorn"
    return str(beside) if beside.exists() else shutil.which("gunicorn")


@dataclass
class Served:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    web_port: int

    @property
    def token(self) -> str:
        return (self.data_dir / "processman" / "token").read_text().strip()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PROCESSMAN_URL": self.url, "PROCESSMAN_TOKEN": self.token}
        return subprocess.run(
            [sys.executable, "-m", "processman", *args], capture_output=True, text=True, env=env, timeout=60
        )

    def state(self, process_id: str) -> dict[str, object]:
        answer = httpx.get(f"{self.url}/api/pm/list", headers={"Authorization": f"Bearer {self.token}"})
        return next(state for state in answer.json() if state["id"] == process_id)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    gunicorn = _gunicorn()
    if gunicorn is None:
        pytest.skip("gunicorn is not installed (scripts/test.sh installs it)")
    root = tmp_path_factory.mktemp("signal")
    (root / "wsgi_app.py").write_text(WSGI_APP)
    data_dir = root / "pb_data"
    data_dir.mkdir()
    web_port = free_port()
    processes = [
        {
            "id": "web",
            "command": gunicorn,
            "args": ["-w", "2", "-b", f"127.0.0.1:{web_port}", "wsgi_app:app"],
            "cwd": str(root),
        },
        {"id": "idle", "command": sys.executable, "args": ["-c", "import time; time.sleep(3600)"]},
    ]
    (data_dir / "pb_processes.json").write_text(json.dumps(processes))
    port = free_port()
    environ = {key: value for key, value in os.environ.items() if key != "PROCESSMAN_TOKEN"}
    process = subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(data_dir), "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environ,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/api/health", timeout=1).status_code == 200
        except httpx.TransportError:
            assert process.poll() is None, "processman serve exited"
            return False

    try:
        wait_for(up, 20, "processman serve")
        yield Served(url, data_dir, process, web_port)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _workers(master: int) -> set[int]:
    try:
        return {child.pid for child in psutil.Process(master).children()}
    except psutil.NoSuchProcess:
        return set()


def _two_workers(master: int, besides: frozenset[int] | set[int] = frozenset()) -> set[int] | None:
    """The master's two workers, when it has two and neither is in ``besides``."""
    workers = _workers(master)
    return workers if len(workers) == 2 and not workers & besides else None


def test_gunicorn_reloads_its_workers_on_hup(served: Served) -> None:
    master = wait_for(lambda: served.state("web").get("pid"), 20, "gunicorn to run")
    assert isinstance(master, int)
    old = wait_for(lambda: _two_workers(master), 20, "2 workers")
    wait_for(
        lambda: httpx.get(f"http://127.0.0.1:{served.web_port}/").text == "hello", 20, "gunicorn answers"
    )
    result = served.cli("signal", "web", "HUP")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "web: SIGHUP sent to 1 process(es)"
    new = wait_for(lambda: _two_workers(master, besides=old), 30, "two new workers")
    assert new.isdisjoint(old)
    assert served.state("web")["pid"] == master, "the same master"
    assert served.state("web")["restartCount"] == 0


def test_sigkill_and_sigstop_are_refused_without_force(served: Served) -> None:
    headers = {"Authorization": f"Bearer {served.token}"}
    for name in ("KILL", "SIGSTOP"):
        answer = httpx.post(f"{served.url}/api/pm/idle/signal", json={"signal": name}, headers=headers)
        assert answer.status_code == 400
        assert "bypasses the stop ladder" in answer.json()["message"]
    unknown = httpx.post(f"{served.url}/api/pm/idle/signal", json={"signal": "SIGNOPE"}, headers=headers)
    assert unknown.status_code == 400 and "unknown signal 'SIGNOPE'" in unknown.json()["message"]
    bad = httpx.post(
        f"{served.url}/api/pm/idle/signal", json={"signal": "HUP", "tree": "yes"}, headers=headers
    )
    assert bad.status_code == 400
    missing = httpx.post(f"{served.url}/api/pm/nobody/signal", json={"signal": "HUP"}, headers=headers)
    assert missing.status_code == 404
    refused = served.cli("signal", "idle", "KILL")
    assert refused.returncode != 0 and "bypasses the stop ladder" in refused.stderr


def test_a_forced_sigkill_with_tree_reaches_every_member(served: Served) -> None:
    pid = served.state("idle")["pid"]
    result = served.cli("signal", "idle", "SIGKILL", "--tree", "--force")
    assert result.returncode == 0, result.stderr
    assert "SIGKILL sent to 1 process(es)" in result.stdout
    wait_for(lambda: served.state("idle")["pid"] not in (0, pid), 20, "idle to be restarted")


def test_signal_all_reaches_every_running_process(served: Served) -> None:
    result = served.cli("signal", "all", "WINCH")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:2]) == [
        "idle: SIGWINCH sent to 1 process(es)",
        "web: SIGWINCH sent to 1 process(es)",
    ]


def test_signal_names() -> None:
    assert parse_signal("hup") is signal.SIGHUP
    assert parse_signal("SIGUSR1") is signal.SIGUSR1
    assert parse_signal("KILL", force=True) is signal.SIGKILL
    with pytest.raises(SignalRefused, match="bypasses the stop ladder"):
        parse_signal("sigstop")


# ---- stopSignal ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop_signal", ["SIGINT", "QUIT", None])
async def test_stop_sends_the_stop_signal(
    manager_factory: Callable[..., ProcessManager], tmp_path: Path, stop_signal: str | None
) -> None:
    out = tmp_path / "caught"
    fields = {} if stop_signal is None else {"stop_signal": stop_signal}
    catcher: ProcessConfig = config("catcher", textwrap.dedent(CATCHER).format(out=str(out)), **fields)
    manager = manager_factory(catcher)
    await manager.start()
    await wait_until(
        manager, lambda: any(line.content == "waiting" for line in manager.logs("catcher")), what="waiting"
    )
    await manager.stop_process("catcher")
    assert await wait_for_path(out) == {"SIGINT": "SIGINT", "QUIT": "SIGQUIT", None: "SIGTERM"}[stop_signal]
    assert manager.state("catcher").exits[-1].returncode == 0, "its handler ended it, not SIGKILL"
