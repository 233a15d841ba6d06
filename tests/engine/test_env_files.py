"""``envFile``: dotenv files read at every start, with real children printing what they got."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from processman import ProcessConfig, ProcessManager, Status
from processman.api.wire import state_to_json
from processman.config import config_to_json, load_config
from tests.conftest import config, wait_for_path, wait_until

Factory = Callable[..., ProcessManager]

# Writes the variables it was given to a file, then waits.
SHOW_ENV = """
import json, os, sys, time
names = ["FROM_MANAGER", "SHARED", "ONLY_FILE", "DB_PASSWORD", "DATABASE_URL", "QUOTED"]
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump({name: os.environ.get(name) for name in names}, f)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(3600)
"""


async def test_env_files_are_read_at_every_start_and_env_wins(
    manager_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "common.env"
    first.write_text("SHARED=from-common\nONLY_FILE=one\nDB_PASSWORD=hunter2\n")
    second = tmp_path / "local.env"
    second.write_text("# comment\nexport SHARED='from local'\nQUOTED=\"a b # c\"\n")
    out = tmp_path / "env.json"
    process = config(
        "web",
        SHOW_ENV,
        env_file=[first, second],
        env={"DATABASE_URL": "postgres://app:${DB_PASSWORD}@db/app"},
    )
    process = replace(process, args=(*process.args, str(out)))
    monkeypatch.setenv("FROM_MANAGER", "m")
    monkeypatch.setenv("SHARED", "from-manager")
    manager = manager_factory(process)
    await manager.start()
    seen = json.loads(await wait_for_path(out))
    # The manager's environment < the files (later ones win) < env, which may quote a file's value.
    assert seen == {
        "FROM_MANAGER": "m",
        "SHARED": "from local",
        "ONLY_FILE": "one",
        "DB_PASSWORD": "hunter2",
        "DATABASE_URL": "postgres://app:hunter2@db/app",
        "QUOTED": "a b # c",
    }
    # What the files held is reported, secrets masked like env values.
    shown = state_to_json(manager.state("web"))
    assert shown["envFromFiles"]["DB_PASSWORD"] == "****"
    assert shown["envFromFiles"]["ONLY_FILE"] == "one"
    assert shown["config"]["envFile"] == [str(first), str(second)]
    assert "hunter2" not in json.dumps(shown)

    # An edited file applies on the next restart.
    first.write_text("SHARED=x\nONLY_FILE=two\nDB_PASSWORD=s3cret\n")
    out.unlink()
    await manager.restart_process("web")
    seen = json.loads(await wait_for_path(out))
    assert seen["ONLY_FILE"] == "two" and seen["DATABASE_URL"] == "postgres://app:s3cret@db/app"


async def test_a_missing_env_file_keeps_the_process_from_starting(
    manager_factory: Factory, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.env"
    manager = manager_factory(config("web", "import time; time.sleep(60)", env_file=missing, max_retries=0))
    await manager.start()
    await wait_until(manager, lambda: manager.state("web").status is Status.FAILED, what="failed")
    assert f"cannot start: envFile {missing} does not exist" in manager.state("web").last_error
    assert any(f"envFile {missing} does not exist" in line.content for line in manager.logs("web"))


def test_env_file_paths_are_relative_to_the_config_files_folder(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    path = tmp_path / "pb_processes.json"
    path.write_text(
        json.dumps(
            [
                {"id": "a", "command": "true", "cwd": "app", "envFile": ".env"},
                {"id": "b", "command": "true", "envFile": ["x.env", "/etc/y.env"]},
            ]
        )
    )
    loaded = load_config(path)
    assert loaded.problems == ()
    a, b = loaded.processes
    assert a.env_file == (tmp_path / ".env",)
    assert b.env_file == (tmp_path / "x.env", Path("/etc/y.env"))
    assert config_to_json(a)["envFile"] == [str(tmp_path / ".env")]
    assert "envFile" not in config_to_json(ProcessConfig(id="c", command="true"))


async def test_a_line_that_cannot_be_parsed_is_skipped_and_said(
    manager_factory: Factory, tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ONLY_FILE=kept\nthis is not = a variable\n")
    out = tmp_path / "env.json"
    process = config("web", SHOW_ENV, env_file=env_file)
    process = replace(process, args=(*process.args, str(out)))
    manager = manager_factory(process)
    await manager.start()
    assert json.loads(await wait_for_path(out))["ONLY_FILE"] == "kept"
    notes = [line.content for line in manager.logs("web") if line.stream == "system"]
    assert f"envFile {env_file}: line 2 cannot be parsed; it is skipped" in notes
