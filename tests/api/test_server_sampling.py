"""Behind the HTTP API, resource figures are sampled on demand: not at all while nobody asks, and a
request after a quiet spell gets fresh figures."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from processman import ProcessManager
from processman.api import AdminToken
from tests.api.conftest import IDLE, TOKEN, running, serving
from tests.conftest import config, wait_until
from tests.engine.clock import ManualClock, settle


async def test_a_request_after_a_quiet_spell_gets_fresh_figures(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    clock = ManualClock()
    manager = manager_factory(config("idle", IDLE), metrics_interval=0.1, clock=clock)
    sampler = manager.resources
    await manager.start()
    await running(manager, "idle")
    async with serving(manager, AdminToken(TOKEN)) as service:
        assert sampler.on_demand
        # Nobody reads: after the first sample, none at all, however long the quiet spell.
        await wait_until(manager, lambda: sampler.waiting, what="the sampler waiting for a reader")
        clock.advance(3600)
        await settle()
        assert sampler.waiting
        quiet = sampler.samples
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=service.url, headers=headers) as client:
            response = await client.get("/api/pm/list")
        assert response.status_code == 200
        assert sampler.samples > quiet  # the request waited for a fresh sample
        (state,) = response.json()
        assert state["memory"] > 0 and state["cpu"] is not None
        assert sampler.in_use()
    assert not sampler.on_demand  # the API is gone: every sample again
