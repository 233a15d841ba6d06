"""Secrets given to a manager in its environment, moved out of that environment before anything runs.

A process's initial environment stays readable in ``/proc/<pid>/environ`` for the process's whole
life, by every process of the same user (the sidecars among them), however often ``os.environ`` is
changed afterwards. So ``serve`` (``PROCESSMAN_TOKEN``) and the PocketBase supervisor (``PM_SECRET``),
started with a secret in their environment, hand it over to themselves first: the secrets go into a
pipe, written whole and the write end closed, and the same command line is executed again (same pid)
without them in its environment, holding only the pipe's read end, whose number is in
``PROCESSMAN_SECRETS_FD`` (not a secret). The new image reads the pipe once and closes it before any
child starts, so no child inherits it and nothing of the secret is left in ``/proc``.

Why this way: a file would need a folder and a removal that a crash can skip; stdin is already the
supervisor's line to PocketBase; the command line is as readable as the environment; and changing
every caller (the PocketBase hook, service managers, shells) to pass secrets another way would leave
the environment, the way everyone passes secrets, unsafe.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable

FD_VARIABLE = "PROCESSMAN_SECRETS_FD"


class HandoverError(RuntimeError):
    """The pipe named in ``PROCESSMAN_SECRETS_FD`` could not be read."""


def take_secrets(names: Iterable[str]) -> dict[str, str]:
    """The secrets among ``names``, taken out of this process's environment for good.

    After the handover (``PROCESSMAN_SECRETS_FD`` set), they are read from the pipe. Otherwise, when one
    of them is set in the environment of a ``processman`` command, this hands over: it re-executes the
    command and does not return. Anywhere else (embedded, a test runner), the values are taken from
    ``os.environ`` and removed from it, which is the best that can be done there.
    """
    names = tuple(names)
    fd_text = os.environ.pop(FD_VARIABLE, None)
    if fd_text is not None:
        secrets = _read(fd_text)
    else:
        secrets = {name: os.environ[name] for name in names if os.environ.get(name)}
        if secrets and _started_as_command():
            _hand_over(secrets)
    for name in names:
        os.environ.pop(name, None)
    return secrets


# The commands that take a secret from their environment, and its variable: handed over by
# hand_over_early, before the command's modules are imported, so the new image alone imports them.
EARLY = {"serve": "PROCESSMAN_TOKEN"}


def hand_over_early(argv: list[str]) -> None:
    """Re-execute now (and not return) when the command in ``argv`` is one of ``EARLY`` and its secret
    is in the environment; ``take_secrets`` in the new image then reads it from the pipe."""
    if FD_VARIABLE in os.environ:
        return
    # The group's own options (--help, --version) take no value: the first other word is the command.
    command = next((word for word in argv[1:] if not word.startswith("-")), None)
    name = EARLY.get(command or "")
    if name is not None and os.environ.get(name) and _started_as_command():
        _hand_over({name: os.environ[name]})


def _started_as_command() -> bool:
    """True in ``processman ...`` and ``python -m processman ...``: re-executing the command line then
    runs this same command again (not, say, the test runner that invoked it in-process)."""
    program = sys.argv[0] if sys.argv else ""
    return os.path.basename(program) == "processman" or program.endswith(
        os.path.join("processman", "__main__.py")
    )


def _hand_over(secrets: dict[str, str]) -> None:
    data = json.dumps(secrets).encode()
    read_end, write_end = os.pipe()
    try:
        # A pipe holds 64 KiB at least: a write of a few secrets never waits for the reader.
        os.write(write_end, data)
    finally:
        os.close(write_end)
    os.set_inheritable(read_end, True)
    environ = {name: value for name, value in os.environ.items() if name not in secrets}
    environ[FD_VARIABLE] = str(read_end)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)


def _read(fd_text: str) -> dict[str, str]:
    try:
        fd = int(fd_text)
    except ValueError:
        raise HandoverError(f"{FD_VARIABLE}: expected a descriptor number, got {fd_text!r}") from None
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError as exc:
        raise HandoverError(f"cannot read the secrets handed over on descriptor {fd}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    try:
        secrets = json.loads(b"".join(chunks))
    except ValueError:
        raise HandoverError(f"descriptor {fd} did not hold the secrets handed over") from None
    if not isinstance(secrets, dict):
        raise HandoverError(f"descriptor {fd} did not hold the secrets handed over")
    return {str(name): str(value) for name, value in secrets.items()}
