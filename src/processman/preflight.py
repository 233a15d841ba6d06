"""What keeps a well-formed config from starting: the things it names that do not exist.

:func:`load_config` checks the format and touches nothing but the file; :func:`check_environment` looks
at the machine. ``processman check`` reports what it finds as errors, and ``serve`` says at start-up why
each of these processes cannot start (and starts the rest). The words are the engine's own
:class:`~processman.errors.SpawnError` messages, so the same problem reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from processman.config import LoadedConfig, ProcessConfig
from processman.envfile import read_env_files
from processman.errors import SpawnError
from processman.interpreter import find_venv, resolve_interpreter, uses_system_python


@dataclass(frozen=True)
class StartProblem:
    """Why one config entry cannot start."""

    entry: str
    message: str  # "cannot start: ..."

    def __str__(self) -> str:
        return f"{self.entry}: {self.message}"


def start_problem(config: ProcessConfig, environ: Mapping[str, str]) -> str | None:
    """Why this process cannot start now, in the engine's words; None when nothing is missing."""
    try:
        if config.env_file:
            read_env_files(config.env_file)
    except SpawnError as exc:
        return str(exc)
    return None


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
