"""Secrets in the environment are taken out of it: handed over through a pipe to a re-executed
command (see tests/hardening/test_secrets.py and tests/pocketbase for that, from inside a sidecar), or,
in-process, at least removed from ``os.environ``."""

from __future__ import annotations

import json
import os

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
