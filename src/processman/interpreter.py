"""Which program runs a process (SPEC 4): explicit interpreter, virtualenv detection, node, ts-node."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from processman.config import ProcessConfig

_NODE_SUFFIXES = (".js", ".mjs", ".cjs")
_VENV_PYTHON = ("Scripts/python.exe",) if sys.platform == "win32" else ("bin/python",)


def resolve_interpreter(config: ProcessConfig) -> str | None:
    """The interpreter for a script, or None when the script or command runs directly."""
    if config.script is None:
        return None
    if config.interpreter != "auto":
        return config.interpreter
    suffix = Path(config.script).suffix.lower()
    if suffix == ".py":
        for venv in (".venv", "venv"):
            for relative in _VENV_PYTHON:
                candidate = config.cwd / venv / relative
                if candidate.exists():
                    return str(candidate)
        return _on_path("python3")
    if suffix in _NODE_SUFFIXES:
        return _on_path("node")
    if suffix == ".ts":
        ts_node = config.cwd / "node_modules" / ".bin" / "ts-node"
        return str(ts_node) if ts_node.exists() else _on_path("node")
    return None


def _on_path(name: str) -> str:
    return shutil.which(name) or name


def command_line(config: ProcessConfig, interpreter: str | None) -> list[str]:
    """The argv to execute. Scripts resolve against ``cwd``; commands are looked up on PATH."""
    if config.command is not None:
        return [config.command, *config.args]
    assert config.script is not None
    script = str(config.cwd / config.script)
    if interpreter is None:
        return [script, *config.args]
    return [interpreter, script, *config.args]
