"""The dashboard when its server goes away and comes back: a banner, what was shown stays, recovery."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.web.conftest import Pages, Server, python, row, screenshot, sign_in

pytestmark = pytest.mark.browser

HELLO = """
    import os, time
    print(f"hello from {os.getpid()}", flush=True)
    while True:
        time.sleep(3600)
"""


def processes() -> list[dict[str, object]]:
    return [python(f"app-{n}", HELLO) for n in range(3)]


def all_running(states: dict[str, dict[str, object]]) -> bool:
    return len(states) == 3 and all(state["status"] == "running" for state in states.values())


def test_stopping_the_server_shows_a_banner_and_the_page_recovers(pages: Pages, tmp_path: Path) -> None:
    first = Server(tmp_path, processes()).start()
    try:
        first.wait_for_states(all_running, "every process to run")
        old_pid = first.states()["app-0"]["pid"]
        page = pages.open()
        sign_in(page, first)
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        row(page, "app-0").locator(".name").click()
        page.locator(f"#panel .line:has-text('hello from {old_pid}')").wait_for()
    finally:
        first.stop()

    banner = page.locator("#banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Connection lost")
    expect(page.locator("#live")).to_have_attribute("data-state", "down")
    # What was shown stays on screen (dimmed), including the log panel.
    assert page.locator(".rows .row").count() == 3
    assert page.locator(f"#panel .line:has-text('hello from {old_pid}')").is_visible()
    assert page.evaluate("document.body.hasAttribute('data-offline')")
    screenshot(page, "dashboard-connection-lost")

    second = Server(tmp_path, processes(), port=first.port).start()
    try:
        states = second.wait_for_states(all_running, "every process to run again")
        new_pid = states["app-0"]["pid"]
        expect(banner).to_be_hidden(timeout=15_000)
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        expect(row(page, "app-0").locator(".c-pid .value")).to_have_text(str(new_pid))
        page.locator(".toast:has-text('Connection restored')").wait_for()
        # The open log panel follows the new server too.
        page.locator(f"#panel .line:has-text('hello from {new_pid}')").wait_for()
        assert not page.evaluate("document.body.hasAttribute('data-offline')")
    finally:
        second.stop()
