"""Environment files (``envFile``): dotenv syntax, read with python-dotenv at every start of a process,
so an edited file applies on the next restart.

A file that cannot be read is a :class:`SpawnError` whose words ``check`` prints too: the process does
not start with half its environment.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from processman.errors import SpawnError
from processman.sizes import format_size

# A dotenv file holds a few dozen lines: anything this large is a mistake (or /dev/zero).
MAX_ENV_FILE_BYTES = 1024 * 1024


def _unreadable(path: Path, reason: str) -> SpawnError:
    return SpawnError(f"cannot start: envFile {path} {reason}")


def _read_text(path: Path) -> str:
    try:
        # O_NONBLOCK: a FIFO nobody writes to must not block the manager; fstat then refuses it.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _unreadable(path, "does not exist") from None
    except OSError as exc:
        raise _unreadable(path, f"cannot be read: {exc.strerror or exc}") from exc
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise _unreadable(path, f"cannot be read: it is {what}")
    with open(descriptor, "rb") as file:
        try:
            data = file.read(MAX_ENV_FILE_BYTES + 1)
        except OSError as exc:
            raise _unreadable(path, f"cannot be read: {exc.strerror or exc}") from exc
    if len(data) > MAX_ENV_FILE_BYTES:
        raise _unreadable(path, f"cannot be read: it is larger than {format_size(MAX_ENV_FILE_BYTES)}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _unreadable(path, f"cannot be read: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def read_env_files(paths: Iterable[Path]) -> dict[str, str]:
    """The variables of every file, later files winning. ``${VAR}`` expands as python-dotenv does (from
    processman's environment and the lines above); a name with no ``=`` is left to the inherited
    environment. Raises SpawnError naming the file that cannot be read."""
    from dotenv import dotenv_values  # imported here: only processes with an envFile need it

    env: dict[str, str] = {}
    for path in paths:
        values = dotenv_values(stream=io.StringIO(_read_text(path)), interpolate=True)
        for name, value in values.items():
            if value is None:
                continue
            if "\0" in value or "\0" in name or "=" in name or not name:
                raise _unreadable(path, f"cannot be used: variable {name!r} holds a NUL or '='")
            env[name] = value
    return env


def skipped_lines(paths: Iterable[Path]) -> list[str]:
    """The lines python-dotenv cannot parse, which it skips: one note each, naming file and line. A
    file that cannot be read at all is left to :func:`read_env_files`."""
    from dotenv.parser import parse_stream

    notes = []
    for path in paths:
        try:
            text = _read_text(path)
        except SpawnError:
            continue
        for binding in parse_stream(io.StringIO(text)):
            if binding.error:
                notes.append(f"envFile {path}: line {binding.original.line} cannot be parsed; it is skipped")
    return notes
