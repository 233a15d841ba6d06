"""The client commands against PocketBase running processman's hooks, with a superuser token: the same
commands, and ``logs -f`` over PocketBase realtime (streams cannot pass through PocketBase)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.cli import assert_follow_shows_a_new_tick
from tests.pocketbase.conftest import PocketBase, pocketbase, pocketbase_factory

__all__ = ["pocketbase", "pocketbase_factory"]  # fixtures used here

TICKER = """
import itertools, time
for i in itertools.count():
    print(f"tick {i}", flush=True)
    time.sleep(0.1)
"""


def cli_env(app: PocketBase) -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PROCESSMAN_")}
    return {**environ, "PROCESSMAN_URL": app.url, "PROCESSMAN_TOKEN": app.superuser_token()}


@pytest.mark.pocketbase
def test_the_client_works_through_pocketbase(pocketbase: PocketBase) -> None:
    ticker = {"id": "ticker", "command": sys.executable, "args": ["-c", textwrap.dedent(TICKER)]}
    pocketbase.install([ticker])
    pocketbase.start()
    pocketbase.wait_running("ticker")
    env = cli_env(pocketbase)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "processman", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:2] == ["ticker", "running"]
    restarted = cli("restart", "ticker")
    assert (restarted.returncode, restarted.stdout) == (0, "ticker: Process restart initiated\n")
    user = cli("list", "--token", pocketbase.user_token())
    assert user.returncode == 4
    assert "not authorised: the token is not a superuser's" in user.stderr

    assert_follow_shows_a_new_tick(env)

    # Every process's lines over realtime (one topic per process), and describe, through PocketBase.
    follower = subprocess.Popen(
        [sys.executable, "-m", "processman", "logs", "-f", "-n", "0", "--grep", "tick"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert follower.stdout is not None
        line = follower.stdout.readline()
        assert " ticker | tick " in line, line
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 130
    finally:
        if follower.poll() is None:
            follower.kill()
        follower.communicate()
    described = cli("describe", "ticker")
    assert described.returncode == 0, described.stderr
    assert "Recent exits" in described.stdout and "restart requested" in described.stdout

    # The supervisor records PocketBase's address (not its own private API's) in the data folder.
    record = json.loads((pocketbase.data_dir / "processman" / "server.json").read_text())
    assert (record["url"], record["pocketbase"]) == (pocketbase.url, True)
    found = {key: value for key, value in env.items() if key != "PROCESSMAN_URL"}
    command = [sys.executable, "-m", "processman", "list", "--dir", str(pocketbase.data_dir)]
    listed = subprocess.run(command, capture_output=True, text=True, timeout=60, env=found)
    assert listed.returncode == 0, listed.stderr
    del found["PROCESSMAN_TOKEN"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, env=found)
    assert refused.returncode == 4
    assert f"no token: {pocketbase.url} is PocketBase" in refused.stderr
    assert "pass --token with a superuser's token" in refused.stderr


@pytest.mark.pocketbase
def test_run_and_runs_through_pocketbase_with_run_events_on_realtime(pocketbase: PocketBase) -> None:
    from tests.pocketbase.conftest import Realtime

    task = {
        "id": "migrate",
        "command": sys.executable,
        "args": ["-c", "print('migrated')"],
        "restart": "never",
        "autostart": False,
    }
    pocketbase.install([task])
    pocketbase.start()
    pocketbase.wait_running()
    env = cli_env(pocketbase)
    realtime = Realtime(pocketbase, pocketbase.superuser_token())
    try:
        realtime.subscribe("pm/events")
        command = [sys.executable, "-m", "processman", "run", "migrate"]
        started = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
        assert (started.returncode, started.stdout) == (0, "run 1 of migrate started (manual)\n"), (
            started.stderr
        )
        _, ended = realtime.wait_event(
            lambda name, data: data.get("type") == "run" and data.get("outcome") is not None,
            "the run's end on pm/events",
        )
        assert (ended["id"], ended["number"], ended["outcome"], ended["exitCode"]) == (
            "migrate",
            1,
            "succeeded",
            0,
        )
    finally:
        realtime.close()
    command = [sys.executable, "-m", "processman", "runs", "migrate", "--json"]
    listed = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert listed.returncode == 0, listed.stderr
    assert [(run["number"], run["trigger"]) for run in json.loads(listed.stdout)] == [(1, "manual")]
    refused = pocketbase.http.get("/api/pm/migrate/runs", headers={"Authorization": pocketbase.user_token()})
    assert refused.status_code == 403
