"""Which program runs a process (SPEC 4), and its virtualenv: explicit interpreter, virtualenv
detection, node, ts-node.

A virtualenv is ``.venv`` or ``venv`` holding ``bin/python``, looked for in the process's ``cwd`` and
then in each parent folder up to the config file's folder (just ``cwd`` for a config built in code), or
the one an explicit ``interpreter`` lives in. The process is then run *inside* it: ``VIRTUAL_ENV`` is
set and its ``bin`` comes first on ``PATH`` (see :func:`processman.environment.activate_venv`), so
``subprocess.run(["python", ...])`` in the child finds the virtualenv's packages too.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from processman.config import ProcessConfig

_NODE_SUFFIXES = (".js", ".mjs", ".cjs")
VENV_NAMES = (".venv", "venv")
VENV_BIN = "Scripts" if sys.platform == "win32" else "bin"
_VENV_PYTHON = "python.exe" if sys.platform == "win32" else "python"


@dataclass(frozen=True)
class VenvLookup:
    """The virtualenv a process runs in (None: none), and the folders searched for one, in order."""

    venv: Path | None
    looked_in: tuple[Path, ...] = ()

    def describe(self) -> str:
        """``virtualenv /app/.venv``, or where none was found."""
        if self.venv is not None:
            return f"virtualenv {self.venv}"
        if not self.looked_in:
            return "no virtualenv"
        names = " and ".join(VENV_NAMES)
        return f"no virtualenv ({names} looked for in {', '.join(map(str, self.looked_in))})"


def _search_folders(config: ProcessConfig) -> list[Path]:
    """``cwd``, then each parent up to the config file's folder (when ``cwd`` is inside it)."""
    folders = [config.cwd]
    root = config.root
    if root is not None and config.cwd.is_relative_to(root):
        folder = config.cwd
        while folder != root:
            folder = folder.parent
            folders.append(folder)
    return folders


def venv_of(program: Path) -> Path | None:
    """The virtualenv a program path lives in (``<venv>/bin/<program>``, beside its pyvenv.cfg)."""
    # Not resolved: a virtualenv's python is a symlink to the base interpreter.
    if program.parent.name == VENV_BIN and (program.parent.parent / "pyvenv.cfg").is_file():
        return program.parent.parent
    return None


def find_venv(config: ProcessConfig) -> VenvLookup:
    """The virtualenv ``config`` runs in: the one its explicit interpreter (or command path) lives in,
    or one found from ``cwd`` up."""
    if config.interpreter != "auto":
        if "/" not in config.interpreter:
            return VenvLookup(None)
        return VenvLookup(venv_of(config.cwd / config.interpreter))  # cwd / an absolute path: the path
    if config.command is not None and "/" in config.command:
        found = venv_of(config.cwd / config.command)
        if found is not None:
            return VenvLookup(found)
    looked: list[Path] = []
    for folder in _search_folders(config):
        looked.append(folder)
        for name in VENV_NAMES:
            candidate = folder / name
            if (candidate / VENV_BIN / _VENV_PYTHON).exists():
                return VenvLookup(candidate, tuple(looked))
    return VenvLookup(None, tuple(looked))


def uses_system_python(config: ProcessConfig, venv: VenvLookup) -> bool:
    """True when a Python program runs outside any virtualenv: then where processman looked is said."""
    if venv.venv is not None:
        return False
    # os.path, not Path: every state the API reports asks this (a Path is ten times slower).
    if config.script is not None:
        return config.interpreter == "auto" and os.path.splitext(config.script)[1].lower() == ".py"
    return os.path.basename(config.command or "").startswith("python")


def resolve_interpreter(config: ProcessConfig, venv: VenvLookup | None = None) -> str | None:
    """The interpreter for a script, or None when the script or command runs directly."""
    if config.script is None:
        return None
    if config.interpreter != "auto":
        return config.interpreter
    suffix = Path(config.script).suffix.lower()
    if suffix == ".py":
        found = (venv or find_venv(config)).venv
        if found is not None:
            return str(found / VENV_BIN / _VENV_PYTHON)
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
