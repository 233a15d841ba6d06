"""Secrets are masked wherever a config is shown: env values (as before), a probe URL's password, and
secret-looking values in a probe command; and in free text that quotes them (a last error, a log note)."""

from __future__ import annotations

from pathlib import Path

import pytest

from processman.config import config_to_json, mask_text, parse_processes


def _shown(probe: dict[str, object], *, mask: bool = True) -> dict[str, object]:
    entry = {"id": "a", "command": "true", "readiness": probe, "liveness": probe}
    (config,), problems = parse_processes([entry], file="f", base_dir=Path("/srv"))
    assert problems == ()
    shown = config_to_json(config, mask=mask)
    assert shown["readiness"] == shown["liveness"]
    readiness = shown["readiness"]
    assert isinstance(readiness, dict)
    return readiness


def test_the_password_of_a_probe_url_is_masked() -> None:
    url = "http://admin:hunter2@127.0.0.1:8000/health"
    assert _shown({"http": url})["http"] == "http://admin:****@127.0.0.1:8000/health"
    assert _shown({"http": url}, mask=False)["http"] == url
    # A password holding "@", and a token in the query string.
    shown = _shown({"http": "https://u:p@ss@host/health?token=abc&verbose=1"})["http"]
    assert shown == "https://u:****@host/health?token=****&verbose=1"


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (
            ["check", "--password", "hunter2", "--port", "5432"],
            ["check", "--password", "****", "--port", "5432"],
        ),
        (["check", "--api-key=abc", "--mode=fast"], ["check", "--api-key=****", "--mode=fast"]),
        (["check", "-token", "abc"], ["check", "-token", "****"]),
        (["env", "DB_PASSWORD=abc", "MODE=x", "probe"], ["env", "DB_PASSWORD=****", "MODE=x", "probe"]),
        (["curl", "-fsS", "http://admin:pw@db/health"], ["curl", "-fsS", "http://admin:****@db/health"]),
        (["curl", "-u", "admin:pw", "http://db/"], ["curl", "-u", "admin:****", "http://db/"]),
        (["pg_isready", "-h", "db", "-p", "5432"], ["pg_isready", "-h", "db", "-p", "5432"]),
    ],
)
def test_secret_looking_values_in_a_probe_command_are_masked(command: list[str], shown: list[str]) -> None:
    assert _shown({"command": command})["command"] == shown
    assert _shown({"command": command}, mask=False)["command"] == command


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("GET http://admin:hunter2@db/health: refused", "GET http://admin:****@db/health: refused"),
        ("API_TOKEN=abc and MODE=x", "API_TOKEN=**** and MODE=x"),
        ('SECRET="two words" next', "SECRET=**** next"),
        ("liveness `check --password hunter2 -v` failed", "liveness `check --password **** -v` failed"),
        ("check --token=abc exited 1", "check --token=**** exited 1"),
        ("http://db/health?access_token=abc&x=1", "http://db/health?access_token=****&x=1"),
        ("restarting: restart requested", "restarting: restart requested"),
        ("listening on --port 8000, pid=12", "listening on --port 8000, pid=12"),
    ],
)
def test_mask_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked
