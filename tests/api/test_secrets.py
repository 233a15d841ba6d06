"""Probe credentials never leave through the API: a readiness URL with a password and a liveness command
with one are masked in the list, the event stream's first snapshot and the metrics."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from processman import ProcessManager
from processman.api import AdminToken
from processman.config import configs_from_dicts
from tests.api.conftest import IDLE, TOKEN, EventReader, serving

PASSWORD = "hunter2"


async def test_probe_credentials_appear_nowhere(
    manager_factory: Callable[..., ProcessManager], tmp_path: Path
) -> None:
    entry = {
        "id": "guarded",
        "command": sys.executable,
        "args": ["-c", IDLE],
        "readiness": {"http": f"http://admin:{PASSWORD}@127.0.0.1:9/", "interval": "100ms"},
        "liveness": {"command": ["sh", "-c", f"check-db --user app --password {PASSWORD}"]},
    }
    (config,) = configs_from_dicts([entry], tmp_path)
    manager = manager_factory(config)
    await manager.start()
    async with serving(manager, AdminToken(TOKEN)) as service:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=15) as client:
            listed = await client.get("/api/pm/list")
            metrics = await client.get("/api/pm/metrics")
            async with client.stream("GET", "/api/pm/events") as response:
                snapshot = await EventReader(response).next()
    assert snapshot.event == "snapshot"
    shown = listed.json()[0]["config"]
    assert "readiness" in shown and "liveness" in shown, "the probes are shown, masked"
    for name, text in (("list", listed.text), ("events", snapshot.data), ("metrics", metrics.text)):
        assert PASSWORD not in text, name
