"""Shared fixtures of the dashboard tests: a real ``processman serve`` with real children, and a real
headless Chromium (Debian's ``chromium``; Playwright drives it, it never downloads a browser).

Chromium may not reach anything beyond 127.0.0.1: host names do not resolve, any other address goes to
a dead proxy, and every page records the requests it makes so a test can prove it stayed local.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from processman.api.sse import EventParser
from tests.conftest import free_port as free_port
from tests.conftest import python_entry

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Nothing beyond loopback: no name resolves, and any other address meets a closed proxy port.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
]
TOKEN = "dashboard-test-token"
LOCAL_HOSTS = {"127.0.0.1"}


python = python_entry  # a config entry that runs Python code in this interpreter


class Server:
    """``processman serve`` in a child process, its output drained by a thread (so the pipe never fills
    and blocks it) and kept for failure messages."""

    def __init__(self, folder: Path, processes: list[dict[str, Any]], *, port: int = 0, token: str = TOKEN):
        self.folder = folder
        self.config = folder / "pb_processes.json"
        self.config.write_text(json.dumps(processes))
        self.token = token
        self.port = port
        self.url = ""
        self.lines: list[str] = []
        self._new_lines: queue.Queue[str | None] = queue.Queue()
        self.process: subprocess.Popen[str] | None = None
        self._drainer: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> Server:
        env = {**os.environ, "PROCESSMAN_TOKEN": self.token}
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "processman", "serve"),
                *("--dir", str(self.folder), "--config", str(self.config)),
                *("--http", f"127.0.0.1:{self.port}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self._drainer = threading.Thread(target=self._drain, args=(self.process,), daemon=True)
        self._drainer.start()
        match = self.wait_for_output(r"API listening on (http://127\.0\.0\.1:(\d+))", timeout)
        self.url = match.group(1) + "/"
        self.port = int(match.group(2))
        return self

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)
            self._new_lines.put(line)
        self._new_lines.put(None)

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first line of serve's output (from now on, or already seen) that matches ``pattern``."""
        regex = re.compile(pattern)
        for line in list(self.lines):
            if found := regex.search(line):
                return found
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                item = self._new_lines.get(timeout=remaining)
            except queue.Empty:
                break
            if item is None:
                raise AssertionError(f"processman serve exited:\n{self.output}")
            if found := regex.search(item):
                return found
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n{self.output}")

    @property
    def output(self) -> str:
        return "".join(self.lines[-200:])

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url.rstrip("/"), headers={"Authorization": f"Bearer {self.token}"}, timeout=15
        )

    def states(self) -> dict[str, dict[str, Any]]:
        with self.client() as client:
            response = client.get("/api/pm/list")
        response.raise_for_status()
        return {state["id"]: state for state in response.json()}

    def post(self, process_id: str, verb: str) -> None:
        with self.client() as client:
            client.post(f"/api/pm/{process_id}/{verb}").raise_for_status()

    def wait_for_states(
        self, predicate: Callable[[dict[str, dict[str, Any]]], bool], what: str, timeout: float = 15.0
    ) -> dict[str, dict[str, Any]]:
        """Follow the server's own event stream until ``predicate(states)`` holds: no polling."""
        states: dict[str, dict[str, Any]] = {}
        parser = EventParser()
        deadline = time.monotonic() + timeout
        with (
            self.client() as client,
            client.stream("GET", "/api/pm/events", timeout=httpx.Timeout(timeout, connect=5)) as response,
        ):
            response.raise_for_status()
            for line in response.iter_lines():
                event = parser.feed(line)
                if event is None:
                    continue
                data = json.loads(event.data)
                if event.event == "snapshot":
                    states = {state["id"]: state for state in data}
                elif event.event == "status":
                    states[data["id"]] = data
                if predicate(states):
                    return states
                if time.monotonic() > deadline:
                    break
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last states: {states}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, as a user's Ctrl+C would; fails the test if serve does not stop in time."""
        if self.process is None:
            return 0
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                    raise AssertionError(f"serve did not stop within {timeout}s:\n{self.output}") from None
        finally:
            if self._drainer is not None:
                self._drainer.join(5)
            if self.process.stdout is not None:
                self.process.stdout.close()
        return self.process.returncode


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module."""
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class Pages:
    """Opens pages in fresh browser contexts (own storage) and remembers every URL they requested."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.contexts: list[Any] = []
        self.requests: list[str] = []
        self.errors: list[str] = []

    def open(self, *, width: int = 1400, height: int = 900, color_scheme: str = "light") -> Any:
        context = self.browser.new_context(
            viewport={"width": width, "height": height}, color_scheme=color_scheme, service_workers="block"
        )
        self.contexts.append(context)
        page = context.new_page()
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.set_default_timeout(10_000)
        return page

    def outside_requests(self) -> list[str]:
        return [url for url in self.requests if not _local(url)]

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def _local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname in LOCAL_HOSTS


@pytest.fixture
def pages(browser: Any) -> Iterator[Pages]:
    """Pages for one test; afterwards, no request may have left 127.0.0.1 and no script may have failed."""
    opened = Pages(browser)
    yield opened
    opened.close()
    assert opened.outside_requests() == [], "the dashboard tried to reach beyond 127.0.0.1"
    assert opened.errors == [], "uncaught errors in the page"


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def sign_in(page: Any, server: Server, token: str | None = None) -> None:
    """Open the dashboard and sign in with the admin token; returns once the list is drawn."""
    page.goto(server.url)
    page.fill("#token", token if token is not None else server.token)
    page.click("#login-submit")
    page.wait_for_selector("#dashboard-view:not([hidden]) .rows .row")


def row(page: Any, process_id: str) -> Any:
    return page.locator(f'.rows .row[data-id="{process_id}"]')
