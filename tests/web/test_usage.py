"""CPU and memory on the dashboard follow the server's samples without any status change, and the
details tab shows them and each exit's last lines."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.web.conftest import Pages, Server, python, row, sign_in

pytestmark = pytest.mark.browser

# 64 MB at once, 192 MB more on SIGUSR1: its memory changes while its status does not.
GROWER = """
    import signal, time
    held = [b"x" * (64 << 20)]
    def grow(*_):
        held.append(b"x" * (192 << 20))
        print("grown", flush=True)
    signal.signal(signal.SIGUSR1, grow)
    print("holding 64MB", flush=True)
    while True:
        time.sleep(1)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    processes = [
        python("grower", GROWER),
        python("spinner", "while True: pass"),
        python("quitter", "print('bye for now'); raise SystemExit(4)", backoff="1m"),
    ]
    running = Server(tmp_path_factory.mktemp("usage"), processes).start()
    try:
        running.wait_for_states(
            lambda states: len(states) == 3 and states["quitter"]["status"] == "crashed", "the fleet"
        )
        yield running
    finally:
        running.stop()


def megabytes(text: str | None) -> float:
    match = re.fullmatch(r"([\d.]+) (MB|GB)", text or "")
    assert match, text
    return float(match.group(1)) * (1024 if match.group(2) == "GB" else 1)


def test_memory_and_cpu_follow_the_samples(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    memory = row(page, "grower").locator(".c-mem .value")
    expect(memory).to_have_text(re.compile(r"^\d+(\.\d)? MB$"), timeout=15_000)
    assert 64 <= megabytes(memory.text_content()) < 150
    expect(row(page, "spinner").locator(".c-cpu .value")).to_have_text(re.compile(r"^\d+(\.\d)?%$"))
    expect(row(page, "quitter").locator(".c-mem .value")).to_have_text("\N{EN DASH}")

    os.kill(server.states()["grower"]["pid"], signal.SIGUSR1)
    # No status event follows: the page reads the new figure on its own (a sample every 2 s, a read
    # every 5 s).
    page.wait_for_function(
        """() => {
            const text = document.querySelector('.rows .row[data-id="grower"] .c-mem .value').textContent;
            const match = /^([\\d.]+) (MB|GB)$/.exec(text);
            return match && parseFloat(match[1]) * (match[2] === "GB" ? 1024 : 1) >= 256;
        }""",
        timeout=15_000,
    )


def test_details_show_usage_and_the_last_lines_of_each_exit(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    row(page, "grower").locator(".name").click()
    page.click("#tab-details")
    details = page.locator("#details")
    expect(details.locator("dd").filter(has_text=re.compile(r"^\d+(\.\d)? (MB|GB)$"))).to_have_count(1)

    page.goto(server.url + "#/process/quitter")
    page.click("#tab-details")
    exits = details.locator("table.exits")
    expect(exits).to_contain_text("exited with code 4")
    expect(exits.locator(".last-lines")).to_have_text("bye for now")
