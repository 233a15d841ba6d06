"""The dashboard in a real headless Chromium against a real ``processman serve`` with 50 real children."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import Pages, Server, python, row, screenshot, sign_in

pytestmark = pytest.mark.browser

TALKER = """
    import signal, sys
    count = 0
    def ping(*_):
        global count
        count += 1
        print(f"ping {count}", flush=True)
        print(f"pong {count} on stderr", file=sys.stderr, flush=True)
    signal.signal(signal.SIGUSR1, ping)
    print("talker ready", flush=True)
    print("talker warming up", file=sys.stderr, flush=True)
    while True:
        signal.pause()
"""
SERVICES = [f"svc-{n:02d}" for n in range(47)]
WORKERS = SERVICES[:5]  # the group "workers"
NO_VALUE = "\N{EN DASH}"


def shell(process_id: str, script: str, **fields: Any) -> dict[str, Any]:
    return {"id": process_id, "command": "sh", "args": ["-c", script], **fields}


def fleet() -> list[dict[str, Any]]:
    """50 processes: a talker that prints on SIGUSR1, one that keeps crashing (a long backoff holds it in
    "crashed"), one that gives up at once, and 47 quiet services."""
    return [
        python(
            "talker",
            TALKER,
            env={"API_KEY": "s3cret-value", "REGION": "eu-west"},
            envFile=".env",
            backoff="50ms",
        ),
        shell("crasher", "echo 'database unreachable' >&2; exit 3", backoff="1m"),
        shell("failer", "echo 'missing config' >&2; exit 1", maxRetries=0),
        *(
            {"id": name, "command": "sleep", "args": ["3600"], "stopTimeout": "2s"}
            | ({"group": "workers"} if name in WORKERS else {})
            for name in SERVICES
        ),
    ]


def settled(states: dict[str, dict[str, Any]]) -> bool:
    return (
        len(states) == 50
        and states["crasher"]["status"] == "crashed"
        and states["failer"]["status"] == "failed"
        and all(states[name]["status"] == "running" for name in ["talker", *SERVICES])
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fleet")
    (folder / ".env").write_text("DB_PASSWORD=dotenv-s3cret\nZONE=north\n")
    running = Server(folder, fleet()).start()
    try:
        running.wait_for_states(settled, "every process to settle")
        yield running
    finally:
        running.stop()


def test_list_renders_fifty_processes_with_overview(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    rows = page.locator(".rows .row:not([hidden])")
    assert rows.count() == 50
    expected = {"running": 0, "stopped": 0, "crashed": 0, "failed": 0}
    for state in server.states().values():
        if state["status"] in expected:
            expected[state["status"]] += 1
    page.wait_for_function(
        "([r, c, f]) => document.querySelector('[data-count=running]').textContent === r"
        " && document.querySelector('[data-count=crashed]').textContent === c"
        " && document.querySelector('[data-count=failed]').textContent === f",
        arg=[str(expected["running"]), str(expected["crashed"]), str(expected["failed"])],
    )
    assert page.text_content("[data-count=total]") == "50"
    assert page.text_content("[data-count=stopped]") == str(expected["stopped"])
    assert page.get_attribute("#health", "data-health") == "failed"
    # Which containment keeps the trees together, from /api/pm/health.
    expect(page.locator("#containment")).to_have_text(re.compile(r"^containment: (cgroup|tags)$"))
    # The server reports no CPU or memory yet: those columns stay out of the way.
    expect(page.locator(".row.head .c-cpu")).to_be_hidden()

    crasher = row(page, "crasher")
    assert crasher.get_attribute("data-status") == "crashed"
    assert "database unreachable" in (crasher.locator(".c-error").text_content() or "")
    talker = server.states()["talker"]
    assert row(page, "talker").locator(".c-pid .value").text_content() == str(talker["pid"])
    # The uptime counts on the page between events.
    uptime = row(page, "svc-00").locator(".c-uptime .value")
    first = uptime.text_content()
    page.wait_for_function(
        "([sel, before]) => document.querySelector(sel).textContent !== before",
        arg=['.rows .row[data-id="svc-00"] .c-uptime .value', first],
    )
    screenshot(page, "dashboard-list")


def test_restart_button_changes_the_pid(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    target = row(page, "svc-01")
    pid_cell = target.locator(".c-pid .value")
    old_pid = pid_cell.text_content()
    assert old_pid == str(server.states()["svc-01"]["pid"])

    target.locator('[data-action="restart"]').click()
    expect(pid_cell).not_to_have_text(old_pid or "")
    expect(pid_cell).to_have_text(re.compile(r"^[0-9]+$"))
    new_pid = pid_cell.text_content()
    state = server.states()["svc-01"]
    assert new_pid == str(state["pid"]) and state["status"] == "running"
    assert target.locator(".c-restarts .value").text_content() == str(state["restartCount"])
    expect(page.locator(".toast.ok").last).to_have_text(f"svc-01 restarted: running, pid {new_pid}")
    screenshot(page, "dashboard-restarted")


def test_stop_turns_the_row_grey_and_start_brings_it_back(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    target = row(page, "svc-02")
    target.locator('[data-action="stop"]').click()
    page.wait_for_selector('.rows .row[data-id="svc-02"][data-status="stopped"]')
    assert target.locator(".status-text").text_content() == "stopped"
    assert target.locator(".c-pid .value").text_content() == NO_VALUE
    grey = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--grey').trim()")
    dot = target.locator(".dot").evaluate("e => getComputedStyle(e).backgroundColor")
    assert dot == _rgb(grey)
    assert target.locator('[data-action="start"]').is_enabled()
    assert target.locator('[data-action="stop"]').is_disabled()
    screenshot(page, "dashboard-stopped")

    target.locator('[data-action="start"]').click()
    page.wait_for_selector('.rows .row[data-id="svc-02"][data-status="running"]')
    assert server.states()["svc-02"]["status"] == "running"


def test_status_changes_made_elsewhere_show_within_a_second(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    page.wait_for_selector("#live[data-state=live]")
    for verb, status in (("stop", "stopped"), ("start", "running")):
        server.post("svc-03", verb)
        started = time.monotonic()
        page.wait_for_selector(f'.rows .row[data-id="svc-03"][data-status="{status}"]', timeout=1000)
        assert time.monotonic() - started < 1.0


def test_child_output_appears_in_the_open_logs_panel(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    row(page, "talker").locator(".name").click()
    panel = page.locator("#panel")
    panel.locator(".line.out:has-text('talker ready')").wait_for()
    panel.locator(".line.err:has-text('talker warming up')").wait_for()
    assert page.evaluate("location.hash") == "#/process/talker"

    pid = server.states()["talker"]["pid"]
    before = panel.locator(".line:has-text('ping')").count()
    os.kill(pid, signal.SIGUSR1)
    line = panel.locator(".line.out", has_text=re.compile(r"^.*ping \d+$"))
    line.nth(before).wait_for()
    panel.locator(".line.err", has_text="on stderr").nth(before).wait_for()
    assert line.nth(before).locator(".stream").text_content() == "out"
    screenshot(page, "dashboard-logs")

    # The search box keeps only matching lines, and marks the match.
    page.fill("#log-search", "pong")
    shown = panel.locator(".log-lines .line:not([hidden])")
    expect(shown.first).to_be_visible()
    page.wait_for_function(
        "() => document.querySelectorAll('.log-lines .line:not([hidden]):not(:has(mark))').length === 0"
    )
    assert panel.locator(".log-lines mark").first.text_content() == "pong"
    # stdout and stderr can be hidden separately.
    page.fill("#log-search", "")
    expect(panel.locator(".line.out").first).to_be_visible()
    page.click("[data-stream=stdout]")
    expect(panel.locator(".line.out").first).to_be_hidden()
    expect(panel.locator(".line.err").first).to_be_visible()

    page.keyboard.press("Escape")
    page.wait_for_selector("#panel", state="hidden")


def test_send_signal_from_the_details_panel(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    row(page, "talker").locator(".name").click()
    panel = page.locator("#panel")
    panel.locator(".line.out:has-text('talker ready')").wait_for()
    pings = panel.locator(".line.out", has_text=re.compile(r"^.*ping \d+$"))
    before = pings.count()
    page.select_option("#panel-signal", "USR1")
    page.click("#panel-send-signal")
    expect(page.locator(".toast.ok").last).to_have_text("SIGUSR1 sent to talker (1 process).")
    pings.nth(before).wait_for()  # the talker prints a ping on SIGUSR1
    page.keyboard.press("Escape")


def test_details_show_the_resolved_config_with_secrets_masked(pages: Pages, server: Server) -> None:
    page = pages.open()
    page.goto(server.url)
    page.fill("#token", server.token)
    page.click("#login-submit")
    row(page, "crasher").locator(".name").click()
    page.click("#tab-details")
    details = page.locator("#details")
    details.locator("text=Recent exits").wait_for()
    text = details.inner_text()
    assert "Backoff" in text and "1m" in text
    assert "code 3" in text
    assert "database unreachable" in details.locator("table.exits").inner_text()  # the exit's last lines
    assert "none (the command runs directly)" in text
    assert "looked for .venv" not in text, "a shell command is not a Python program"

    page.goto(server.url + "#/process/talker")
    page.click("#tab-details")
    details.locator("text=API_KEY").wait_for()
    env_text = details.locator("table.env").first.inner_text()
    assert "s3cret-value" not in page.content()
    assert "hidden" in env_text and "eu-west" in env_text
    from_file = details.locator("section", has_text="(at the last start)").inner_text()
    assert "ZONE" in from_file and "north" in from_file and "DB_PASSWORD" in from_file
    assert "dotenv-s3cret" not in page.content()
    screenshot(page, "dashboard-details")


def test_filter_and_search_narrow_the_list(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    visible = page.locator(".rows .row:not([hidden])")

    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.type("svc-1")
    expect(visible).to_have_count(10)
    shown = sorted(visible.evaluate_all("rows => rows.map(r => r.dataset.id)"))
    assert shown == [f"svc-1{n}" for n in range(10)]

    page.fill("#search", "")
    page.click("#overview [data-filter=failed]")
    expect(visible).to_have_count(1)
    assert visible.first.get_attribute("data-id") == "failer"
    assert page.get_attribute("#overview [data-filter=failed]", "aria-pressed") == "true"

    page.fill("#search", "svc")
    page.locator("#empty").wait_for()
    assert "No processes match" in page.inner_text("#empty")
    assert "status failed" in page.inner_text("#empty")
    screenshot(page, "dashboard-empty-filter")
    page.click("#clear-filters")
    expect(visible).to_have_count(50)
    assert page.locator("#empty").is_hidden()

    # The group filter lists the config's groups.
    page.select_option("#group-filter", "workers")
    expect(visible).to_have_count(5)
    assert sorted(visible.evaluate_all("rows => rows.map(r => r.dataset.id)")) == WORKERS
    page.click("#overview [data-filter=failed]")
    page.locator("#empty").wait_for()
    assert "group workers" in page.inner_text("#empty")
    page.click("#clear-filters")
    expect(visible).to_have_count(50)
    assert page.input_value("#group-filter") == "all"


def test_batch_restart_and_a_confirmation_before_stopping_everything(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    chosen = ["svc-20", "svc-21", "svc-22"]
    before = {name: server.states()[name]["pid"] for name in chosen}
    for name in chosen:
        row(page, name).locator(".select").check()
    assert page.text_content("#batch-count") == "3 selected"
    page.click("[data-batch=restart]")
    page.wait_for_selector(".toast.ok:has-text('Restarted 3 processes')")
    after = server.states()
    for name in chosen:
        assert after[name]["pid"] != before[name] and after[name]["status"] == "running"
        assert row(page, name).locator(".c-pid .value").text_content() == str(after[name]["pid"])

    # Every process selected: stopping asks first, and cancelling stops nothing.
    page.check("#select-all")
    assert page.text_content("#batch-count") == "50 selected"
    page.click("[data-batch=stop]")
    dialog = page.locator("#confirm")
    dialog.wait_for()
    assert "Stop all 50 processes?" in dialog.inner_text()
    screenshot(page, "dashboard-confirm-stop-all")
    dialog.locator("button[value=cancel]").click()
    dialog.wait_for(state="hidden")
    assert all(state["status"] != "stopped" for state in server.states().values())


def test_a_wrong_token_is_refused(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in_attempt = page.goto(server.url)
    assert sign_in_attempt is not None and sign_in_attempt.ok
    page.fill("#token", "not-the-token")
    page.click("#login-submit")
    error = page.locator("#login-error")
    error.wait_for()
    assert "refused the token" in error.inner_text()
    assert page.locator("#dashboard-view").is_hidden()
    assert page.evaluate("sessionStorage.length + localStorage.length") == 0
    screenshot(page, "dashboard-wrong-token")


def test_phone_width_and_dark_theme(pages: Pages, server: Server) -> None:
    page = pages.open(width=390, height=844, color_scheme="dark")
    sign_in(page, server)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(11, 15, 20)"
    # Cards, no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert row(page, "talker").locator(".c-pid .label").is_visible()
    screenshot(page, "dashboard-phone-dark")
    # The theme toggle overrides the system preference.
    page.click("#theme-toggle")
    assert page.get_attribute("html", "data-theme") == "light"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(244, 246, 248)"
    row(page, "talker").locator(".name").click()
    page.locator("#panel .line:has-text('talker ready')").wait_for()
    screenshot(page, "dashboard-phone-logs")


def _rgb(hex_colour: str) -> str:
    value = hex_colour.lstrip("#")
    red, green, blue = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgb({red}, {green}, {blue})"


def test_the_keyboard_reaches_rows_the_panel_and_back(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    focused = "() => document.activeElement.closest('.row')?.dataset.id ?? document.activeElement.id"
    row(page, "svc-05").locator(".name").focus()
    page.keyboard.press("ArrowDown")
    assert page.evaluate(focused) == "svc-06"
    page.keyboard.press("Enter")
    expect(page.locator("#panel")).to_be_visible()
    expect(page.locator("#panel-title")).to_have_text("svc-06")
    assert page.evaluate(focused) == "panel-title"
    page.keyboard.press("Escape")
    expect(page.locator("#panel")).to_be_hidden()
    assert page.evaluate(focused) == "svc-06"
    # From the name, Tab goes on to the row's enabled buttons (start is disabled while running).
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.dataset.action") == "restart"
