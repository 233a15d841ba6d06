"""``processman check`` checks what the config names exists, not only its format: run as a real
command against real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def check(config: list[dict[str, Any]], folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = folder / "pb_processes.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [sys.executable, "-m", "processman", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )


def test_a_missing_or_unreadable_env_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "ok.env").write_text("A=1\n")
    (tmp_path / "folder.env").mkdir()
    result = check(
        [
            {"id": "good", "command": "true", "envFile": "ok.env"},
            {"id": "gone", "command": "true", "envFile": ["ok.env", "missing.env"]},
            {"id": "dir", "command": "true", "envFile": "folder.env"},
        ],
        tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert f"gone: cannot start: envFile {tmp_path / 'missing.env'} does not exist" in result.stderr
    assert f"dir: cannot start: envFile {tmp_path / 'folder.env'} cannot be read: it is a folder" in (
        result.stderr
    )
    assert "good" not in result.stderr
    assert "2 error(s), 0 warning(s)" in result.stderr


def test_a_python_program_without_a_virtualenv_gets_a_note(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("")
    (tmp_path / "tool").mkdir()
    (tmp_path / "tool" / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "tool" / "venv" / "bin" / "python").write_text("")
    (tmp_path / "tool" / "run.py").write_text("")
    result = check(
        [
            {"id": "bare", "script": "main.py", "cwd": "app"},
            {"id": "inside", "script": "run.py", "cwd": "tool"},
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    note = f"no virtualenv (.venv and venv looked for in {tmp_path / 'app'}, {tmp_path})"
    assert "note: bare: " in result.stderr and note in result.stderr
    assert "inside" not in result.stderr
    assert result.stdout.strip() == "2 processes OK"
