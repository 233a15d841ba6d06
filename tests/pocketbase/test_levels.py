"""A real uvicorn app under PocketBase: uvicorn writes its INFO lines to stderr, and they reach
PocketBase's Logs at Info, not as errors."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from tests.pocketbase.conftest import PocketBase, free_port, wait_for

pytestmark = pytest.mark.pocketbase

APP = """
async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def test_uvicorns_own_lines_reach_pocketbases_logs_at_info(pocketbase: PocketBase) -> None:
    (pocketbase.root / "asgi_app.py").write_text(APP)
    port = free_port()
    web = {
        "id": "web",
        "command": sys.executable,
        "args": ["-m", "uvicorn", "asgi_app:app", "--host", "127.0.0.1", "--port", str(port)],
        "cwd": str(pocketbase.root),
    }
    pocketbase.install([web])
    pocketbase.start()
    pocketbase.wait_running("web")

    def running_line() -> list[dict[str, Any]]:
        return pocketbase.logs("data.process='web' && message~'Uvicorn running on'")

    items = wait_for(running_line, 20, "uvicorn's start-up line in PocketBase's logs", interval=0.5)
    assert items[0]["data"]["stream"] == "stderr"
    assert items[0]["level"] == 0, "uvicorn's INFO line is Info, not Error"
