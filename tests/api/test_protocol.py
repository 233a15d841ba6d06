"""The HTTP protocol's own limits, over a raw socket on 127.0.0.1: a request line over 16 KiB is refused
with 400 whether it arrives in pieces or whole (h11's limit only sees a line still arriving)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from processman import ProcessManager
from processman.api import AdminToken, ApiService
from tests.api.conftest import IDLE, TOKEN, serving
from tests.conftest import config


@pytest.fixture
async def service(manager_factory: Callable[..., ProcessManager]) -> AsyncIterator[ApiService]:
    async with serving(manager_factory(config("idle", IDLE)), AdminToken(TOKEN)) as service:
        yield service


async def status_of(port: int, request: bytes, pieces: int = 1) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        step = -(-len(request) // pieces)
        for start in range(0, len(request), step):
            writer.write(request[start : start + step])
            await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return int(head.split(b" ", 2)[1])


def health_request(line_length: int) -> bytes:
    """``GET /api/health?pad=... HTTP/1.1`` padded to ``line_length`` bytes (without the CRLF)."""
    bare = len("GET /api/health?pad= HTTP/1.1")
    line = f"GET /api/health?pad={'x' * (line_length - bare)} HTTP/1.1"
    assert len(line) == line_length
    return f"{line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()


def test_the_limit_is_the_documented_16_kib() -> None:
    from processman.api.protocol import MAX_REQUEST_LINE

    assert MAX_REQUEST_LINE == 16 * 1024


@pytest.mark.parametrize("length", [16 * 1024 + 1, 17_000, 100_000])
async def test_a_request_line_over_16_kib_that_arrives_whole_is_400(service: ApiService, length: int) -> None:
    assert await status_of(service.port, health_request(length)) == 400


async def test_a_request_line_over_16_kib_that_arrives_in_pieces_is_400(service: ApiService) -> None:
    assert await status_of(service.port, health_request(100_000), pieces=10) == 400


@pytest.mark.parametrize("length", [1000, 16 * 1024])
async def test_a_request_line_up_to_16_kib_is_served(service: ApiService, length: int) -> None:
    assert await status_of(service.port, health_request(length)) == 200


async def test_the_server_answers_again_after_a_refusal(service: ApiService) -> None:
    assert await status_of(service.port, health_request(20_000)) == 400
    assert await status_of(service.port, health_request(100)) == 200
