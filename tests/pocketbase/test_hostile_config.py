"""In PocketBase mode a hostile pb_processes.json is reported in supervisor.log, and the API answers
(with no processes) instead of saying "starting" for ever."""

from __future__ import annotations

import pytest
from tests.pocketbase.conftest import PocketBase, wait_for

HOSTILE = {
    "deep": "[" * 100_000 + "]" * 100_000,
    "huge-number": '[{"id": "a", "command": "true", "instances": ' + "9" * 5000 + "}]",
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_config_is_reported_and_the_api_answers(pocketbase: PocketBase, kind: str) -> None:
    pocketbase.install(HOSTILE[kind])
    pocketbase.start()
    log = pocketbase.data_dir / "processman" / "supervisor.log"

    def answered() -> bool:
        return pocketbase.http.get("/api/pm/list", headers=pocketbase.superuser()).status_code != 503

    wait_for(answered, 20, "/api/pm/list to stop answering 503")
    assert pocketbase.http.get("/api/pm/list", headers=pocketbase.superuser()).json() == []
    assert f"{pocketbase.data_dir / 'pb_processes.json'}: " in log.read_text()
