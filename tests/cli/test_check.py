"""``processman check`` checks what the config names exists, not only its format: run as a real
command against real files."""

from __future__ import annotations

import json
import os
import signal
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


# One of each thing a config can name that may not exist, and one process that is fine.
MISSING: list[dict[str, Any]] = [
    {"id": "no-cwd", "command": "true", "cwd": "gone"},
    {"id": "no-script", "script": "absent.py"},
    {"id": "no-command", "command": "no-such-program-xyz", "args": ["--port", "1"]},
    {"id": "no-interpreter", "script": "tool.rb", "interpreter": "no-such-ruby-xyz"},
    {"id": "no-relative", "command": "./bin/server"},
    {"id": "fine", "command": sys.executable, "args": ["-c", "import time; print('up'); time.sleep(60)"]},
]


def expected_problems(folder: Path) -> list[str]:
    return [
        f"no-cwd: cannot start: working directory {folder / 'gone'} does not exist",
        f"no-script: cannot start: script {folder / 'absent.py'} does not exist",
        "no-command: cannot start: command 'no-such-program-xyz' not found on the PATH",
        "no-interpreter: cannot start: interpreter 'no-such-ruby-xyz' not found",
        f"no-relative: cannot start: command './bin/server' not found: {folder}/bin/server does not exist",
    ]


def test_what_the_config_names_must_exist(tmp_path: Path) -> None:
    (tmp_path / "tool.rb").write_text("")
    result = check(MISSING, tmp_path, PATH="/usr/bin:/bin")
    assert result.returncode == 1, result.stderr
    for problem in expected_problems(tmp_path):
        assert problem in result.stderr, problem
    assert "fine" not in result.stderr
    assert "5 error(s), 0 warning(s)" in result.stderr


def test_serve_starts_the_rest_and_says_why_the_others_cannot_start(tmp_path: Path) -> None:
    (tmp_path / "tool.rb").write_text("")
    (tmp_path / "pb_processes.json").write_text(json.dumps([{**entry, "maxRetries": 0} for entry in MISSING]))
    serve = subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(tmp_path), "--http", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PATH": "/usr/bin:/bin"},
    )
    assert serve.stdout is not None
    seen: list[str] = []
    try:
        for line in serve.stdout:
            seen.append(line)
            text = "".join(seen)
            reasons = [problem.split(": ", 1)[1] for problem in expected_problems(tmp_path)]
            if "| up" in text and all(reason in text for reason in reasons):
                break
        serve.send_signal(signal.SIGINT)
        rest, _ = serve.communicate(timeout=15)
    finally:
        serve.kill()
    output = "".join(seen) + rest
    assert "6 process(es) configured" in output
    assert "5 cannot start: no-cwd, no-script, no-command, no-interpreter, no-relative" in output
    # The engine says why each could not start, in the words check uses.
    for problem in expected_problems(tmp_path):
        assert problem in output, (problem, output)


def test_a_line_of_an_env_file_that_cannot_be_parsed_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GOOD=1\nthis is not = a variable\nALSO_GOOD=2\n")
    result = check([{"id": "web", "command": "true", "envFile": ".env"}], tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"warning: {tmp_path / 'pb_processes.json'}: web: envFile {tmp_path / '.env'}: line 2 " in (
        result.stderr
    )
    assert "cannot be parsed; it is skipped" in result.stderr
