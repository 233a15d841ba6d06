"""What the dashboard draws for a log that cannot be written (a full disk) and for processman's own notes
about a process (stream ``system``): the page's own modules render API JSON in a real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.conftest import Pages, Server, python, sign_in

pytestmark = pytest.mark.browser

FULL_DISK = "cannot write web.log: [Errno 28] No space left on device"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("log-health"), [python("idle", "import time; time.sleep(3600)")])
    running.start()
    try:
        yield running
    finally:
        running.stop()


def entry(**fields: Any) -> dict[str, Any]:
    """A state as /api/pm/list sends it."""
    state: dict[str, Any] = {
        "id": "web",
        "pid": 4021,
        "status": "running",
        "ready": True,
        "startTime": "2026-01-30T10:00:00.000Z",
        "uptime": "1m",
        "restartCount": 0,
        "lastError": "",
        "desired": "running",
        "recentExits": [],
        "cpu": 1.5,
        "memory": 52428800,
        "logError": "",
        "logDroppedBytes": 0,
        "config": {"id": "web", "command": "python3", "args": [], "cwd": "/app", "env": {}},
    }
    state.update(fields)
    return state


RENDER_DETAILS = """async (entry) => {
    const { renderDetails } = await import("/details.js");
    const box = document.createElement("div");
    document.body.append(box);
    renderDetails(box, entry);
    const error = box.querySelector(".log-error");
    const rows = Object.fromEntries([...box.querySelectorAll("dt")].map((dt) => [dt.textContent,
        dt.nextElementSibling.textContent]));
    const color = error ? getComputedStyle(error).color : "";
    box.remove();
    return { rows, error: error ? error.textContent : null, color };
}"""


def test_details_show_a_log_error_in_red_and_the_dropped_bytes(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    shown = page.evaluate(RENDER_DETAILS, entry(logError=FULL_DISK, logDroppedBytes=5 * 1024 * 1024))
    assert shown["error"] == FULL_DISK
    assert shown["rows"]["Log files"] == FULL_DISK
    assert "5.0 MB" in shown["rows"]["Dropped output"]
    red, green, blue = (int(part) for part in shown["color"].removeprefix("rgb(").rstrip(")").split(","))
    assert red > 150 and red > 2 * green and red > 2 * blue, shown["color"]


def test_details_say_nothing_alarming_when_the_log_is_fine(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    shown = page.evaluate(RENDER_DETAILS, entry())
    assert shown["error"] is None
    assert shown["rows"]["Log files"] == "written"
    assert shown["rows"]["Dropped output"] == "none"


RENDER_LINES = """async (lines) => {
    const { LogView } = await import("/logs.js");
    const root = document.createElement("div");
    root.className = "logs";
    for (const [tag, name] of [["div", "log-lines"], ["button", "log-jump"], ["span", "log-count"]]) {
        const part = document.createElement(tag);
        part.className = name;
        root.append(part);
    }
    document.body.append(root);
    const view = new LogView(root);
    view.setVisible(true);
    view.add(lines);
    await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    const drawn = [...root.querySelectorAll(".line")].map((line) => ({
        classes: [...line.classList],
        label: line.querySelector(".stream").textContent,
        style: getComputedStyle(line.querySelector(".text")).fontStyle,
        color: getComputedStyle(line.querySelector(".text")).color,
    }));
    root.remove();
    return drawn;
}"""


def test_processman_notes_are_drawn_apart_from_the_childs_errors(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    stamp = "2026-01-30T10:00:00.000Z"
    lines = [
        {"timestamp": stamp, "processId": "web", "stream": "stdout", "content": "hello", "seq": 1},
        {"timestamp": stamp, "processId": "web", "stream": "stderr", "content": "boom", "seq": 2},
        {"timestamp": stamp, "processId": "web", "stream": "system", "content": "restarting", "seq": 3},
    ]
    out, err, note = page.evaluate(RENDER_LINES, lines)
    assert "system" in note["classes"] and "err" not in note["classes"]
    assert note["label"] == "pm" and note["style"] == "italic"
    assert note["color"] != err["color"], "a note is not drawn as an error"
    assert (out["label"], err["label"]) == ("out", "err")


def test_the_system_stream_can_be_hidden_like_the_others(pages: Pages, server: Server) -> None:
    page = pages.open()
    sign_in(page, server)
    assert page.locator('[data-stream="system"]').count() == 1
