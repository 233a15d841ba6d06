"""Embed processman in your own Starlette (or FastAPI) application.

The application runs a ``ProcessManager`` in its lifespan and mounts processman's control API at
``/api/pm``, beside its own routes. Run it and try it::

    PROCESSMAN_TOKEN=change-me python examples/embed_starlette.py
    curl -H "Authorization: Bearer change-me" http://127.0.0.1:8000/api/pm/list
    curl -H "Authorization: Bearer change-me" "http://127.0.0.1:8000/api/pm/worker/logs?lines=5"
    curl -N -H "Authorization: Bearer change-me" "http://127.0.0.1:8000/api/pm/worker/logs?follow=1"
    processman list --url http://127.0.0.1:8000 --token change-me
    curl http://127.0.0.1:8000/          # the application's own route

With FastAPI the same two lines apply: ``app.mount("/api/pm", api)`` and the lifespan below.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from types import FrameType

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from processman import ProcessConfig, ProcessManager
from processman.api import AdminToken, ControlAPI

WORKER = """
import itertools, time
for i in itertools.count():
    print(f"working {i}", flush=True)
    time.sleep(1)
"""

manager = ProcessManager([ProcessConfig(id="worker", command=sys.executable, args=("-u", "-c", WORKER))])
api = ControlAPI(manager, AdminToken(os.environ.get("PROCESSMAN_TOKEN", "change-me")))


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with manager:  # starts every process; leaving stops every process tree
        yield
        api.close_streams()


async def home(request: Request) -> JSONResponse:
    running = [state.id for state in manager.states() if state.pid]
    return JSONResponse({"hello": "from the host application", "running": running})


app = Starlette(routes=[Route("/", home), api.mount("/api/pm")], lifespan=lifespan)


class Server(uvicorn.Server):
    """uvicorn waits for open connections to finish before the lifespan ends, and a live stream
    only finishes when its client leaves: end the streams as soon as uvicorn is asked to stop.
    (With the ``uvicorn`` command instead, pass ``--timeout-graceful-shutdown 2``.)"""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: hand the work to the event loop rather than doing it here.
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().call_soon_threadsafe(api.close_streams)
        super().handle_exit(sig, frame)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    Server(uvicorn.Config(app, host="127.0.0.1", port=port, timeout_graceful_shutdown=5)).run()
