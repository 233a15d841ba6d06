"""The real ``processman serve`` command and the runnable library example."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serve_prints_prefixed_lines_and_marks_stderr(tmp_path: Path) -> None:
    code = "import sys, time\nprint('hello', 'out')\nprint('hello', 'err', file=sys.stderr)\ntime.sleep(60)"
    (tmp_path / "pb_processes.json").write_text(
        json.dumps([{"id": "talker", "command": sys.executable, "args": ["-c", code]}])
    )
    serve = subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(tmp_path), "--http", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert serve.stdout is not None
    seen: list[str] = []
    try:
        for line in serve.stdout:
            seen.append(line)
            if "| hello out" in "".join(seen) and "! hello err" in "".join(seen):
                break
        serve.send_signal(signal.SIGINT)
        rest, _ = serve.communicate(timeout=15)
    finally:
        serve.kill()
    output = "".join(seen) + rest
    assert re.search(r"^\d\d:\d\d:\d\d talker +\| hello out$", output, re.M), output
    assert re.search(r"^\d\d:\d\d:\d\d talker +! hello err$", output, re.M), output
    assert re.search(r"^\d\d:\d\d:\d\d processman +\| stopped$", output, re.M), output
    assert serve.returncode == 128 + signal.SIGINT


def test_serve_runs_with_a_broken_config_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "pb_processes.json").write_text('[{"id": "a", "command": "true", "backoff": "fast"}]')
    serve = subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(tmp_path), "--http", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert serve.stdout is not None
    try:
        lines = [serve.stdout.readline() for _ in range(2)]
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=15)
    finally:
        serve.kill()
    assert 'backoff: expected a duration like "500ms", "2s" or "1m", got "fast"' in lines[0]
    assert "0 process(es) configured" in lines[1]


def test_library_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "library.py")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "[worker] working 2" in result.stdout
    assert "-> failed" in result.stdout
    assert "done: 1 restart(s), last error: gave up after 2 consecutive failed starts" in result.stdout


def test_no_echo_keeps_output_in_the_log_files_only(tmp_path: Path) -> None:
    code = "import time\nprint('quiet', 'line', flush=True)\ntime.sleep(60)"
    (tmp_path / "pb_processes.json").write_text(
        json.dumps([{"id": "hush", "command": sys.executable, "args": ["-c", code]}])
    )
    log = tmp_path / "processman" / "logs" / "hush.out.log"
    serve = subprocess.Popen(
        [sys.executable, "-m", "processman", "serve", "--dir", str(tmp_path), "--http", "off", "--no-echo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not (log.exists() and "quiet line" in log.read_text()):
            assert time.monotonic() < deadline, "the line never reached the log file"
            time.sleep(0.05)
        serve.send_signal(signal.SIGTERM)
        output, _ = serve.communicate(timeout=15)
    finally:
        serve.kill()
    assert "quiet line" not in output
    assert re.search(r"^\d\d:\d\d:\d\d processman +\| stopped$", output, re.M), output
