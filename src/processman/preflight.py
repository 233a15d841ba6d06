"""What keeps a well-formed config from starting: the things it names that do not exist.

:func:`processman.config.load_config` checks the format and touches nothing but the file;
:func:`check_environment` looks at the machine: the working directory, the script, the command on the
``PATH`` the child would get, the interpreter, the ``envFile`` files. ``processman check`` reports what
it finds as errors, and ``serve`` names these processes at start-up (and starts the rest). The words
are the ones the engine's :class:`~processman.errors.SpawnError` uses when such a start fails, because
the engine builds its messages with the functions below.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from processman.config import LoadedConfig, ProcessConfig
from processman.envfile import read_env_files, skipped_lines
from processman.environment import activate_venv, child_environment
from processman.errors import SpawnError
from processman.interpreter import (
    VENV_BIN,
    VenvLookup,
    command_line,
    find_venv,
    resolve_interpreter,
    uses_system_python,
)

_SHOWN_PATH = 300  # characters of a PATH quoted in a message


@dataclass(frozen=True)
class StartProblem:
    """Why one config entry cannot start."""

    entry: str
    message: str  # "cannot start: ..."

    def __str__(self) -> str:
        return f"{self.entry}: {self.message}"


def missing_cwd(config: ProcessConfig) -> str | None:
    if config.cwd.is_dir():
        return None
    return f"cannot start: working directory {config.cwd} does not exist"


def find_program(name: str, cwd: Path, path: str | None) -> Path | None:
    """Where exec would find ``name``: a name with a '/' is relative to ``cwd``, others are looked up on
    ``path``."""
    if "/" in name:
        candidate = cwd / name  # an absolute name stays itself
        return candidate if candidate.is_file() else None
    for folder in (path if path is not None else os.defpath).split(os.pathsep):
        candidate = (cwd / folder if folder else cwd) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def missing_script(config: ProcessConfig, interpreter: str | None) -> str | None:
    if config.script is None:
        return None
    argv = command_line(config, interpreter)
    script = Path(argv[1] if interpreter is not None else argv[0])
    return None if script.exists() else f"cannot start: script {script} does not exist"


def missing_program(config: ProcessConfig, interpreter: str | None, env: Mapping[str, str]) -> str | None:
    """Why the program of ``config`` cannot be executed with ``env``'s PATH (the command, the script,
    its interpreter); None when everything it names exists."""
    path = env.get("PATH")
    if config.command is not None:
        if find_program(config.command, config.cwd, path) is not None:
            return None
        if "/" in config.command:
            where = config.cwd / config.command
            return f"cannot start: command {config.command!r} not found: {where} does not exist"
        shown = (path or "")[:_SHOWN_PATH]
        return f"cannot start: command {config.command!r} not found on the PATH ({shown})"
    problem = missing_script(config, interpreter)
    if problem is not None:
        return problem
    if interpreter is not None and find_program(interpreter, config.cwd, path) is None:
        return f'cannot start: interpreter {interpreter!r} not found (set "interpreter" to its path)'
    return None


def spawn_environment(
    config: ProcessConfig, venv: VenvLookup, environ: Mapping[str, str], file_env: Mapping[str, str]
) -> dict[str, str]:
    """The environment a child of ``config`` would get (without processman's own variables)."""
    env = child_environment(environ, config.env, pocketbase=None, tag="", file_env=file_env)
    if venv.venv is not None:
        activate_venv(env, venv.venv, VENV_BIN)
    return env


def start_problem(config: ProcessConfig, environ: Mapping[str, str]) -> str | None:
    """Why this process cannot start now, in the engine's words; None when nothing is missing."""
    problem = missing_cwd(config)
    if problem is not None:
        return problem
    try:
        file_env = read_env_files(config.env_file) if config.env_file else {}
    except SpawnError as exc:
        return str(exc)
    venv = find_venv(config)
    env = spawn_environment(config, venv, environ, file_env)
    return missing_program(config, resolve_interpreter(config, venv), env)


def _entries(loaded: LoadedConfig) -> list[ProcessConfig]:
    """One config per entry: its instances share it."""
    seen: set[str] = set()
    configs = []
    for config in loaded.processes:
        if config.entry not in seen:
            seen.add(config.entry)
            configs.append(config)
    return configs


def check_environment(loaded: LoadedConfig, environ: Mapping[str, str]) -> list[StartProblem]:
    """Every entry that cannot start."""
    problems: list[StartProblem] = []
    for config in _entries(loaded):
        message = start_problem(config, environ)
        if message is not None:
            problems.append(StartProblem(config.entry, message))
    return problems


def venv_notes(loaded: LoadedConfig) -> list[str]:
    """The Python programs that will run outside any virtualenv, and where one was looked for (the
    start of each such process says it too)."""
    notes = []
    for config in _entries(loaded):
        venv = find_venv(config)
        if uses_system_python(config, venv):
            program = resolve_interpreter(config, venv) or config.command
            notes.append(f"{config.entry}: {program} runs outside any virtualenv: {venv.describe()}")
    return notes


def env_file_warnings(loaded: LoadedConfig) -> list[str]:
    """Lines of the envFile files that python-dotenv skips (the process still starts without them)."""
    configs = _entries(loaded)
    return [f"{config.entry}: {note}" for config in configs for note in skipped_lines(config.env_file)]
