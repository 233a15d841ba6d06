"""``processman startup``: the systemd unit that starts the app at boot, checked with the real
``systemd-analyze verify``. Units are written to a folder of the test (``--unit-dir``), never to /etc."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from processman.cli.startup import UnitSpec, render_unit, stop_budget
from processman.config import ProcessConfig

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
POCKETBASE = Path(sys.executable).parent / "pocketbase"
NAME = "processman-shop"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """An app folder as PocketBase users lay it out: pb_data with the config, a .env beside it."""
    app = tmp_path / "shop"
    (app / "pb_data").mkdir(parents=True)
    processes = [
        {"id": "db", "command": "sleep", "args": ["600"], "stopTimeout": "30s"},
        {"id": "api", "command": "sleep", "args": ["600"], "stopTimeout": "20s", "dependsOn": ["db"]},
        {"id": "worker", "command": "sleep", "args": ["600"], "stopTimeout": "45s"},
    ]
    (app / "pb_data" / "pb_processes.json").write_text(json.dumps(processes))
    (app / ".env").write_text("PROCESSMAN_TOKEN=not-in-the-unit\n")
    return app


def startup(app: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    environment = {**os.environ, "PATH": "/usr/bin:/bin"}
    environment.pop("PROCESSMAN_UNIT_DIR", None)
    environment.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "processman", "startup", *args],
        cwd=app,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def verify(unit: Path, *, user: bool = False) -> None:
    """``systemd-analyze verify``: exit 0 and not a word about the unit (unknown keys only warn)."""
    assert os.access(SYSTEMD_ANALYZE, os.X_OK), f"{SYSTEMD_ANALYZE} is missing: apt-get install systemd"
    command = [SYSTEMD_ANALYZE, *(["--user"] if user else []), "verify", str(unit)]
    env = dict(os.environ)
    if user:  # the user manager's runtime folder; a temp one is enough for verify
        runtime = unit.parent / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr


def keys(unit: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))


def test_print_gives_a_serve_unit_that_systemd_accepts(app: Path, tmp_path: Path) -> None:
    run = startup(app, "--print")
    assert run.code == 0, run.stderr
    unit = tmp_path / f"{NAME}.service"
    unit.write_text(run.stdout)
    verify(unit)
    found = keys(run.stdout)
    assert found["ExecStart"] == f"{sys.executable} -m processman serve --dir {app / 'pb_data'}"
    assert found["User"] == getpass.getuser()
    assert found["WorkingDirectory"] == str(app)
    assert found["EnvironmentFile"] == str(app / ".env")
    assert "not-in-the-unit" not in run.stdout
    assert found["Delegate"] == "yes"
    assert found["KillMode"] == "mixed"
    # db stops after api, which depends on it: 20 s + 30 s, more than worker's 45 s; then the margin.
    assert found["TimeoutStopSec"] == "60s"
    assert found["SuccessExitStatus"] == "143"
    assert found["WantedBy"] == "multi-user.target"
    assert not (Path("/etc/systemd/system") / f"{NAME}.service").exists()


def test_a_user_unit_has_no_user_line_and_starts_with_the_users_manager(app: Path, tmp_path: Path) -> None:
    (app / ".env").unlink()
    run = startup(app, "--print", "--user")
    assert run.code == 0, run.stderr
    unit = tmp_path / f"{NAME}.service"
    unit.write_text(run.stdout)
    verify(unit, user=True)
    found = keys(run.stdout)
    assert "User" not in found
    assert "EnvironmentFile" not in found, "no .env: no EnvironmentFile"
    assert found["WantedBy"] == "default.target"
    assert "loginctl enable-linger" in run.stderr


def test_the_pocketbase_unit_runs_pocketbase_serve_with_the_hooks(app: Path, tmp_path: Path) -> None:
    assert os.access(POCKETBASE, os.X_OK), f"{POCKETBASE} is missing: pip install -e '.[test]'"
    units = tmp_path / "units"
    run = startup(app, "--pocketbase", "--unit-dir", str(units), "--http", "0.0.0.0:8090")
    assert run.code == 0, run.stderr
    unit = units / f"{NAME}.service"
    verify(unit)
    found = keys(unit.read_text())
    hooks = app / "pb_hooks"
    assert found["ExecStart"] == (
        f"{POCKETBASE} serve --http 0.0.0.0:8090 --dir {app / 'pb_data'} --hooksDir {hooks}"
    )
    assert (hooks / "processman.pb.js").is_file(), "the hooks are installed with the unit"
    assert found["TimeoutStopSec"] == "60s"
    assert found["KillMode"] == "mixed"
    assert "SuccessExitStatus" not in found, "pocketbase exits 0 on SIGTERM"
    assert "systemd is not running" in run.stderr, "not enabled here, and it says why"


def test_without_systemd_it_says_so_and_prints_the_unit(app: Path) -> None:
    if Path("/run/systemd/system").exists():
        pytest.skip("systemd runs here: without --unit-dir this would write to /etc/systemd/system")
    run = startup(app)
    assert run.code == 0, run.stderr
    assert "systemd is not running" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert keys(run.stdout)["KillMode"] == "mixed"
    assert not (Path("/etc/systemd/system") / f"{NAME}.service").exists()


def test_remove_deletes_what_was_written_and_nothing_else(app: Path, tmp_path: Path) -> None:
    units = tmp_path / "units"
    run = startup(app, env={"PROCESSMAN_UNIT_DIR": str(units)})
    assert run.code == 0, run.stderr
    unit = units / f"{NAME}.service"
    assert f"wrote {unit}" in run.stdout
    verify(unit)

    run = startup(app, "--remove", "--unit-dir", str(units))
    assert run.code == 0, run.stderr
    assert f"removed {unit}" in run.stdout
    assert not unit.exists()
    run = startup(app, "--remove", "--unit-dir", str(units))
    assert run.code == 0, run.stderr
    assert "nothing to remove" in run.stdout

    unit.write_text("[Service]\nExecStart=/bin/true\n")  # the user's own unit of that name
    run = startup(app, "--remove", "--unit-dir", str(units))
    assert run.code == 1
    assert "processman startup did not write it" in run.stderr
    assert unit.exists()


def test_arguments_with_spaces_and_percent_signs_reach_the_command(tmp_path: Path) -> None:
    folder = tmp_path / "my app %n"  # %n: a specifier, the unit name, unless escaped
    folder.mkdir()
    python = folder / "py thon"
    python.symlink_to(sys.executable)
    spec = UnitSpec(
        name="processman-my-app",
        description="processman: my app",
        exec_start=(str(python), "-m", "processman", "serve", "--dir", str(folder / "pb_data")),
        working_directory=folder,
        user=None,
        environment_file=None,
        timeout_stop=15,
    )
    unit = tmp_path / "processman-my-app.service"
    unit.write_text(render_unit(spec))
    verify(unit)  # a path cut at its space or a "%a" specifier would be "not executable"
    assert f'ExecStart="{python}" -m' in unit.read_text().replace("%%", "%")


def test_the_stop_budget_follows_the_longest_chain_of_stops() -> None:
    def process(process_id: str, stop: float, after: str = "") -> ProcessConfig:
        depends_on = {after: "started"} if after else {}
        return ProcessConfig(id=process_id, command="sleep", stop_timeout=stop, depends_on=depends_on)

    assert stop_budget([]) == 20  # serve's default stopTimeout and the margin
    chain = [
        process("a", 5),
        process("b", 7, after="a"),
        process("c", 3, after="b"),
    ]
    assert stop_budget(chain) == 5 + 7 + 3 + 10
