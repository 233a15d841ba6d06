"""Seed User Story 3 and SPEC 4: which program runs a script."""

from __future__ import annotations

import shutil
from pathlib import Path

from processman import ProcessConfig
from processman.interpreter import command_line, resolve_interpreter


def _script(tmp_path: Path, name: str) -> ProcessConfig:
    return ProcessConfig(id="s", script=name, cwd=tmp_path)


def _make(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_dot_venv_first_then_venv_then_python3(tmp_path: Path) -> None:
    assert resolve_interpreter(_script(tmp_path, "a.py")) == (shutil.which("python3") or "python3")
    venv = _make(tmp_path / "venv" / "bin" / "python")
    assert resolve_interpreter(_script(tmp_path, "a.py")) == str(venv)
    dot_venv = _make(tmp_path / ".venv" / "bin" / "python")
    assert resolve_interpreter(_script(tmp_path, "a.py")) == str(dot_venv)


def test_node_ts_node_and_direct_execution(tmp_path: Path) -> None:
    node = shutil.which("node") or "node"
    assert resolve_interpreter(_script(tmp_path, "w.js")) == node
    assert resolve_interpreter(_script(tmp_path, "w.mjs")) == node
    assert resolve_interpreter(_script(tmp_path, "w.ts")) == node
    ts_node = _make(tmp_path / "node_modules" / ".bin" / "ts-node")
    assert resolve_interpreter(_script(tmp_path, "w.ts")) == str(ts_node)
    assert resolve_interpreter(_script(tmp_path, "run.sh")) is None
    assert command_line(_script(tmp_path, "run.sh"), None) == [str(tmp_path / "run.sh")]


def test_explicit_interpreter_is_used_as_is(tmp_path: Path) -> None:
    config = ProcessConfig(
        id="s", script="a.py", cwd=tmp_path, interpreter="/opt/py/bin/python", args=("-v",)
    )
    assert resolve_interpreter(config) == "/opt/py/bin/python"
    assert command_line(config, "/opt/py/bin/python") == ["/opt/py/bin/python", str(tmp_path / "a.py"), "-v"]
    assert resolve_interpreter(ProcessConfig(id="c", command="node")) is None
