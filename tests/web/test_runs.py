"""The Runs tab in a real headless Chromium against a real ``processman serve``: a job that runs every
second fills it live, newest first, with its next run shown in the list and the panel; a one-shot task
that does not start with the manager is run from the tab."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.web.conftest import Pages, Server, python, row, screenshot, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("runs")
    processes = [
        python("tick", "print('tick', flush=True)", schedule={"every": "1s"}),
        python("migrate", "print('migrated', flush=True)", restart="never", autostart=False),
    ]
    running = Server(folder, processes).start()
    try:
        running.wait_for_states(lambda states: states["tick"]["status"] == "scheduled", "the job to be armed")
        yield running
    finally:
        running.stop()


def test_the_runs_tab_follows_a_job_live_with_its_next_run(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    expect(row(page, "tick").locator(".c-error")).to_contain_text("next run")
    row(page, "tick").locator(".name").click()
    page.click("#tab-runs")
    expect(page.locator("#next-run")).to_contain_text("Next run: 20")
    runs = page.locator("#runs table.runs tbody tr")
    expect(runs.first).to_be_visible()
    first = int(runs.first.get_attribute("data-number") or 0)
    # A run that comes after the tab was drawn appears on top, live.
    page.wait_for_selector(f'#runs tbody tr[data-number="{first + 2}"]')
    numbers = [int(n or 0) for n in runs.evaluate_all("rows => rows.map(r => r.dataset.number)")]
    assert numbers == sorted(numbers, reverse=True) and numbers[0] >= first + 2, "newest first"
    done = page.locator('#runs tbody tr[data-outcome="succeeded"]').first
    expect(done.locator("td").nth(1)).to_have_text("schedule")
    expect(done.locator(".outcome")).to_have_text("succeeded")
    green = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--green').trim()")
    colour = done.locator(".outcome").evaluate("e => getComputedStyle(e).color")
    assert colour == _rgb(green)
    expect(done).to_contain_text("tick")  # its last lines
    screenshot(page, "dashboard-runs")


def test_a_task_is_run_from_the_runs_tab(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    page.goto(server.url + "#/process/migrate")
    page.click("#tab-runs")
    expect(page.locator("#runs .runs-state")).to_have_text("No runs yet.")
    expect(page.locator("#next-run")).to_be_hidden()
    page.click("#run-now")
    expect(page.locator(".toast.ok").last).to_have_text("Run 1 of migrate started")
    done = page.locator('#runs tbody tr[data-number="1"][data-outcome="succeeded"]')
    expect(done).to_contain_text("manual")
    expect(row(page, "migrate")).to_have_attribute("data-status", "completed")


def _rgb(hex_colour: str) -> str:
    value = hex_colour.lstrip("#")
    red, green, blue = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgb({red}, {green}, {blue})"
