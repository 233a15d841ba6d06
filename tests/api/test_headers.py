"""Headers of the standalone server (``processman serve``): no page of it may be framed by another site,
and requests that name a host the server does not answer to (DNS rebinding) are refused."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from processman import ProcessManager
from processman.api import Address, AdminToken, ApiService
from tests.api.conftest import IDLE, TOKEN, Served, free_port, raw_http, request_bytes, running, serving
from tests.api.test_server import Output, start_serve
from tests.conftest import config, wait_for


@pytest.fixture
async def served(manager_factory: Callable[..., ProcessManager]) -> AsyncIterator[Served]:
    manager = manager_factory(config("idle", IDLE))
    await manager.start()
    await running(manager, "idle")
    async with serving(manager, AdminToken(TOKEN), allowed_hosts=("pm.example.org",)) as service:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=15) as client:
            yield Served(manager, service, service.url, client)


def with_host(method: str, target: str, host: str) -> bytes:
    return request_bytes(method, target).replace(b"Host: 127.0.0.1\r\n", f"Host: {host}\r\n".encode())


@pytest.mark.parametrize(
    "path", ["/", "/index.html", "/app.js", "/api/health", "/api/pm/list", "/api/pm/auth-info", "/nope"]
)
async def test_no_response_may_be_framed(served: Served, path: str) -> None:
    response = await served.client.get(path)
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_streams_may_not_be_framed_either(served: Served) -> None:
    async with served.client.stream("GET", "/api/pm/events") as response:
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_a_policy_already_sent_is_kept_and_framing_added() -> None:
    async def page(request: Request) -> Response:
        return PlainTextResponse("hi", headers={"Content-Security-Policy": "default-src 'self'"})

    from processman.api.middleware import FrameGuard

    app = FrameGuard(Starlette(routes=[Route("/", page)]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/")
    policies = response.headers.get_list("content-security-policy")
    assert policies == ["default-src 'self'; frame-ancestors 'none'"]
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.1:{port}",
        "localhost:{port}",
        "LOCALHOST:{port}",
        "[::1]:{port}",
        "pm.example.org",  # allowed by name (behind a proxy that keeps the Host)
        "pm.example.org:{port}",
        "10.1.2.3:{port}",  # an address, never a name: DNS rebinding needs a name
    ],
)
async def test_hosts_the_server_answers_to(served: Served, host: str) -> None:
    status, _, _ = await served.raw(with_host("GET", "/api/pm/list", host.format(port=served.service.port)))
    assert status == 200


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "evil.example", "localhost.evil.example:{port}", "pm.example.org.evil:{port}"],
)
@pytest.mark.parametrize("path", ["/api/pm/list", "/", "/api/health", "/api/pm/auth-info"])
async def test_other_host_names_are_refused_with_a_clear_error(served: Served, host: str, path: str) -> None:
    status, body, raw = await served.raw(with_host("GET", path, host.format(port=served.service.port)))
    assert status == 421, raw
    assert body is not None and body["status"] == 421
    assert "--allowed-host" in body["message"]


async def test_a_refused_host_never_reaches_the_manager(served: Served) -> None:
    pid = served.manager.state("idle").pid
    request = with_host("POST", "/api/pm/idle/stop", f"evil.example:{served.service.port}")
    status, _, _ = await served.raw(request)
    assert status == 421
    assert served.manager.state("idle").pid == pid


async def test_without_allowed_names_only_loopback_and_addresses_pass(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    manager = manager_factory(config("idle", IDLE))
    async with serving(manager, AdminToken(TOKEN)) as service:
        ok, _, _ = await raw_http(service.port, with_host("GET", "/api/health", f"localhost:{service.port}"))
        refused, _, _ = await raw_http(service.port, with_host("GET", "/api/health", "pm.example.org"))
    assert (ok, refused) == (200, 421)


def test_the_bound_name_is_allowed() -> None:
    service = ApiService(Address("myhost.lan", 8091), AdminToken(TOKEN), allowed_hosts=("pm.example.org",))
    assert {"myhost.lan", "pm.example.org"} <= set(service.host_names())


def test_serve_takes_allowed_hosts_on_the_command_line(tmp_path: Path) -> None:
    port = free_port()
    process = start_serve(tmp_path, "--http", f"127.0.0.1:{port}", "--allowed-host", "pm.example.org")
    output = Output(process)
    try:
        output.wait_for("API listening")

        def status(host: str) -> int:
            answer = httpx.get(f"http://127.0.0.1:{port}/api/health", headers={"Host": host}, timeout=5)
            return answer.status_code

        assert wait_for(lambda: status("pm.example.org") == 200, 10, "the allowed name")
        assert status("evil.example") == 421
        assert status(f"localhost:{port}") == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.rest()
        assert process.stdout is not None
        process.stdout.close()
