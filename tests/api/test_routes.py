"""Every route of SPEC 8 against the real server: answers, status codes and the error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from processman.engine.states import Status
from tests.api.conftest import (
    SECRET_VALUE,
    Served,
    assert_error,
    request_bytes,
    running,
    served_processes,
)

# One server for the module: tests that stop ``idle`` start it again.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with served_processes(tmp_path_factory.mktemp("routes")) as instance:
        yield instance


async def ensure_running(served: Served, process_id: str) -> None:
    if served.manager.state(process_id).status is not Status.RUNNING:
        await served.manager.start_process(process_id)
    await running(served.manager, process_id)


async def test_health_needs_no_token(served: Served) -> None:
    response = await served.client.get("/api/health", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json()["message"] == "API is healthy."
    containment = served.manager.containment
    assert response.json()["data"] == {
        "containment": containment.name,
        "containmentDetail": containment.where,
        "backend": served.manager.backend.name,
        "backendDetail": served.manager.backend.reason,
    }


async def test_health_under_pm_says_which_containment_is_active(served: Served) -> None:
    response = await served.client.get("/api/pm/health")
    assert response.status_code == 200
    assert response.json()["containment"] in ("cgroup", "tags", "portable")
    assert response.json()["containment"] == served.manager.containment.name


async def test_list_gives_every_state_in_config_order_with_secrets_masked(served: Served) -> None:
    response = await served.client.get("/api/pm/list")
    assert response.status_code == 200
    states = response.json()
    assert [state["id"] for state in states] == ["ticker", "echo", "idle"]
    for state in states:
        assert {"id", "pid", "status", "startTime", "uptime", "restartCount", "lastError", "config"} <= set(
            state
        )
        assert state["status"] == "running" and state["pid"] > 0
    idle = states[2]
    assert idle["config"]["env"] == {"API_KEY": "****", "DB_PASSWORD": "****", "MODE": "plain"}
    assert SECRET_VALUE not in response.text


async def test_start_a_stopped_process(served: Served) -> None:
    await served.manager.stop_process("idle")
    response = await served.client.post("/api/pm/idle/start")
    assert response.status_code == 200
    assert response.json() == {"message": "Process start initiated", "id": "idle"}
    await running(served.manager, "idle")


async def test_start_when_running_is_400(served: Served) -> None:
    response = await served.client.post("/api/pm/idle/start")
    assert response.status_code == 400
    assert response.json() == {"status": 400, "message": "Process is already running.", "data": {}}


@pytest.mark.parametrize("action", ["start", "stop", "restart"])
async def test_actions_on_an_unknown_id_are_404(served: Served, action: str) -> None:
    response = await served.client.post(f"/api/pm/nope/{action}")
    assert response.status_code == 404
    assert response.json() == {"status": 404, "message": "Process not found.", "data": {}}


async def test_stop_waits_until_stopped(served: Served) -> None:
    response = await served.client.post("/api/pm/idle/stop")
    assert response.status_code == 200
    assert response.json() == {"message": "Process stopped", "id": "idle"}
    state = served.manager.state("idle")
    assert state.status is Status.STOPPED and state.pid == 0
    await ensure_running(served, "idle")


async def test_restart_gives_a_new_pid(served: Served) -> None:
    before = served.manager.state("idle")
    response = await served.client.post("/api/pm/idle/restart")
    assert response.status_code == 200
    assert response.json() == {"message": "Process restart initiated", "id": "idle"}
    await running(served.manager, "idle")
    after = served.manager.state("idle")
    assert after.pid != before.pid and after.restart_count == before.restart_count + 1


async def test_logs_default_to_the_last_100_oldest_first(served: Served) -> None:
    response = await served.client.get("/api/pm/echo/logs")
    assert response.status_code == 200
    lines = response.json()
    assert len(lines) == 100
    assert set(lines[0]) == {"timestamp", "processId", "stream", "content", "level"}
    assert lines[-1] == {**lines[-1], "processId": "echo", "stream": "stderr", "content": "the last line"}
    assert [line["content"] for line in lines[:2]] == ["line 1101", "line 1102"]


async def test_logs_lines_n_and_the_1000_cap(served: Served) -> None:
    three = (await served.client.get("/api/pm/echo/logs", params={"lines": 3})).json()
    assert [line["content"] for line in three] == ["line 1198", "line 1199", "the last line"]
    capped = await served.client.get("/api/pm/echo/logs", params={"lines": 1_000_000_000})
    assert capped.status_code == 200
    assert len(capped.json()) == 1000
    assert (await served.client.get("/api/pm/echo/logs", params={"lines": 0})).json() == []


@pytest.mark.parametrize("lines", ["-1", "1e9", "abc", "", "1.5", " 3", "0x10", "9" * 40])
async def test_bad_lines_is_400_naming_the_parameter(served: Served, lines: str) -> None:
    response = await served.client.get("/api/pm/echo/logs", params={"lines": lines})
    assert response.status_code == 400
    body = response.json()
    assert_error(body, 400)
    assert body["message"].startswith("Invalid lines: expected a whole number from 0 to 1000")
    assert body["data"]["lines"]["code"] == "validation_invalid_value"


async def test_logs_of_an_unknown_id_is_404(served: Served) -> None:
    response = await served.client.get("/api/pm/nope/logs")
    assert response.status_code == 404
    assert_error(response.json(), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/pm/list"),
        ("POST", "/api/pm/list"),
        ("GET", "/api/pm/idle/start"),
        ("PUT", "/api/pm/idle/logs"),
    ],
)
async def test_wrong_method_is_405_in_the_error_shape(served: Served, method: str, path: str) -> None:
    response = await served.client.request(method, path)
    assert response.status_code == 405
    assert_error(response.json(), 405)
    assert response.json()["message"] == "Method not allowed."
    assert "allow" in response.headers


async def test_unknown_routes_are_404_in_the_error_shape(served: Served) -> None:
    for path in ("/api/pm/", "/api/pm/idle/kill", "/api/nothing", "/api/pm/idle/logs/extra"):
        response = await served.client.get(path)
        assert response.status_code == 404, path
        assert_error(response.json(), 404)


@pytest.mark.parametrize(
    "target",
    [
        "/api/pm/../start",
        "/api/pm/..%2F..%2Fetc/start",
        "/api/pm/a/b/start",
        "/api/pm/a%2Fb/start",
        "/api/pm/%2e%2e/start",
        "/api/pm/%00/start",
        "/api/pm/%ZZ/start",
        "/api/pm/idle%20/start",
        "/api/pm/%C3%A9t%C3%A9/start",
        "/api/pm/" + "x" * 10240 + "/start",
        "/api/pm/" + "%41" * 3000 + "/logs?lines=1",
    ],
)
async def test_hostile_ids_get_a_clean_404_and_the_server_stays_up(served: Served, target: str) -> None:
    status, body, raw = await served.raw(request_bytes("POST" if target.endswith("start") else "GET", target))
    assert status == 404, raw[:200]
    assert_error(body, 404)
    assert len(raw) < 200  # the id is not echoed back
    assert (await served.client.get("/api/pm/list")).status_code == 200
    assert served.manager.state("idle").status is Status.RUNNING


async def test_an_oversized_body_is_413_and_the_server_stays_up(served: Served) -> None:
    restarts = served.manager.state("idle").restart_count
    response = await served.client.post("/api/pm/idle/restart", content=b"x" * (1024 * 1024))
    assert response.status_code == 413
    assert_error(response.json(), 413)
    assert "limit is 65536 bytes" in response.json()["message"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"y" * 16384

    chunked = await served.client.post("/api/pm/idle/restart", content=chunks())
    assert chunked.status_code == 413
    assert_error(chunked.json(), 413)
    assert served.manager.state("idle").restart_count == restarts, "a rejected request must not act"
    assert (await served.client.get("/api/pm/list")).status_code == 200


async def test_a_small_body_is_accepted_and_ignored(served: Served) -> None:
    response = await served.client.post("/api/pm/idle/stop", json={"force": True})
    assert response.status_code == 200
    await ensure_running(served, "idle")


async def test_a_bad_content_length_is_400(served: Served) -> None:
    status, _, _ = await served.raw(
        request_bytes("POST", "/api/pm/idle/stop", extra="Content-Length: -5\r\n")
    )
    assert status == 400
    assert served.manager.state("idle").status is Status.RUNNING


async def test_an_oversized_request_line_is_a_clean_4xx(served: Served) -> None:
    status, _, _ = await served.raw(request_bytes("GET", "/api/pm/" + "x" * 100_000 + "/logs"))
    assert 400 <= status < 500
    assert (await served.client.get("/api/pm/list")).status_code == 200


async def test_the_dashboard_is_served_without_a_token(served: Served) -> None:
    page = await served.client.get("/", headers={"Authorization": ""})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert (await served.client.get("/api/pm/list", headers={"Authorization": ""})).status_code == 401
    missing = await served.client.get("/no-such-file.js", headers={"Authorization": ""})
    assert missing.status_code == 404
    assert_error(missing.json(), 404)


async def test_head_is_answered_like_get(served: Served) -> None:
    response = await served.client.head("/api/pm/list")
    assert response.status_code == 200 and response.content == b""
