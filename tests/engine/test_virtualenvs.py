"""Virtualenvs activated, not just found: a real venv holding a module the system Python lacks, and
sidecars that run ``python`` themselves."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from processman import ProcessManager, Status
from processman.api.wire import state_to_json
from processman.config import load_config
from tests.conftest import wait_for_path, wait_until

Factory = Callable[..., ProcessManager]
MODULE = "processman_venv_probe_module"

# Runs a plain "python" itself, as a sidecar that calls subprocess.run does.
SIDECAR = f"""
import json, os, subprocess, sys
child = subprocess.run(
    ["python", "-c", "import {MODULE}; print({MODULE}.WHERE)"], capture_output=True, text=True
)
result = {{
    "virtualEnv": os.environ.get("VIRTUAL_ENV"),
    "path": os.environ["PATH"].split(os.pathsep)[0],
    "prefix": sys.prefix,
    "child": child.stdout.strip(),
    "childError": child.stderr.strip()[-300:],
}}
out = sys.argv[1]
with open(out + ".tmp", "w") as f:
    json.dump(result, f)
os.replace(out + ".tmp", out)
import time
time.sleep(3600)
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real virtualenv (made offline: no pip) whose site-packages holds a module of its own."""
    folder = tmp_path_factory.mktemp("venv-project") / "app" / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    (site_packages,) = folder.glob("lib/python3*/site-packages")
    (site_packages / f"{MODULE}.py").write_text("WHERE = 'inside the virtualenv'\n")
    return folder


def test_the_system_python_lacks_the_module(venv: Path) -> None:
    found = subprocess.run([sys.executable, "-c", f"import {MODULE}"], capture_output=True)
    assert found.returncode != 0, "the test module must only exist inside the virtualenv"


def _write_config(folder: Path, entries: list[dict[str, object]]) -> Path:
    path = folder / "pb_processes.json"
    path.write_text(json.dumps(entries))
    return path


async def test_a_sidecar_in_a_subfolder_runs_inside_the_virtualenv_above_it(
    manager_factory: Factory, venv: Path
) -> None:
    project = venv.parent.parent  # <project>/app/.venv
    work = project / "app" / "worker"
    work.mkdir(exist_ok=True)
    (work / "sidecar.py").write_text(textwrap.dedent(SIDECAR))
    out_script, out_command = project / "script.json", project / "command.json"
    path = _write_config(
        project,
        [
            # A script: run by the venv's python, found in the parent folder of cwd.
            {"id": "script", "script": "sidecar.py", "cwd": "app/worker", "args": [str(out_script)]},
            # A command named "python": found in the venv's bin, first on PATH.
            {
                "id": "command",
                "command": "python",
                "cwd": "app/worker",
                "args": ["sidecar.py", str(out_command)],
            },
        ],
    )
    loaded = load_config(path)
    assert loaded.problems == ()
    manager = manager_factory(*loaded.processes)
    await manager.start()
    for out in (out_script, out_command):
        seen = json.loads(await wait_for_path(out))
        assert seen["virtualEnv"] == str(venv)
        assert seen["path"] == str(venv / "bin")
        assert seen["prefix"] == str(venv)
        assert seen["child"] == "inside the virtualenv", seen["childError"]
    shown = state_to_json(manager.state("script"))
    assert shown["virtualenv"] == str(venv) and shown["virtualenvLookedIn"] == []
    assert shown["config"]["interpreter"] == str(venv / "bin" / "python")


async def test_without_a_virtualenv_processman_says_where_it_looked(
    manager_factory: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A virtualenv above the config file's folder is not used: the search stops at that folder.
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    project = tmp_path / "project"
    (project / "app").mkdir(parents=True)
    (project / "app" / "main.py").write_text("import time\ntime.sleep(3600)\n")
    loaded = load_config(_write_config(project, [{"id": "bare", "script": "main.py", "cwd": "app"}]))
    manager = manager_factory(*loaded.processes)
    with caplog.at_level(logging.INFO, logger="processman"):
        await manager.start()
        await wait_until(manager, lambda: manager.state("bare").status is Status.RUNNING, what="running")
    looked = f"no virtualenv (.venv and venv looked for in {project / 'app'}, {project})"
    assert any("bare: started pid" in r.getMessage() and looked in r.getMessage() for r in caplog.records)
    assert any(looked in line.content and line.stream == "system" for line in manager.logs("bare"))
    shown = state_to_json(manager.state("bare"))
    assert shown["virtualenv"] is None
    assert shown["virtualenvLookedIn"] == [str(project / "app"), str(project)]


async def test_an_interpreter_inside_a_virtualenv_activates_it(manager_factory: Factory, venv: Path) -> None:
    project = venv.parent.parent
    other = project / "elsewhere"
    other.mkdir(exist_ok=True)
    (other / "sidecar.py").write_text(textwrap.dedent(SIDECAR))
    out = project / "explicit.json"
    path = _write_config(
        project,
        [
            {
                "id": "explicit",
                "script": "sidecar.py",
                "cwd": "elsewhere",
                "interpreter": str(venv / "bin" / "python"),
                "args": [str(out)],
            }
        ],
    )
    manager = manager_factory(*load_config(path).processes)
    await manager.start()
    seen = json.loads(await wait_for_path(out))
    assert seen["virtualEnv"] == str(venv) and seen["child"] == "inside the virtualenv"


async def test_a_program_that_is_not_python_gets_no_virtualenv_words(
    manager_factory: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = load_config(_write_config(tmp_path, [{"id": "nap", "command": "sleep", "args": ["3600"]}]))
    manager = manager_factory(*loaded.processes)
    with caplog.at_level(logging.INFO, logger="processman"):
        await manager.start()
        await wait_until(manager, lambda: manager.state("nap").status is Status.RUNNING, what="running")
    started = [r.getMessage() for r in caplog.records if "nap: started pid" in r.getMessage()]
    assert started and not any("virtualenv" in message for message in started), started
