"""Everyday operations in the dashboard: a progress bar redrawn in place, lines coloured by their own level,
and the status text a process sends over sd_notify."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.conftest import Pages, Server, python, row, sign_in

pytestmark = pytest.mark.browser

# Draws a bar to 30/30 with carriage returns, stays there, and finishes the line on SIGUSR1.
BAR = """
    import signal, sys
    print("bar ready", flush=True)
    for step in range(1, 31):
        sys.stderr.write(f"\\rstep {step}/30 " + "#" * step)
        sys.stderr.flush()
    signal.signal(signal.SIGUSR1, lambda *_: (sys.stderr.write(" done\\n"), sys.stderr.flush()))
    while True:
        signal.pause()
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("bar"), [python("bar", BAR)]).start()
    try:
        running.wait_for_states(
            lambda states: states.get("bar", {}).get("status") == "running", "bar running"
        )
        yield running
    finally:
        running.stop()


def test_a_redrawn_line_shows_its_latest_state_then_its_finished_form(pages: Pages, server: Server) -> None:
    page: Any = pages.open()
    sign_in(page, server)
    row(page, "bar").locator(".name").click()
    panel = page.locator("#panel")
    panel.locator(".line.out:has-text('bar ready')").wait_for()
    partial = panel.locator(".line.err.partial")
    partial.filter(has_text="step 30/30").wait_for()
    assert partial.count() == 1, "one line per stream, redrawn in place"
    assert "\r" not in (partial.locator(".text").text_content() or "")

    os.kill(server.states()["bar"]["pid"], signal.SIGUSR1)
    panel.locator(".line.err:not(.partial)", has_text="step 30/30 " + "#" * 30 + " done").wait_for()
    partial.wait_for(state="detached")


LEVELS = """
    import sys
    print("INFO:     Uvicorn running on http://127.0.0.1:8000", file=sys.stderr, flush=True)
    print("WARNING:app:disk almost full", flush=True)
    print("Traceback (most recent call last):", file=sys.stderr, flush=True)
    import time
    time.sleep(3600)
"""


def test_lines_are_coloured_by_their_own_level(
    pages: Pages, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = Server(tmp_path_factory.mktemp("levels"), [python("levels", LEVELS)]).start()
    try:
        server.wait_for_states(lambda states: states.get("levels", {}).get("status") == "running", "running")
        page: Any = pages.open()
        sign_in(page, server)
        row(page, "levels").locator(".name").click()
        panel = page.locator("#panel")
        panel.locator(".line:has-text('Traceback')").wait_for()
        level = "el => el.dataset.level"
        assert panel.locator(".line:has-text('Uvicorn running')").evaluate(level) == "info"
        assert panel.locator(".line:has-text('disk almost full')").evaluate(level) == "warn"
        assert panel.locator(".line:has-text('Traceback')").evaluate(level) == "error"
    finally:
        server.stop()


NOTIFIES = """
    import sdnotify, time
    sdnotify.SystemdNotifier(debug=True).notify("READY=1\\nSTATUS=42 jobs in the queue")
    time.sleep(3600)
"""


def test_a_processs_status_text_shows_in_the_list_and_details(
    pages: Pages, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = Server(tmp_path_factory.mktemp("notify"), [python("queue", NOTIFIES, type="notify")]).start()
    try:
        server.wait_for_states(lambda states: states.get("queue", {}).get("statusText") != "", "STATUS=")
        page: Any = pages.open()
        sign_in(page, server)
        cell = row(page, "queue").locator(".c-error")
        cell.filter(has_text="42 jobs in the queue").wait_for()
        assert "status-text" in (cell.get_attribute("class") or "")
        row(page, "queue").locator(".name").click()
        page.click("#tab-details")
        page.locator("#details").get_by_text("42 jobs in the queue", exact=True).wait_for()
    finally:
        server.stop()
