"""A plain ``pocketbase serve`` with the hooks installed: the sidecars run, the API is on PocketBase's port
behind its superuser auth, output reaches PocketBase's logs, and events reach superusers over realtime.

One PocketBase serves the whole module; each test leaves its processes running."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.pocketbase.conftest import SLEEPER, PocketBase, Realtime, processes_of, sidecar, wait_for

from processman.api.app import DASHBOARD_DIR

pytestmark = pytest.mark.pocketbase

GREETER = """
import os, sys, time
print("hello from greeter on port", os.environ["PB_PORT"], os.environ["PB_URL"], os.environ["PB_DATA_DIR"])
print("warning from greeter", file=sys.stderr)
print("secret visible:", any(name in os.environ for name in ("PM_SECRET", "PB_HTTP")))
while True: time.sleep(1)
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PocketBase]:
    pocketbase = PocketBase(tmp_path_factory.mktemp("pb"))
    try:
        early = {
            "id": "early",
            "command": "sh",
            "args": ["-c", "echo early bird; exec sleep 1000"],
            "group": "background",
        }
        sleeper = sidecar("sleeper", SLEEPER, stopTimeout="2s", group="background")
        processes = [sidecar("greeter", GREETER), sleeper, early]
        pocketbase.install(processes)
        pocketbase.start()
        yield pocketbase
    finally:
        pocketbase.close()


def test_sidecars_run_within_seconds_with_pocketbases_real_address(app: PocketBase) -> None:
    states = app.wait_running("greeter", "sleeper", timeout=5)
    assert states["greeter"]["config"]["command"]
    logs = app.http.get("/api/pm/greeter/logs", headers=app.superuser())
    assert logs.status_code == 200
    lines = [line["content"] for line in logs.json()]
    assert f"hello from greeter on port {app.port} {app.url} {app.data_dir}" in lines
    assert "secret visible: False" in lines  # the hook's secret never reaches a sidecar


def test_the_api_needs_a_superuser(app: PocketBase) -> None:
    assert app.http.get("/api/pm/list").status_code == 401
    user = app.http.get("/api/pm/list", headers={"Authorization": app.user_token()})
    assert user.status_code == 403
    assert (
        app.http.post("/api/pm/sleeper/restart", headers={"Authorization": app.user_token()}).status_code
        == 403
    )
    assert app.http.get("/api/pm/list", headers={"Authorization": "garbage"}).status_code == 401
    response = app.http.get("/api/pm/list", headers=app.superuser())
    assert response.status_code == 200
    assert [state["id"] for state in response.json()] == ["greeter", "sleeper", "early"]


def test_start_stop_restart_and_logs_through_pocketbase(app: PocketBase) -> None:
    su = app.superuser()
    pid = app.wait_running("sleeper")["sleeper"]["pid"]
    response = app.http.post("/api/pm/sleeper/restart", headers=su)
    assert (response.status_code, response.json()) == (
        200,
        {"message": "Process restart initiated", "id": "sleeper"},
    )
    new_pid = app.wait_running("sleeper")["sleeper"]["pid"]
    assert new_pid != pid

    response = app.http.post("/api/pm/sleeper/stop", headers=su)
    assert (response.status_code, response.json()) == (200, {"message": "Process stopped", "id": "sleeper"})
    assert app.states()["sleeper"]["status"] == "stopped"
    assert new_pid not in [p.pid for p in processes_of(app.data_dir)]

    response = app.http.post("/api/pm/sleeper/start", headers=su)
    assert (response.status_code, response.json()["message"]) == (200, "Process start initiated")
    app.wait_running("sleeper")
    assert app.http.post("/api/pm/sleeper/start", headers=su).status_code == 400

    logs = app.http.get("/api/pm/greeter/logs", params={"lines": 1}, headers=su)
    assert logs.status_code == 200 and len(logs.json()) == 1
    assert set(logs.json()[0]) == {"timestamp", "processId", "stream", "content", "level"}
    assert app.http.get("/api/pm/greeter/logs", params={"lines": "x"}, headers=su).status_code == 400
    missing = app.http.post("/api/pm/nobody/restart", headers=su)
    assert (missing.status_code, missing.json()["status"]) == (404, 404)
    encoded = app.http.get("/api/pm/a%2Fb/logs", headers=su)
    assert encoded.status_code == 404


def test_signal_and_containment_through_pocketbase(app: PocketBase) -> None:
    su = app.superuser()
    app.wait_running("greeter")
    user = app.http.post(
        "/api/pm/greeter/signal", json={"signal": "WINCH"}, headers={"Authorization": app.user_token()}
    )
    assert user.status_code == 403
    sent = app.http.post("/api/pm/greeter/signal", json={"signal": "WINCH"}, headers=su)
    assert (sent.status_code, sent.json()["signal"], sent.json()["processes"]) == (200, "SIGWINCH", 1)
    refused = app.http.post("/api/pm/greeter/signal", json={"signal": "KILL"}, headers=su)
    assert refused.status_code == 400 and "bypasses the stop ladder" in refused.json()["message"]
    health = app.http.get("/api/pm/health", headers=su)
    assert health.status_code == 200 and health.json()["containment"] in ("cgroup", "tags", "portable")


def test_streams_point_to_realtime_instead_of_hanging(app: PocketBase) -> None:
    su = app.superuser()
    follow = app.http.get("/api/pm/greeter/logs", params={"follow": "1"}, headers=su, timeout=5)
    assert follow.status_code == 400
    assert "realtime topic pm/logs/greeter" in follow.json()["message"]
    events = app.http.get("/api/pm/events", headers=su, timeout=5)
    assert (events.status_code, events.json()["status"]) == (400, 400)
    assert "realtime topic pm/events" in events.json()["message"]
    assert app.http.get("/api/pm/events", timeout=5).status_code == 401


def test_sidecar_output_appears_in_pocketbases_logs(app: PocketBase) -> None:
    # PocketBase writes its log 3 s after the last entry (or every 200 entries).
    def mirrored() -> dict[str, dict[str, Any]] | None:
        items = app.logs("data.process='greeter' && (message~'hello from' || message~'warning from')")
        by_stream = {item["data"]["stream"]: item for item in items}
        return by_stream if len(by_stream) == 2 else None

    by_stream = wait_for(mirrored, 15, "greeter's lines in GET /api/logs", interval=0.5)
    stdout, stderr = by_stream["stdout"], by_stream["stderr"]
    assert stdout["message"] == f"hello from greeter on port {app.port} {app.url} {app.data_dir}"
    assert stdout["level"] == 0  # Info
    assert stderr["message"] == "warning from greeter"
    assert stderr["level"] == 8  # Error
    assert stdout["data"]["pm"] is True and stdout["data"]["process"] == "greeter"
    assert stdout["data"]["time"].endswith("Z")
    # Lines written before the bridge to PocketBase was up are there too.
    assert app.logs("data.process='early' && message='early bird'")
    # And the supervisor's own records.
    started = app.logs("data.source='processman' && message~'greeter: started pid'")
    assert started, "the supervisor's 'started' line is not in PocketBase's logs"


def test_superusers_get_state_changes_and_followed_logs_over_realtime(app: PocketBase) -> None:
    app.wait_running("greeter")
    superuser = Realtime(app, app.superuser_token())
    user = Realtime(app, app.user_token(), read_timeout=1.0)
    try:
        superuser.subscribe("pm/events", "pm/logs/greeter")
        user.subscribe("pm/events", "pm/logs/greeter")
        response = app.http.post("/api/pm/greeter/restart", headers=app.superuser())
        assert response.status_code == 200

        _, event = superuser.wait_event(
            lambda name, data: name == "pm/events" and data.get("status") == "running",
            "state change to running on pm/events",
        )
        assert event["type"] == "status" and event["id"] == "greeter"
        assert event["state"]["status"] == "running" and event["state"]["pid"] == event["pid"]
        _, lines = superuser.wait_event(
            lambda name, data: name == "pm/logs/greeter" and any("hello" in x["content"] for x in data),
            "greeter's new output on pm/logs/greeter",
        )
        line = next(line for line in lines if "hello" in line["content"])
        assert line["processId"] == "greeter" and line["stream"] == "stdout"

        with pytest.raises(httpx.ReadTimeout):
            user.next_event()  # a regular user receives nothing
    finally:
        superuser.close()
        user.close()


def test_dashboard_is_forwarded_without_auth_but_never_the_api(app: PocketBase) -> None:
    redirect = app.http.get("/pm", follow_redirects=False)
    assert (redirect.status_code, redirect.headers["location"]) == (302, "/pm/")
    page = app.http.get("/pm/")
    if (DASHBOARD_DIR / "index.html").exists():
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    else:
        assert page.status_code == 404
    assert app.http.get("/pm/api/pm/list").status_code == 404


def test_the_supervisor_routes_refuse_a_wrong_secret(app: PocketBase) -> None:
    for path in ("/api/pm/register", "/api/pm/ingest", "/api/pm/broadcast"):
        response = app.http.post(path, json={"port": 1}, headers={"X-PM-Secret": "guess"})
        assert response.status_code == 401, path
    app.wait_running("greeter")  # still registered with the real port


def test_metrics_pass_through_for_superusers_only(app: PocketBase) -> None:
    app.wait_running("greeter")
    assert app.http.get("/api/pm/metrics").status_code == 401
    assert app.http.get("/api/pm/metrics", headers={"Authorization": app.user_token()}).status_code == 403
    response = app.http.get("/api/pm/metrics", headers=app.superuser())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    up = {
        sample.labels["id"]: sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "processman_process_up"
        for sample in family.samples
    }
    assert up["greeter"] == 1


def test_groups_through_pocketbase(app: PocketBase) -> None:
    su = app.superuser()
    before = app.wait_running("sleeper", "early")
    listed = app.http.get("/api/pm/list", params={"group": "background"}, headers=su)
    assert [state["id"] for state in listed.json()] == ["sleeper", "early"]
    response = app.http.post("/api/pm/group:background/restart", headers=su, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "message": "Group restart initiated",
        "id": "group:background",
        "ids": ["sleeper", "early"],
    }
    after = app.wait_running("sleeper", "early")
    assert all(after[i]["pid"] != before[i]["pid"] for i in ("sleeper", "early"))
    lines = app.http.get("/api/pm/logs", params={"group": "background"}, headers=su).json()
    assert "early bird" in [line["content"] for line in lines]
    assert {line["processId"] for line in lines} <= {"sleeper", "early"}
    everything = app.http.get("/api/pm/logs", headers=su).json()
    assert "greeter" in {line["processId"] for line in everything}
    for path in ("/api/pm/logs", "/api/pm/group:background/logs"):
        follow = app.http.get(path, params={"follow": "1"}, headers=su, timeout=5)
        assert follow.status_code == 400 and "realtime topic pm/logs/<id>" in follow.json()["message"]
