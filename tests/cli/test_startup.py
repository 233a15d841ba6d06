"""The command starts fast: each command imports only its own module, a client command nothing of the
server, and ``import processman`` none of the engine until a name of it is used."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import click
import pytest

from processman.cli import COMMANDS, main
from processman.cli.client import EXIT_FAILED, ClientError, Connection
from tests.cli.imports import SERVER_MODULES, run_command


def test_help_lists_every_command_without_importing_the_server(tmp_path: Path) -> None:
    run = run_command("--help", report=str(tmp_path / "modules.json"))
    assert run.code == 0, run.stderr
    listed = run.stdout.split("Commands:\n", 1)[1].splitlines()
    summaries = dict(line.split(maxsplit=1) for line in listed if line.strip())
    assert sorted(summaries) == sorted(COMMANDS)
    assert all(len(summary) > 10 for summary in summaries.values()), summaries
    assert run.loaded(SERVER_MODULES) == []


def test_every_command_resolves_to_its_module() -> None:
    context = click.Context(main)
    for name, (module, _) in COMMANDS.items():
        command = main.get_command(context, name)
        assert isinstance(command, click.Command)
        assert command.name == name
        assert command.callback is not None and command.callback.__module__ == module
    assert main.get_command(context, "nope") is None


def test_a_client_command_imports_only_the_client(tmp_path: Path) -> None:
    """Against no server: ``stop`` runs its request path up to the refused connection."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        run = run_command("stop", "web", "--url", url, "--token", "t", report=str(tmp_path / "m.json"))
    assert run.code == 3, run.stderr
    assert "cannot reach the processman server" in run.stderr
    assert run.loaded(SERVER_MODULES) == []


def test_import_processman_imports_no_engine_until_a_name_is_used() -> None:
    code = """
import importlib
import sys
import processman
assert not [name for name in sys.modules if name.startswith("processman.engine")], "engine imported"
from processman import Probe, ProcessManager
assert ProcessManager.__module__ == "processman.engine.manager"
assert Probe is importlib.import_module("processman.config").Probe
assert "Probe" in dir(processman)
try:
    processman.NoSuchName
except AttributeError as exc:
    assert "NoSuchName" in str(exc)
else:
    raise AssertionError("an unknown name was found")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


Requests = list[tuple[str, str, str | None]]  # method, path, Authorization


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[Requests]

    def do_GET(self) -> None:
        self.seen.append((self.command, self.path, self.headers.get("Authorization")))
        body = b'[{"id": "web"}]'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, Requests]]:
    """A server that answers every GET with a JSON list, and the requests it received."""
    seen: Requests = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}", seen
        finally:
            server.shutdown()
            thread.join()


def test_a_request_keeps_the_urls_path_and_sends_the_token_and_query(
    recorder: tuple[str, Requests],
) -> None:
    url, seen = recorder
    answer = Connection(f"{url}/behind/a/proxy", "secret", "test").request(
        "GET", "/api/pm/web/logs", params={"lines": 3}
    )
    assert answer == [{"id": "web"}]
    assert seen == [("GET", "/behind/a/proxy/api/pm/web/logs?lines=3", "Bearer secret")]


def test_a_server_that_does_not_answer_in_time_is_named_slow_not_unreachable() -> None:
    # A listening socket nobody accepts on: the kernel completes the connection, no answer ever comes.
    with socket.create_server(("127.0.0.1", 0)) as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(ClientError) as caught:
            Connection(url, "secret", "test").request("GET", "/api/pm/list", timeout=0.2)
    assert caught.value.exit_code == EXIT_FAILED
    assert caught.value.message == f"{url} did not answer GET /api/pm/list within 0.2 s"


@pytest.mark.parametrize("url", ["http://", "ftp://127.0.0.1", "http://127.0.0.1:port", "127.0.0.1:8091"])
def test_a_bad_url_is_a_usage_error(url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "processman", "list", "--url", url, "--token", "t"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    shown = url.rstrip("/")
    assert f"Invalid value for --url: expected an http:// or https:// URL, got {shown!r}" in result.stderr
