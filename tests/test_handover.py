"""Secrets in the environment are taken out of it: handed over through a pipe to a re-executed
command (see tests/hardening/test_secrets.py and tests/pocketbase for that, from inside a sidecar), or,
in-process, at least removed from ``os.environ``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from processman.handover import FD_VARIABLE, HandoverError, take_secrets


def test_in_process_the_secret_leaves_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESSMAN_TOKEN", "in-process-token")
    assert take_secrets(["PROCESSMAN_TOKEN", "PM_SECRET"]) == {"PROCESSMAN_TOKEN": "in-process-token"}
    assert "PROCESSMAN_TOKEN" not in os.environ


def test_the_handed_over_secrets_are_read_once_and_the_pipe_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, json.dumps({"PM_SECRET": "from-the-pipe"}).encode())
    os.close(write_end)
    monkeypatch.setenv(FD_VARIABLE, str(read_end))
    assert take_secrets(["PM_SECRET"]) == {"PM_SECRET": "from-the-pipe"}
    assert FD_VARIABLE not in os.environ
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(read_end)


@pytest.mark.parametrize("value", ["x", "999999"])
def test_a_bad_descriptor_is_an_error_with_a_message(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(FD_VARIABLE, value)
    with pytest.raises(HandoverError, match="descriptor"):
        take_secrets(["PM_SECRET"])


def test_serve_hands_its_token_over_before_importing_its_command(tmp_path: Path) -> None:
    """The re-execution of ``serve`` happens before the command's modules are imported, so their
    import (click, the config, the engine) is paid once, by the new image only. ``-X importtime``
    names each module the first time each image imports it."""
    (tmp_path / "pb_processes.json").write_text("[]")
    environ = {**os.environ, "PROCESSMAN_TOKEN": "t" * 32, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "processman",
            "serve",
            "--dir",
            str(tmp_path),
            "--http",
            "x",
        ],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    imports = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "import time:" in line]
    assert imports.count("processman.handover") == 2, done.stderr[-2000:]  # once in each image
    assert imports.count("click") == 1, done.stderr[-2000:]
    assert "--http: expected" in done.stderr or "Error" in done.stderr, done.stderr[-2000:]
