"""Takes the screenshots in docs/screenshots/: a small, realistic set of sidecars under a real
``processman serve``, photographed in headless Chromium.

    .venv/bin/python -m tests.web.tour            # writes docs/screenshots/*.png
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, ROOT, Server, python, row, sign_in

OUT = ROOT / "docs" / "screenshots"

AGENT = """
    import random, time
    tasks = ["summarise ticket #4812", "classify upload 9f2c", "embed 12 documents", "answer chat 771"]
    print("agent: connected to PocketBase at http://127.0.0.1:8090", flush=True)
    n = 0
    while True:
        n += 1
        task = random.choice(tasks)
        print(f"task {n}: {task} ... done in {random.randint(80, 900)} ms", flush=True)
        if n % 4 == 0:
            import sys
            print(f"warning: rate limited, retrying task {n} in 2s", file=sys.stderr, flush=True)
        time.sleep(0.7)
"""
WORKER = """
    import time
    print("worker: waiting for jobs", flush=True)
    n = 0
    while True:
        n += 1
        print(f"job {n}: resized image_{n:04d}.png (3 sizes)", flush=True)
        time.sleep(1.3)
"""
QUIET = "import time\nwhile True: time.sleep(60)"


def script(folder: Path, process_id: str, name: str, code: str, **fields: Any) -> dict[str, Any]:
    """A config entry for a script file, as users write them (the interpreter is found automatically)."""
    (folder / name).write_text(textwrap.dedent(code))
    return {"id": process_id, "script": name, **fields}


def sidecars(folder: Path) -> list[dict[str, Any]]:
    return [
        script(
            folder,
            "ai-agent",
            "agent.py",
            AGENT,
            args=["--model", "small"],
            env={"OPENAI_API_KEY": "sk-not-shown", "PB_COLLECTION": "tickets"},
            backoff="2s",
            maxRetries=10,
        ),
        script(folder, "thumbnailer", "thumbnailer.py", WORKER, backoff="500ms"),
        script(folder, "mailer", "mailer.py", QUIET),
        script(folder, "search-indexer", "indexer.py", QUIET, devMode=True, watchPaths=["."]),
        script(folder, "scheduler", "scheduler.py", QUIET),
        python("webhooks", QUIET),
        {
            "id": "billing-sync",
            "command": "sh",
            "args": ["-c", "echo 'stripe: 401 invalid api key' >&2; exit 2"],
        },
        {
            "id": "pdf-export",
            "command": "sh",
            "args": ["-c", "echo 'chromium not found' >&2; exit 127"],
            "maxRetries": 2,
            "backoff": "100ms",
        },
        script(folder, "legacy-importer", "importer.py", QUIET),
    ]


def settle(page: Page) -> None:
    page.wait_for_timeout(600)  # let the toasts fade and the uptimes tick: these are photographs


def main(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        server = Server(Path(folder), sidecars(Path(folder))).start()
        try:
            server.wait_for_states(
                lambda s: len(s) == 9 and s["pdf-export"]["status"] == "failed", "the fleet to settle"
            )
            server.post("legacy-importer", "stop")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                shoot(browser, server, out)
                browser.close()
        finally:
            server.stop(timeout=60)
    for path in sorted(out.glob("*.png")):
        print(path.relative_to(ROOT))


def shoot(browser: Any, server: Server, out: Path) -> None:
    login = browser.new_page(viewport={"width": 900, "height": 620}, color_scheme="light")
    login.goto(server.url)
    login.fill("#token", "wrong")
    login.click("#login-submit")
    login.locator("#login-error").wait_for()
    login.screenshot(path=str(out / "sign-in.png"))

    light = browser.new_page(viewport={"width": 1440, "height": 860}, color_scheme="light")
    sign_in(light, server)
    light.wait_for_timeout(4000)  # a few seconds of uptime and output
    settle(light)
    light.screenshot(path=str(out / "overview-light.png"))
    row(light, "ai-agent").locator(".name").click()
    light.locator("#panel .line.err").first.wait_for()
    light.wait_for_timeout(2500)
    light.locator("#panel-title").blur()
    light.screenshot(path=str(out / "logs-light.png"))
    light.click("#tab-details")
    settle(light)
    light.screenshot(path=str(out / "details-light.png"))

    dark = browser.new_page(viewport={"width": 1440, "height": 860}, color_scheme="dark")
    sign_in(dark, server)
    row(dark, "thumbnailer").locator(".name").click()
    dark.locator("#panel .line").first.wait_for()
    dark.wait_for_timeout(2500)
    dark.locator("#panel-title").blur()
    dark.screenshot(path=str(out / "logs-dark.png"))

    phone = browser.new_page(
        viewport={"width": 390, "height": 844}, color_scheme="dark", device_scale_factor=2
    )
    sign_in(phone, server)
    settle(phone)
    phone.screenshot(path=str(out / "phone-dark.png"))

    lost = browser.new_page(viewport={"width": 1440, "height": 560}, color_scheme="light")
    sign_in(lost, server)
    lost.locator("#live[data-state=live]").wait_for()
    server.stop(timeout=60)
    lost.locator("#banner").wait_for()
    settle(lost)
    lost.screenshot(path=str(out / "connection-lost.png"))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
