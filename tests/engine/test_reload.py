"""Live config reload and scaling: add, remove, restart the changed, leave the unchanged alone."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from processman import ConfigError, ProcessConfig, ProcessManager, Status, load_config
from processman.api.wire import plan_to_json
from processman.config import configs_from_dicts
from processman.engine.reload import plan_reload
from tests.conftest import alive, wait_until

Factory = Callable[..., ProcessManager]
SLEEP = ["-c", "import time\nwhile True: time.sleep(1)"]


def _entry(process_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": process_id, "command": sys.executable, "args": SLEEP, **fields}


def _write(path: Path, entries: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps(entries))


def _pids(manager: ProcessManager) -> dict[str, int]:
    return {state.id: state.pid for state in manager.states()}


async def test_reload_adds_removes_changes_and_keeps(manager_factory: Factory, tmp_path: Path) -> None:
    path = tmp_path / "pb_processes.json"
    _write(path, [_entry("keep"), _entry("change"), _entry("remove")])
    manager = manager_factory(*load_config(path).processes, config_path=path)
    await manager.start()
    before = _pids(manager)
    _write(path, [_entry("keep"), _entry("change", env={"MODE": "new"}), _entry("add")])

    plan = await manager.reload_from_file(dry_run=True)
    assert plan_to_json(plan) == {
        "added": ["add"],
        "removed": ["remove"],
        "changed": {"change": {"env": {"old": {}, "new": {"MODE": "new"}}}},
        "unchanged": ["keep"],
    }
    assert _pids(manager) == before  # a dry run touches nothing

    await manager.reload_from_file()
    after = _pids(manager)
    assert list(after) == ["keep", "change", "add"]  # the new config order
    assert after["keep"] == before["keep"]
    assert after["change"] not in (0, before["change"]) and not alive(before["change"])
    assert after["add"] != 0 and not alive(before["remove"])
    assert manager.state("change").config.env == {"MODE": "new"}


async def test_a_changed_task_that_failed_runs_again_and_a_completed_one_does_not(
    manager_factory: Factory, tmp_path: Path
) -> None:
    path = tmp_path / "pb_processes.json"
    exits = ["-c", "import os, sys; sys.exit(int(os.environ['CODE']))"]
    task = {"command": sys.executable, "args": exits, "restart": "never"}
    job = {"command": sys.executable, "args": ["-c", "pass"], "schedule": {"every": "1h"}}
    before = [
        {"id": "migrate", **task, "env": {"CODE": "1"}},
        {"id": "seed", **task, "env": {"CODE": "0"}},
        {"id": "nightly", **job},
    ]
    _write(path, before)
    manager = manager_factory(*load_config(path).processes, config_path=path)
    await manager.start()
    await wait_until(manager, lambda: manager.state("migrate").status is Status.FAILED, what="failed")
    await wait_until(manager, lambda: manager.state("seed").status is Status.COMPLETED, what="completed")
    await wait_until(manager, lambda: manager.state("nightly").status is Status.SCHEDULED, what="armed")
    await manager.stop_process("nightly")  # disarmed by the user, then run once by hand
    await manager.run_process("nightly")
    await wait_until(manager, lambda: manager.state("nightly").status is Status.COMPLETED, what="ran")
    after = [
        {"id": "migrate", **task, "env": {"CODE": "0"}},
        {"id": "seed", **task, "env": {"CODE": "0", "MORE": "1"}},
        {"id": "nightly", **job, "env": {"MORE": "1"}},
    ]
    _write(path, after)
    await manager.reload_from_file()
    await wait_until(manager, lambda: manager.state("migrate").status is Status.COMPLETED, what="re-run")
    assert len(manager.runs("migrate")) == 2
    assert len(manager.runs("seed")) == 1, "a completed task is not run again by a reload"
    assert manager.state("nightly").status is Status.COMPLETED, "a job the user disarmed stays unarmed"


async def test_a_broken_reload_changes_nothing_and_says_why(manager_factory: Factory, tmp_path: Path) -> None:
    path = tmp_path / "pb_processes.json"
    _write(path, [_entry("a")])
    manager = manager_factory(*load_config(path).processes, config_path=path)
    await manager.start()
    before = _pids(manager)
    _write(path, [_entry("a", backoff="soon"), _entry("b")])
    with pytest.raises(
        ConfigError, match=r'backoff: expected a duration .* got "soon"(.|\n)*nothing changed'
    ):
        await manager.reload_from_file()
    with pytest.raises(ConfigError) as refused:
        await manager.reload_from_file()
    assert "entry skipped" not in str(refused.value)  # nothing is applied, so nothing is skipped
    path.write_text("[{")
    with pytest.raises(ConfigError, match="invalid JSON"):
        await manager.reload_from_file()
    assert _pids(manager) == before


async def test_scaling_keeps_the_surviving_instances(manager_factory: Factory, tmp_path: Path) -> None:
    path = tmp_path / "pb_processes.json"
    _write(path, [_entry("web", instances=2)])
    manager = manager_factory(*load_config(path).processes, config_path=path)
    await manager.start()
    two = _pids(manager)
    assert list(two) == ["web:0", "web:1"]
    _write(path, [_entry("web", instances=4)])
    plan = await manager.reload_from_file()
    assert plan.added == ("web:2", "web:3") and plan.changed == {}
    four = _pids(manager)
    assert {k: four[k] for k in two} == two and all(four.values())
    _write(path, [_entry("web", instances=1)])
    await manager.reload_from_file()
    assert _pids(manager) == {"web:0": two["web:0"]}
    assert not any(alive(four[k]) for k in ("web:1", "web:2", "web:3"))


async def test_instances_see_their_number(manager_factory: Factory, tmp_path: Path) -> None:
    code = f"import os, time\nopen({str(tmp_path)!r} + '/n' + os.environ['PROCESSMAN_INSTANCE'], 'w')\n"
    code += "time.sleep(60)"
    path = tmp_path / "pb_processes.json"
    _write(path, [{"id": "w", "command": sys.executable, "args": ["-c", code], "instances": 3}])
    manager = manager_factory(*load_config(path).processes)
    await manager.start()
    await wait_until(
        manager, lambda: all((tmp_path / f"n{i}").exists() for i in range(3)), what="three instance files"
    )


async def test_the_config_file_is_watched(manager_factory: Factory, tmp_path: Path) -> None:
    path = tmp_path / "pb_processes.json"
    _write(path, [_entry("a")])
    manager = manager_factory(
        *load_config(path).processes, config_path=path, watch_config=True, config_poll=0.05
    )
    await manager.start()
    await asyncio.sleep(0.1)  # the watcher's first look
    path.write_text("garbage")  # ignored: nothing changes
    await asyncio.sleep(0.3)  # several looks
    assert manager.ids == ["a"] and manager.state("a").status is Status.RUNNING
    replacement = tmp_path / "new.json"
    _write(replacement, [_entry("a"), _entry("b")])
    replacement.replace(path)  # how editors save
    await wait_until(manager, lambda: manager.ids == ["a", "b"], timeout=5, what="b added")
    await wait_until(manager, lambda: manager.state("b").status is Status.RUNNING, what="b running")


def test_the_diff_compares_values_and_names_the_files_fields(tmp_path: Path) -> None:
    def configs(**fields: Any) -> tuple[ProcessConfig, ...]:
        return configs_from_dicts([{"id": "a", "command": "true", **fields}], tmp_path)

    before = configs(**_FIELDS)
    # 1000.5ms is shown as "1s" too: only comparing the values sees the change.
    after = configs(backoff="1000.5ms", readiness={"http": "http://u:new@127.0.0.1/"}, env={"API_KEY": "2"})
    plan = plan_reload(before, after)
    assert plan.changed == {
        "a": {
            "backoff": ("1s", "1s"),
            "env": ({"API_KEY": "****"}, {"API_KEY": "****"}),
            "readiness": (
                _probe("http://u:****@127.0.0.1/"),
                _probe("http://u:****@127.0.0.1/"),
            ),
        }
    }
    assert plan_reload(before, configs(**{**_FIELDS, "backoff": "1s"})).changed == {}


_FIELDS: dict[str, Any] = {
    "backoff": "1s",
    "readiness": {"http": "http://u:old@127.0.0.1/"},
    "env": {"API_KEY": "1"},
}


def _probe(url: str) -> dict[str, Any]:
    return {
        "http": url,
        "status": 200,
        "interval": "1s",
        "timeout": "1s",
        "failureThreshold": 3,
        "initialDelay": "0s",
    }
