"""The hardening suite: processman against misbehaving children, load, faults and hostile input.

Every test runs by default with scaled-down figures so the suite stays fast; ``--soak`` runs the same
tests with the full figures (minutes of restart storms, 1 GB of output, 10,000 restarts). Nothing is
skipped without ``--soak``: the short variant runs instead.

Measured figures are collected with the ``figures`` fixture and printed at the end of the run
(``docs/reliability.md`` quotes them).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from processman.environment import TAG_VARIABLE
from tests.conftest import free_port as free_port
from tests.conftest import python_entry
from tests.conftest import wait_for as wait_for

child = python_entry  # a config entry that runs Python code in this interpreter

TOKEN = "hardening-token-0123456789abcdefghijklmnopqrstuvwxyz"
SOAK_TIMEOUT = 1800  # seconds per test with --soak
_FIGURES = pytest.StashKey[list[tuple[str, str]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="hardening tests: run the full-size variants (minutes, 1 GB, 10,000 restarts)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FIGURES] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("soak"):
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.timeout(SOAK_TIMEOUT))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash.get(_FIGURES, [])
    if not figures:
        return
    mode = "soak" if config.getoption("soak") else "default"
    terminalreporter.section(f"hardening figures ({mode} run)")
    width = max(len(name) for name, _ in figures)
    for name, value in figures:
        terminalreporter.write_line(f"{name.ljust(width)}  {value}")


@dataclass(frozen=True)
class Scale:
    """The figures a test runs with: the short default, or the full ones with ``--soak``."""

    soak: bool

    def pick(self, default: Any, soak: Any) -> Any:
        return soak if self.soak else default


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> Scale:
    return Scale(bool(request.config.getoption("soak")))


Record = Callable[[str, str], None]


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Record:
    """``figures(name, value)`` records a measured figure for the end-of-run summary."""
    collected = request.config.stash[_FIGURES]

    def record(name: str, value: str) -> None:
        collected.append((name, value))
        print(f"\n[figure] {name}: {value}")

    return record


# ---- children ------------------------------------------------------------------------------------


def tagged(prefix: str) -> list[psutil.Process]:
    """Live processes whose PROCESSMAN_TAG starts with ``prefix``."""
    found = []
    for process in psutil.process_iter(["environ", "status"]):
        try:
            env = process.info["environ"] or {}
            if env.get(TAG_VARIABLE, "").startswith(prefix) and process.info["status"] != "zombie":
                found.append(process)
        except (psutil.Error, KeyError):
            continue
    return found


# ---- a real `processman serve` ---------------------------------------------------------------------


@dataclass
class Usage:
    """The manager's own resources at one moment (its children are not counted)."""

    rss: int
    cpu: float  # user + system seconds so far
    fds: int
    threads: int

    @property
    def rss_mb(self) -> float:
        return self.rss / 1024 / 1024


@dataclass
class Serve:
    """``processman serve`` as a separate process with its HTTP API on a free 127.0.0.1 port."""

    data_dir: Path
    processes: list[dict[str, Any]]
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output_path(self) -> Path:
        return self.data_dir / "serve.out"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "pb_processes.json"

    def start(self, *, wait: bool = True) -> Serve:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            self.config_path.write_text(json.dumps(self.processes))
        env = {**os.environ, "PROCESSMAN_TOKEN": TOKEN, **self.env}
        command = [sys.executable, "-m", "processman", "serve", "--dir", str(self.data_dir)]
        command += ["--http", f"127.0.0.1:{self.port}", *self.extra_args]
        with self.output_path.open("ab") as out:
            self.popen = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        if wait:
            wait_for(self._answers, 30, f"processman serve on {self.url}")
        return self

    def _answers(self) -> bool:
        assert self.popen is not None
        if self.popen.poll() is not None:
            raise AssertionError(f"serve exited with {self.popen.returncode}:\n{self.output()}")
        try:
            return httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def output(self) -> str:
        return self.output_path.read_text(errors="replace") if self.output_path.exists() else ""

    def client(self, **options: Any) -> httpx.Client:
        options.setdefault("timeout", 30)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        return httpx.Client(base_url=self.url, headers=headers, trust_env=False, **options)

    def states(self) -> dict[str, dict[str, Any]]:
        with self.client() as client:
            response = client.get("/api/pm/list")
        assert response.status_code == 200, response.text
        return {state["id"]: state for state in response.json()}

    def run_id(self) -> str:
        run = json.loads((self.data_dir / "processman" / "run.json").read_text())
        run_id: str = run["runId"]
        return run_id

    def usage(self) -> Usage:
        process = psutil.Process(self.pid)
        with process.oneshot():
            times = process.cpu_times()
            return Usage(
                rss=process.memory_info().rss,
                cpu=times.user + times.system,
                fds=process.num_fds(),
                threads=process.num_threads(),
            )

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"serve did not stop within {timeout}s:\n{self.output()[-3000:]}") from None

    def kill(self) -> None:
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


@pytest.fixture
def serve_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Serve]]:
    """Starts ``processman serve`` processes; each is stopped at the end and must leave nothing."""
    made: list[tuple[Serve, str | None]] = []

    def make(processes: list[dict[str, Any]], **options: Any) -> Serve:
        options.setdefault("data_dir", tmp_path_factory.mktemp("serve") / "pb_data")
        wait = options.pop("wait", True)
        serve = Serve(processes=processes, **options).start(wait=wait)
        run_id = None
        with contextlib.suppress(OSError, ValueError, KeyError):
            run_id = serve.run_id()
        made.append((serve, run_id))
        return serve

    yield make
    for serve, run_id in made:
        assert serve.popen is not None
        if serve.popen.poll() is None:
            serve.stop()
        if run_id is not None:
            prefix = f"{run_id}:"
            wait_for(lambda: not tagged(prefix), 5, f"no process of run {run_id} left")  # noqa: B023
