"""The dashboard served through a real PocketBase (``pocketbase serve`` with the processman hooks) at /pm/:
a superuser signs in with email and password, live data arrives over PocketBase realtime."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

import processman
from tests.pocketbase.conftest import POCKETBASE, SUPERUSER, USER, PocketBase, sidecar
from tests.web.conftest import Pages, row, screenshot

UI_EXTENSION = Path(processman.__file__).parent / "web" / "pocketbase_ui"
# The hook a user adds to show processman as a "Processes" page inside PocketBase's dashboard
# (docs/dashboard.md); PocketBase's UI extensions are experimental in 0.40.
UI_HOOK = """
$app.onServe().bindFunc((e) => {
  e.uiExtensions = e.uiExtensions.concat([{ name: "processman", fs: $os.dirFS(%s) }])
  return e.next()
})
"""

pytestmark = [pytest.mark.browser, pytest.mark.pocketbase]

TALKER = """
import signal, sys
count = 0
def ping(*_):
    global count
    count += 1
    print(f"ping {count} through pocketbase", flush=True)
signal.signal(signal.SIGUSR1, ping)
print("talker ready", flush=True)
while True:
    signal.pause()
"""
SLEEPER = "import time\nwhile True: time.sleep(60)"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PocketBase]:
    if not os.access(POCKETBASE, os.X_OK):
        pytest.fail(f"{POCKETBASE} is missing: install the test extras (pip install -e '.[test]')")
    pocketbase = PocketBase(tmp_path_factory.mktemp("pb"))
    try:
        processes = [sidecar("talker", TALKER), *(sidecar(f"worker-{n}", SLEEPER) for n in range(4))]
        pocketbase.install(processes)
        (pocketbase.hooks_dir / "processman_ui.pb.js").write_text(UI_HOOK % json.dumps(str(UI_EXTENSION)))
        pocketbase.start()
        pocketbase.user_token()  # creates the regular user the refusal test signs in with
        pocketbase.wait_running("talker", *(f"worker-{n}" for n in range(4)))
        yield pocketbase
    finally:
        pocketbase.close()


def sign_in(page: Page, app: PocketBase, email: str, password: str) -> None:
    page.goto(app.url + "/pm")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("#login-submit")


def test_a_superuser_signs_in_and_controls_processes_through_pocketbase(
    pages: Pages, app: PocketBase
) -> None:
    page = pages.open()
    sign_in(page, app, *SUPERUSER)
    expect(page.locator(".rows .row")).to_have_count(5)
    assert page.url == app.url + "/pm/"
    assert page.locator("#token").is_hidden()
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#user")).to_have_text(SUPERUSER[0])

    # Restart through the button: the pid on screen changes to the new one.
    pid_cell = row(page, "worker-1").locator(".c-pid .value")
    old_pid = pid_cell.text_content()
    row(page, "worker-1").locator('[data-action="restart"]').click()
    expect(pid_cell).not_to_have_text(old_pid or "")
    new_pid = app.states()["worker-1"]["pid"]
    expect(pid_cell).to_have_text(str(new_pid))
    expect(page.locator(".toast.ok").last).to_have_text(f"worker-1 restarted: running, pid {new_pid}")

    # A change made elsewhere arrives over realtime.
    response = app.http.post("/api/pm/worker-2/stop", headers=app.superuser())
    assert response.status_code == 200, response.text
    stopped_at = time.monotonic()
    page.wait_for_selector('.rows .row[data-id="worker-2"][data-status="stopped"]', timeout=2000)
    assert time.monotonic() - stopped_at < 1.0

    # A line the child prints reaches the open log panel (realtime topic pm/logs/talker).
    row(page, "talker").locator(".name").click()
    page.locator("#panel .line:has-text('talker ready')").wait_for()
    os.kill(app.states()["talker"]["pid"], signal.SIGUSR1)
    page.locator("#panel .line.out:has-text('ping 1 through pocketbase')").wait_for()
    screenshot(page, "dashboard-pocketbase")


def test_wrong_passwords_and_regular_users_are_refused(pages: Pages, app: PocketBase) -> None:
    page = pages.open()
    sign_in(page, app, SUPERUSER[0], "wrong password")
    error = page.locator("#login-error")
    expect(error).to_contain_text("Wrong email or password")

    sign_in(page, app, *USER)
    expect(error).to_contain_text("regular user, not a superuser")
    assert page.locator("#dashboard-view").is_hidden()
    screenshot(page, "dashboard-pocketbase-refused")


def test_a_processes_page_inside_pocketbases_own_dashboard(pages: Pages, app: PocketBase) -> None:
    page = pages.open()
    page.goto(app.url + "/_/#/login")
    page.fill("input[type=email]", SUPERUSER[0])
    page.fill("input[type=password]", SUPERUSER[1])
    page.keyboard.press("Enter")
    page.click("a[href='#/processes']")
    # The page inside shares the dashboard's session: no second sign-in.
    frame = page.frame_locator("iframe[data-processman]")
    expect(frame.locator(".rows .row")).to_have_count(5)
    expect(frame.locator("#live")).to_have_attribute("data-state", "live")
    assert frame.locator("#login-view").is_hidden()
    screenshot(page, "dashboard-inside-pocketbase")
