"""Secrets: no configured secret value appears in an API response, in the CLI's output, in processman's
own log lines or in its state files; nor does the admin token (outside its own file)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
from click.testing import CliRunner

from processman.cli import main
from tests.hardening.conftest import TOKEN, Serve, child, wait_for

SECRETS = {
    "OPENAI_API_KEY": "sk-literal-secret-0001",
    "DB_PASSWORD": "literal-secret-0002",
    "GITHUB_TOKEN": "${SECRET_FROM_ENV}",  # expanded from processman's environment at spawn
    "DATABASE_URL": "postgres://app:url-secret-0004@db.internal:5432/app",
}
FROM_ENV = "env-secret-0003"
VALUES = ("sk-literal-secret-0001", "literal-secret-0002", FROM_ENV, "url-secret-0004", TOKEN)

WORKER = """
import os, sys, time
names = ("OPENAI_API_KEY", "DB_PASSWORD", "GITHUB_TOKEN", "DATABASE_URL")
seen = [name for name in names if os.environ.get(name)]
print("worker has", " ".join(seen))
print("admin token inherited:", "PROCESSMAN_TOKEN" in os.environ)
time.sleep(3600)
"""
CRASHER = "import sys\nprint('about to fail', file=sys.stderr)\nsys.exit(3)"


def cli(serve: Serve, *args: str) -> str:
    env = {"PROCESSMAN_URL": serve.url, "PROCESSMAN_TOKEN": TOKEN}
    result = CliRunner().invoke(main, list(args), env=env)
    return result.output


def test_no_secret_leaves_the_manager(serve_factory: Callable[..., Serve], tmp_path: Path) -> None:
    processes = [
        child("worker", WORKER, env=SECRETS),
        child("crasher", CRASHER, env=SECRETS, backoff="50ms", maxRetries=2),
        {"id": "typo", "command": "sleep", "args": ["3600"], "env": SECRETS, "envv": SECRETS},
    ]
    serve = serve_factory(processes, env={"SECRET_FROM_ENV": FROM_ENV})
    wait_for(lambda: serve.states()["crasher"]["status"] == "failed", 15, "the crasher to give up")
    seen: list[str] = []
    with serve.client() as client:
        logs = client.get("/api/pm/worker/logs").json()
        assert [line["content"] for line in logs] == [
            "worker has OPENAI_API_KEY DB_PASSWORD GITHUB_TOKEN DATABASE_URL",
            "admin token inherited: False",
        ]
        for path in (
            "/api/pm/list",
            "/api/pm/worker/logs",
            "/api/pm/crasher/logs",
            "/api/pm/openapi.json",
            "/api/pm/auth-info",
            "/api/pm/metrics",
            "/api/pm/nope/logs",
            "/api/pm/worker/logs?lines=x",
            "/api/health",
            "/",
        ):
            seen.append(client.get(path).text)
        seen.append(client.post("/api/pm/worker/restart").text)
        with client.stream("GET", "/api/pm/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("data: ["):  # the snapshot: every state
                    seen.append(line)
                    break
        unauthenticated = httpx.get(f"{serve.url}/api/pm/list", headers={"Authorization": "Bearer nope"})
        seen.append(unauthenticated.text)
    seen.append(cli(serve, "list"))
    seen.append(cli(serve, "list", "--json"))
    seen.append(cli(serve, "logs", "crasher"))
    seen.append(cli(serve, "restart", "all"))
    seen.append(cli(serve, "check", "--config", str(serve.config_path)))
    assert serve.stop() == 143
    seen.append(serve.output())  # processman's own lines (the children print no secret)
    for state_file in (serve.data_dir / "processman").rglob("*"):
        if state_file.is_file() and state_file.name != "token":
            seen.append(state_file.read_text(errors="replace"))
    state = json.loads(seen[0])  # the first answer is the list
    assert state[0]["config"]["env"]["OPENAI_API_KEY"] == "****"
    assert state[0]["config"]["env"]["DATABASE_URL"] == "postgres://app:****@db.internal:5432/app"
    for text in seen:
        for value in VALUES:
            assert value not in text, f"{value!r} leaked in:\n{text[:2000]}"
