"""The jobs example of examples/jobs, run by a real PocketBase: the migration completes before the worker
starts, a backup run writes a real backup through PocketBase's backup API, and a cleanup run deletes the
old events and keeps the rest."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.pocketbase.conftest import SUPERUSER, PocketBase, wait_for

pytestmark = pytest.mark.pocketbase

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "jobs"


def example_config(env_file: Path) -> list[dict[str, Any]]:
    """examples/jobs/pb_processes.json with absolute paths and the test's credentials."""
    entries: list[dict[str, Any]] = json.loads((EXAMPLE / "pb_processes.json").read_text())
    for entry in entries:
        entry.update(cwd=str(EXAMPLE), envFile=str(env_file))
    return entries


def events(app: PocketBase) -> dict[str, str]:
    """The events collection: record id -> kind."""
    response = app.http.get(
        "/api/collections/events/records", params={"perPage": 500}, headers=app.superuser()
    )
    assert response.status_code == 200, response.text
    return {item["id"]: item["kind"] for item in response.json()["items"]}


def add_event(app: PocketBase, kind: str, at: str) -> str:
    response = app.http.post(
        "/api/collections/events/records", json={"kind": kind, "at": at}, headers=app.superuser()
    )
    assert response.status_code == 200, response.text
    record_id: str = response.json()["id"]
    return record_id


def run_once(app: PocketBase, process_id: str) -> dict[str, Any]:
    """Run a job now through PocketBase (processman run), wait for the run to end: it must be a success,
    and the job is then back to scheduled."""
    response = app.http.post(f"/api/pm/{process_id}/run", headers=app.superuser())
    assert response.status_code == 200, response.text
    assert response.json()["trigger"] == "manual"

    def ended() -> list[dict[str, Any]] | None:
        runs = app.http.get(f"/api/pm/{process_id}/runs", headers=app.superuser()).json()
        return runs if runs and runs[0]["outcome"] is not None else None

    runs = wait_for(ended, 15, f"the run of {process_id} to end")
    assert [(run["trigger"], run["outcome"], run["exitCode"]) for run in runs] == [("manual", "succeeded", 0)]
    wait_for(lambda: app.states()[process_id]["status"] == "scheduled", 5, f"{process_id} scheduled")
    last_exit: dict[str, Any] = app.states()[process_id]["recentExits"][-1]
    return last_exit


def test_the_jobs_example_runs_its_migration_backup_and_cleanup(pocketbase: PocketBase) -> None:
    env_file = pocketbase.root / "jobs.env"
    email, password = SUPERUSER
    env_file.write_text(f"PB_SUPERUSER_EMAIL={email}\nPB_SUPERUSER_PASSWORD='{password}'\n")
    pocketbase.install(example_config(env_file))
    pocketbase.start()

    # The migration completes, then the worker starts: it needs the collection and never failed.
    def migrated_and_working() -> dict[str, dict[str, Any]] | None:
        states = pocketbase.states()
        done = states.get("migrate", {}).get("status") == "completed"
        return states if done and states.get("worker", {}).get("status") == "running" else None

    states = wait_for(migrated_and_working, 15, "migrate completed and the worker running")
    migrate, worker = states["migrate"], states["worker"]
    assert [run["exitCode"] for run in migrate["recentExits"]] == [0]
    migrated_at = datetime.fromisoformat(migrate["recentExits"][0]["time"])
    assert datetime.fromisoformat(worker["startTime"]) >= migrated_at
    assert worker["recentExits"] == [] and worker["restartCount"] == 0
    assert wait_for(lambda: "worker started" in events(pocketbase).values(), 10, "the worker's first event")
    for job in ("backup", "cleanup"):  # armed, nothing run before its time
        assert states[job]["status"] == "scheduled" and states[job]["nextRun"], states[job]
        assert states[job]["recentExits"] == []

    old = {add_event(pocketbase, "old", f"200{n}-01-01 00:00:00.000Z") for n in range(3)}
    recent = add_event(pocketbase, "recent", datetime.now().astimezone().isoformat())

    # A backup run: a real file in pb_data/backups, listed by PocketBase's backup API.
    backup = run_once(pocketbase, "backup")
    written = [path.name for path in (pocketbase.data_dir / "backups").glob("backup_*.zip")]
    assert len(written) == 1 and (pocketbase.data_dir / "backups" / written[0]).stat().st_size > 0
    assert f"backup {written[0]} written" in backup["lastLines"][-1]
    listed = pocketbase.http.get("/api/backups", headers=pocketbase.superuser()).json()
    assert [item["key"] for item in listed] == written

    # A cleanup run: the events older than 30 days go, the others stay.
    cleanup = run_once(pocketbase, "cleanup")
    assert "deleted 3 event(s) older than 30 days" in cleanup["lastLines"][-1]
    left = events(pocketbase)
    assert not old & left.keys()
    assert recent in left and "worker started" in left.values()
