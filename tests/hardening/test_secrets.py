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


# Run inside a sidecar: looks for a secret where a process of the same user can read it: the manager's
# initial environment and command line, and its own environment.
SNOOP = """
import os, sys
name, fragment = sys.argv[1], sys.argv[2] + sys.argv[3]  # the value in two halves: not in any argv
manager = os.getppid()
def read(path):
    try:
        with open(path, "rb") as file:
            return file.read().decode(errors="replace")
    except OSError:
        return ""
places = {
    "manager environ": read(f"/proc/{manager}/environ"),
    "manager cmdline": read(f"/proc/{manager}/cmdline"),
    "own environ": read("/proc/self/environ"),
}
found = [place for place, text in places.items() if name + "=" in text or fragment in text]
print("manager pid", manager, "read", len(places["manager environ"]), "bytes of its environment")
print("secret found in:", found, flush=True)
import time
time.sleep(3600)
"""


def test_a_sidecar_cannot_read_the_admin_token(serve_factory: Callable[..., Serve]) -> None:
    half = len(TOKEN) // 2
    snoop = child("snoop", SNOOP)
    snoop["args"] += ["PROCESSMAN_TOKEN", TOKEN[:half], TOKEN[half:]]
    serve = serve_factory([snoop])
    wait_for(lambda: "secret found in:" in serve.output(), 15, "the sidecar's report")
    output = serve.output()
    assert f"manager pid {serve.pid} read" in output  # its parent is the manager, and it read /proc
    assert "secret found in: []" in output, output
    with serve.client() as client:
        assert client.get("/api/pm/list").status_code == 200  # the token still works
