"""Behind the HTTP API, resource figures are sampled on demand: rarely while nobody asks, and a request
after a quiet spell gets fresh figures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from processman import ProcessManager
from processman.api import AdminToken
from tests.api.conftest import IDLE, TOKEN, running, serving
from tests.conftest import config


async def test_a_request_after_a_quiet_spell_gets_fresh_figures(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    manager = manager_factory(config("idle", IDLE), metrics_interval=0.1)
    sampler = manager.resources
    await manager.start()
    await running(manager, "idle")
    async with serving(manager, AdminToken(TOKEN)) as service:
        assert sampler.on_demand
        await asyncio.sleep(0.3)  # nobody reads: no new sample for 1.5 s (fifteen intervals)
        quiet = sampler.samples
        await asyncio.sleep(0.3)
        assert sampler.samples == quiet
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=service.url, headers=headers) as client:
            response = await client.get("/api/pm/list")
        assert response.status_code == 200
        assert sampler.samples > quiet  # the request waited for a fresh sample
        (state,) = response.json()
        assert state["memory"] > 0 and state["cpu"] is not None
        assert sampler.in_use()
    assert not sampler.on_demand  # the API is gone: every sample again
