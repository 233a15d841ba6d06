"""Live streams: state changes and followed logs as Server-Sent Events, resumable from a cursor."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

import httpx
import pytest

from processman import ProcessManager
from processman.api import AdminToken
from processman.api.streams import StreamHub, log_stream, merged_log_stream, status_stream
from tests.api.conftest import TICKER, TOKEN, EventReader, Served, running, serving
from tests.conftest import config, wait_until

FOLLOW = {"follow": "1"}


async def test_events_start_with_a_snapshot_then_follow_changes(served: Served) -> None:
    async with served.client.stream("GET", "/api/pm/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = EventReader(response)
        snapshot = await reader.next()
        assert snapshot.event == "snapshot"
        assert [state["id"] for state in json.loads(snapshot.data)] == ["ticker", "echo", "idle"]
        await served.client.post("/api/pm/idle/stop")
        stopped = await reader.until(
            lambda e: e.event == "status" and json.loads(e.data)["status"] == "stopped"
        )
        state = json.loads(stopped.data)
        assert state["id"] == "idle" and state["pid"] == 0
        assert state["config"]["env"]["API_KEY"] == "****"


async def test_follow_sends_the_last_lines_then_live_ones(served: Served) -> None:
    params = {**FOLLOW, "lines": "2"}
    before = served.manager.last_log_seq("ticker")
    async with served.client.stream("GET", "/api/pm/ticker/logs", params=params) as response:
        assert response.status_code == 200
        reader = EventReader(response)
        backlog = [line["seq"] for line in await reader.logs(2)]
        assert backlog[1] == backlog[0] + 1 and backlog[1] >= before, "the last two lines"
        live = await reader.logs(2)
        assert [line["seq"] for line in live] == [backlog[1] + 1, backlog[1] + 2]
        assert live[0]["content"].startswith("tick ") and live[0]["processId"] == "ticker"
        assert reader.parser.last_id == str(backlog[1] + 2)


async def test_reconnecting_with_last_event_id_misses_nothing(served: Served) -> None:
    async with served.client.stream(
        "GET", "/api/pm/ticker/logs", params={**FOLLOW, "lines": "1"}
    ) as response:
        first = (await EventReader(response).logs(1))[0]["seq"]
    # Disconnected: lines keep coming. Wait for a few, then resume from the cursor.
    await wait_until(served.manager, lambda: served.manager.last_log_seq("ticker") >= first + 3)
    headers = {"Last-Event-ID": str(first)}
    params = {**FOLLOW, "after": "0"}  # stale, as EventSource resends its first URL: the header wins
    async with served.client.stream("GET", "/api/pm/ticker/logs", params=params, headers=headers) as response:
        resumed = await EventReader(response).logs(4)
    assert [line["seq"] for line in resumed] == [first + 1, first + 2, first + 3, first + 4]


async def test_after_resumes_without_the_header(served: Served) -> None:
    async with served.client.stream(
        "GET", "/api/pm/echo/logs", params={**FOLLOW, "after": "1195"}
    ) as response:
        lines = await EventReader(response).logs(6)
    assert [line["seq"] for line in lines] == [1196, 1197, 1198, 1199, 1200, 1201]
    assert lines[-1]["content"] == "the last line"


async def test_a_cursor_older_than_the_buffer_reports_what_was_lost(served: Served) -> None:
    # echo wrote 1201 lines; the last 1000 (202..1201) are kept.
    async with served.client.stream("GET", "/api/pm/echo/logs", params={**FOLLOW, "after": "1"}) as response:
        reader = EventReader(response)
        dropped = await reader.next()
        assert dropped.event == "dropped"
        assert json.loads(dropped.data) == {"count": 200}
        lines = await reader.logs(1000)
    assert [line["seq"] for line in lines] == list(range(202, 1202))


async def test_bad_follow_parameters_are_400(served: Served) -> None:
    for params, headers in (
        ({"follow": "maybe"}, {}),
        ({**FOLLOW, "after": "-3"}, {}),
        (FOLLOW, {"Last-Event-ID": "abc"}),
        ({**FOLLOW, "lines": "-1"}, {}),
    ):
        response = await served.client.get("/api/pm/ticker/logs", params=params, headers=headers)
        assert response.status_code == 400, params
        assert set(response.json()) == {"status", "message", "data"}


async def test_follow_of_an_unknown_id_is_404_not_a_stream(served: Served) -> None:
    response = await served.client.get("/api/pm/nope/logs", params=FOLLOW)
    assert response.status_code == 404
    assert response.json() == {"status": 404, "message": "Process not found.", "data": {}}


async def test_streams_need_the_token(served: Served) -> None:
    for path, params in (("/api/pm/events", {}), ("/api/pm/ticker/logs", FOLLOW)):
        response = await served.client.get(path, params=params, headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401


async def test_keepalive_comments_on_a_quiet_stream(manager_factory: Callable[..., ProcessManager]) -> None:
    manager = manager_factory(config("quiet", "import time; time.sleep(3600)"))
    await manager.start()
    async with (
        serving(manager, AdminToken(TOKEN), keepalive=0.1) as service,
        httpx.AsyncClient(base_url=service.url, headers={"Authorization": TOKEN}) as client,
        client.stream("GET", "/api/pm/quiet/logs", params=FOLLOW) as response,
    ):
        reader = EventReader(response)
        with contextlib.suppress(TimeoutError):
            await reader.next(timeout=0.5)
        assert ": keep-alive" in reader.comments


async def test_disconnecting_releases_the_subscription(served: Served) -> None:
    assert served.service.app is not None
    hub: StreamHub = served.service.app.state.control_api.streams
    async with served.client.stream("GET", "/api/pm/ticker/logs", params=FOLLOW) as response:
        await EventReader(response).logs(1)
        assert len(hub) == 1
    await wait_until(served.manager, lambda: len(hub) == 0, what="the stream to be released")


async def test_stopping_the_service_ends_open_streams_promptly(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    manager = manager_factory(config("ticker", TICKER))
    await manager.start()
    await running(manager, "ticker")
    ended = asyncio.Event()
    async with serving(manager, AdminToken(TOKEN), shutdown_timeout=30) as service:
        client = httpx.AsyncClient(base_url=service.url, headers={"Authorization": TOKEN})

        async def follow() -> None:
            async with client.stream("GET", "/api/pm/events") as response:
                async for _ in response.aiter_lines():
                    pass
            ended.set()

        follower = asyncio.create_task(follow())
        app = service.app
        assert app is not None
        await wait_until(manager, lambda: len(app.state.control_api.streams) == 1, what="the stream")
        leaving = time.monotonic()
    # Leaving ``serving`` cancelled the service and waited for it; with a 30 s grace for open
    # connections, only closing the streams lets it finish this soon.
    assert time.monotonic() - leaving < 2
    async with asyncio.timeout(2):
        await ended.wait()
    await follower
    await client.aclose()


async def test_a_slow_log_reader_catches_up_from_the_buffer(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    code = """
        import time
        for i in range(40):
            print(f"n {i}", flush=True)
            time.sleep(0.005)
        time.sleep(3600)
    """
    manager = manager_factory(config("burst", code))
    hub = StreamHub(queue_size=2)
    stream = log_stream(manager, hub, "burst", lines=1000, after=None)
    assert (await anext(stream)).startswith("retry:")
    await manager.start()  # subscribed before the first line, through a queue of two events
    backlog = await anext(stream)  # whatever was written before this
    await wait_until(manager, lambda: manager.last_log_seq("burst") >= 40, what="40 lines")
    received = [int(line.removeprefix("id: ")) for line in backlog.splitlines() if line.startswith("id: ")]
    while len(received) < 40:
        chunk = await asyncio.wait_for(anext(stream), 5)
        received += [int(line.removeprefix("id: ")) for line in chunk.splitlines() if line.startswith("id: ")]
        assert "event: dropped" not in chunk
    await stream.aclose()
    assert received == list(range(1, 41))
    assert hub.catch_ups >= 1 and len(hub) == 0


async def test_a_slow_status_reader_gets_a_fresh_snapshot(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    manager = manager_factory(
        config("a", "import time; time.sleep(3600)"), config("b", "import time; time.sleep(3600)")
    )
    await manager.start()
    await running(manager, "a", "b")
    hub = StreamHub(queue_size=1)
    stream = status_stream(manager, hub)
    await anext(stream)  # retry
    assert "event: snapshot" in await anext(stream)
    await manager.stop_all()  # several status changes into a queue of one
    seen = ""
    while '"status": "stopped"' not in seen or "snapshot" not in seen:
        seen += await asyncio.wait_for(anext(stream), 5)
    await stream.aclose()
    snapshot = json.loads(seen.split("event: snapshot\ndata: ")[1].split("\n")[0])
    assert {state["status"] for state in snapshot} == {"stopped"}
    assert hub.catch_ups == 1


async def test_a_reload_that_removes_a_process_ends_its_stream_and_resends_the_list(served: Served) -> None:
    keep = [served.manager.state(process_id).config for process_id in ("ticker", "echo")]
    async with (
        served.client.stream("GET", "/api/pm/events") as events,
        served.client.stream("GET", "/api/pm/idle/logs", params=FOLLOW) as idle_logs,
    ):
        status = EventReader(events)
        assert (await status.next()).event == "snapshot"
        followed = EventReader(idle_logs)
        await served.manager.apply(keep)
        with pytest.raises(EOFError):
            await followed.next()
        snapshot = await status.until(lambda event: event.event == "snapshot")
        assert [state["id"] for state in json.loads(snapshot.data)] == ["ticker", "echo"]
    assert (await served.client.get("/api/pm/idle/logs")).status_code == 404


async def test_a_slow_reader_of_merged_logs_catches_up_on_every_process(
    manager_factory: Callable[..., ProcessManager],
) -> None:
    code = """
        import time
        for i in range(40):
            print(f"n {i}", flush=True)
            time.sleep(0.005)
        time.sleep(3600)
    """
    manager = manager_factory(config("a", code), config("b", code))
    hub = StreamHub(queue_size=2)
    stream = merged_log_stream(manager, hub, lambda: manager.ids, lines=1000)
    assert (await anext(stream)).startswith("retry:")
    await manager.start()  # subscribed before the first line, through a queue of two events
    received: dict[str, list[int]] = {"a": [], "b": []}

    def take(chunk: str) -> None:
        assert "event: dropped" not in chunk
        for text in chunk.splitlines():
            if text.startswith("data: "):
                line = json.loads(text.removeprefix("data: "))
                received[line["processId"]].append(line["seq"])

    take(await anext(stream))  # whatever was written before this
    await wait_until(manager, lambda: min(map(manager.last_log_seq, "ab")) >= 40, what="40 lines each")
    while min(len(seqs) for seqs in received.values()) < 40:
        take(await asyncio.wait_for(anext(stream), 5))
    await stream.aclose()
    assert received == {"a": list(range(1, 41)), "b": list(range(1, 41))}, "every line once, in order"
    assert hub.catch_ups >= 1 and len(hub) == 0
