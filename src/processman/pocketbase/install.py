"""Writing the hook files into a PocketBase app's hooks folder, and removing them.

The hook files ship inside the package (``processman/pocketbase/hooks``) as templates: installing fills in
the Python interpreter processman runs under, so ``pocketbase serve`` starts the supervisor with the
environment processman is installed in, whatever the PATH of PocketBase says.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from processman import __version__
from processman.config import CONFIG_FILENAME

HOOK_FILES = ("processman.pb.js", "processman_lib.js")
MARKER = "Written by `processman pocketbase install`"


@dataclass(frozen=True)
class InstallReport:
    hooks_dir: Path
    config_path: Path
    written: tuple[Path, ...]
    upgraded: tuple[Path, ...] = ()  # files that were there before and were replaced
    config_created: bool = False
    python: str = ""


@dataclass(frozen=True)
class UninstallReport:
    hooks_dir: Path
    removed: tuple[Path, ...] = ()
    kept: tuple[Path, ...] = field(default=())  # files we did not write (no marker): left alone


def render(name: str, *, python: str, types_path: str) -> str:
    """A hook file from its template, ready to write."""
    template = (
        resources.files("processman.pocketbase").joinpath("hooks").joinpath(name).read_text(encoding="utf-8")
    )
    # json.dumps gives a valid JS string literal, quotes included.
    return (
        template.replace('"__PYTHON__"', json.dumps(python))
        .replace("__VERSION__", __version__)
        .replace("__TYPES__", types_path)
    )


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file (mode 644): a reader never sees a half-written
    file (PocketBase may be watching the folder; systemd may read a unit)."""
    fd, temp = tempfile.mkstemp(prefix=".processman-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def default_hooks_dir(data_dir: Path) -> Path:
    """PocketBase's own default: ``pb_hooks`` beside the data folder."""
    return data_dir.absolute().parent / "pb_hooks"


def install(data_dir: Path, hooks_dir: Path | None = None, *, python: str | None = None) -> InstallReport:
    """Write (or upgrade in place) the hook files, and an empty ``pb_processes.json`` if there is none."""
    data_dir = data_dir.absolute()
    hooks_dir = (hooks_dir or default_hooks_dir(data_dir)).absolute()
    python = python or sys.executable
    hooks_dir.mkdir(parents=True, exist_ok=True)
    types_path = os.path.relpath(data_dir / "types.d.ts", hooks_dir)
    written, upgraded = [], []
    for name in HOOK_FILES:
        path = hooks_dir / name
        text = render(name, python=python, types_path=types_path)
        if path.exists():
            if path.read_text(encoding="utf-8", errors="replace") == text:
                continue  # unchanged: do not touch it, or a watching PocketBase would restart
            upgraded.append(path)
        write_atomically(path, text)
        written.append(path)
    config_path = data_dir / CONFIG_FILENAME
    config_created = False
    if not config_path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(config_path, "[]\n")
        config_created = True
    return InstallReport(hooks_dir, config_path, tuple(written), tuple(upgraded), config_created, python)


def uninstall(hooks_dir: Path) -> UninstallReport:
    """Remove the hook files processman wrote. The config and the logs stay: they are the user's."""
    hooks_dir = hooks_dir.absolute()
    removed, kept = [], []
    for name in HOOK_FILES:
        path = hooks_dir / name
        if not path.exists():
            continue
        if MARKER not in path.read_text(encoding="utf-8", errors="replace"):
            kept.append(path)
            continue
        path.unlink()
        removed.append(path)
    return UninstallReport(hooks_dir, tuple(removed), tuple(kept))
