"""PocketBase's lifecycle drives processman's: only ``serve`` starts it, stopping or killing PocketBase
leaves nothing behind, a hooks-watch restart restarts cleanly, and a broken config or a missing
supervisor never keeps PocketBase from serving."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.pocketbase.conftest import SLEEPER, PocketBase, sidecar, wait_for

from processman.pocketbase.supervisor import EXIT_GRACE, STOP_MARGIN

pytestmark = pytest.mark.pocketbase

Factory = Callable[[], PocketBase]

STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
while True: time.sleep(1)
"""


def supervisors(app: PocketBase) -> list[psutil.Process]:
    return [p for p in app.leftovers() if "supervise" in p.cmdline()]


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["SIGTERM", "Ctrl+C to the terminal's group"])
def test_sigterm_stops_every_sidecar_before_pocketbase_exits(
    pocketbase_factory: Factory, ctrl_c: bool
) -> None:
    app = pocketbase_factory()
    app.install([sidecar("polite", SLEEPER), sidecar("stubborn", STUBBORN, stopTimeout="1s")])
    app.start()
    states = app.wait_running("polite", "stubborn")
    wait_for(
        lambda: (
            "ignoring SIGTERM" in str(app.http.get("/api/pm/stubborn/logs", headers=app.superuser()).json())
        ),
        5,
        "the stubborn sidecar to ignore SIGTERM",
    )
    started = time.monotonic()
    if ctrl_c:
        os.killpg(app.pid, signal.SIGINT)  # PocketBase leads its group, as in a terminal
    else:
        app.signal(signal.SIGTERM)
    app.wait(timeout=10)
    took = time.monotonic() - started
    # The ladder takes the stubborn one's stopTimeout (1 s); the supervisor's deadline is the bound, plus a
    # second for PocketBase's own shutdown.
    deadline = 1 + STOP_MARGIN + EXIT_GRACE + 1
    assert took < deadline, f"PocketBase took {took:.1f}s to exit (deadline {deadline}s)"
    assert app.leftovers() == []
    for state in states.values():
        assert (
            not psutil.pid_exists(state["pid"])
            or psutil.Process(state["pid"]).status() == psutil.STATUS_ZOMBIE
        )
    log = (app.data_dir / "processman" / "supervisor.log").read_text()
    assert "PocketBase is shutting down" in log
    assert "sending SIGKILL" in log  # the stubborn one went through the ladder


def test_sigkill_leaves_nothing_after_two_seconds(pocketbase_factory: Factory) -> None:
    app = pocketbase_factory()
    app.install([sidecar("one", SLEEPER), sidecar("two", SLEEPER)])
    app.start()
    app.wait_running("one", "two")
    assert len(supervisors(app)) == 1
    app.signal(signal.SIGKILL)
    app.wait(timeout=5)
    wait_for(lambda: app.leftovers() == [], 2, "no supervisor and no sidecar left")


SLOW_TO_STOP = """
import signal, sys, time
def stop(signum, frame):
    time.sleep(1)
    open(sys.argv[1], "w").write("clean")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True: time.sleep(60)
"""


def test_sigkill_still_gives_each_sidecar_its_stop_timeout(pocketbase_factory: Factory) -> None:
    """The parent-death signal arrives more than once as PocketBase's threads exit: one orderly stop."""
    app = pocketbase_factory()
    marker = app.root / "stopped-cleanly"
    slow = sidecar("slow", SLOW_TO_STOP, stopTimeout="5s")
    app.install([{**slow, "args": [*slow["args"], str(marker)]}])
    app.start()
    app.wait_running("slow")
    app.signal(signal.SIGKILL)
    app.wait(timeout=5)
    wait_for(lambda: app.leftovers() == [], 5 + STOP_MARGIN + EXIT_GRACE, "no supervisor and no sidecar left")
    log = (app.data_dir / "processman" / "supervisor.log").read_text()
    assert marker.exists(), log
    assert "killing every process now" not in log


def test_a_sidecar_cannot_read_the_shared_secret(pocketbase_factory: Factory) -> None:
    """PM_SECRET lets whoever holds it register with PocketBase and post events: the hook passes it to
    the supervisor, and no sidecar finds it in the supervisor's environment or command line."""
    from tests.hardening.test_secrets import SNOOP

    app = pocketbase_factory()
    snoop = sidecar("snoop", SNOOP)
    app.install([{**snoop, "args": [*snoop["args"], "PM_SECRET", "PM_SEC", "RET="]}])
    app.start()
    supervisor = app.wait_running("snoop") and supervisors(app)[0].pid

    def report() -> list[str]:
        logs = app.http.get("/api/pm/snoop/logs", headers=app.superuser()).json()
        return [line["content"] for line in logs if "secret found in" in line["content"]]

    assert wait_for(report, 10, "the sidecar's report") == ["secret found in: []"]
    logs = app.http.get("/api/pm/snoop/logs", headers=app.superuser()).json()
    assert f"manager pid {supervisor} read" in logs[0]["content"]


def test_pocketbase_started_again_right_after_a_sigkill_runs_each_sidecar_once(
    pocketbase_factory: Factory,
) -> None:
    app = pocketbase_factory()
    app.install([sidecar("one", SLEEPER)])
    app.start()
    old = app.wait_running("one")["one"]["pid"]
    app.signal(signal.SIGKILL)
    app.wait(timeout=5)
    app.process = None
    app.start()  # the old supervisor may still be stopping: the new one waits for it
    new = app.wait_running("one", timeout=15)["one"]["pid"]
    assert new != old
    wait_for(
        lambda: not psutil.pid_exists(old) or psutil.Process(old).status() == psutil.STATUS_ZOMBIE, 5, "old"
    )
    assert len(supervisors(app)) == 1
    sidecars = [p for p in app.leftovers() if "supervise" not in p.cmdline()]
    assert [p.pid for p in sidecars] == [new]


def test_a_broken_config_does_not_stop_pocketbase(pocketbase_factory: Factory) -> None:
    app = pocketbase_factory()
    app.install('[{"id": "a", "command": "true"},')
    app.start()
    assert app.http.get("/api/health").status_code == 200
    wait_for(
        lambda: app.states() == {} and app.http.get("/api/pm/list", headers=app.superuser()).json() == [],
        10,
        "an empty process list",
    )
    errors = wait_for(
        lambda: app.logs("data.source='processman' && level=8"), 15, "the config error", interval=0.5
    )
    message = errors[0]["message"]
    assert "pb_processes.json" in message and "invalid JSON" in message and "line 1" in message, message


def test_other_pocketbase_commands_do_not_start_processman(pocketbase_factory: Factory) -> None:
    app = pocketbase_factory()
    app.install([sidecar("one", SLEEPER)])
    app.run("superuser", "upsert", "second@example.com", "An0ther!password")
    app.run("migrate", "history-sync")
    assert not (app.data_dir / "processman").exists()
    assert app.leftovers() == []


def test_a_hooks_watch_restart_restarts_cleanly(pocketbase_factory: Factory) -> None:
    app = pocketbase_factory()
    app.install([sidecar("one", SLEEPER)])
    app.start(hooks_watch=True)
    old = app.wait_running("one")["one"]["pid"]
    old_supervisor = supervisors(app)[0].pid
    (app.hooks_dir / "touched.pb.js").write_text("// a change in the hooks folder restarts PocketBase\n")

    def restarted() -> bool:
        try:
            state = app.states().get("one", {})
        except Exception:
            return False
        return state.get("status") == "running" and state.get("pid") != old

    wait_for(restarted, 20, "a new sidecar after the restart", interval=0.2)
    assert app.process is not None and app.process.poll() is None  # same PocketBase process (re-exec)
    assert not psutil.pid_exists(old) or psutil.Process(old).status() == psutil.STATUS_ZOMBIE
    assert [p.pid for p in supervisors(app)] != [old_supervisor] and len(supervisors(app)) == 1


def test_503_until_the_supervisor_registers(pocketbase_factory: Factory, tmp_path: Path) -> None:
    # A stand-in "interpreter" that never registers, and stops when PocketBase closes its stdin.
    silent = tmp_path / "silent-python"
    silent.write_text("#!/bin/sh\nexec cat >/dev/null\n")
    silent.chmod(0o755)
    app = pocketbase_factory()
    app.install([], python=str(silent))
    app.start()
    response = app.http.get("/api/pm/list", headers=app.superuser())
    assert response.status_code == 503
    assert response.json() == {
        "status": 503,
        "message": "The process manager is starting; try again in a moment.",
        "data": {},
    }
    assert app.http.get("/api/pm/list").status_code == 401  # auth comes first
    started = time.monotonic()
    app.signal(signal.SIGTERM)
    app.wait(timeout=10)
    assert time.monotonic() - started < 3


def test_a_missing_interpreter_is_reported_in_pocketbases_logs(pocketbase_factory: Factory) -> None:
    app = pocketbase_factory()
    app.install([sidecar("one", SLEEPER)], python="/nonexistent/python3")
    app.start()
    assert app.http.get("/api/pm/list", headers=app.superuser()).status_code == 503
    errors = wait_for(
        lambda: app.logs("data.pm=true && level=8 && message~'cannot start the process manager'"),
        10,
        "the start error",
        interval=0.5,
    )
    assert errors[0]["data"]["python"] == "/nonexistent/python3"
    assert "processman pocketbase install" in errors[0]["data"]["hint"]


def test_502_when_the_supervisor_is_gone_and_its_sidecars_go_with_it(pocketbase_factory: Factory) -> None:
    app = pocketbase_factory()
    app.install([sidecar("one", SLEEPER)])
    app.start()
    pid = app.wait_running("one")["one"]["pid"]
    supervisors(app)[0].kill()
    wait_for(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        5,
        "the guardian to stop the sidecar",
    )
    response = wait_for(
        lambda: (r := app.http.get("/api/pm/list", headers=app.superuser())).status_code == 502 and r,
        5,
        "502",
    )
    assert "The process manager is not reachable; see" in response.json()["message"]
    assert "supervisor.log" in response.json()["message"]
    assert app.http.get("/api/health").status_code == 200


def test_a_flood_of_output_is_mirrored_at_a_bounded_rate_and_the_rest_counted(
    pocketbase_factory: Factory,
) -> None:
    app = pocketbase_factory()
    flood = "import time\nfor i in range(20000): print('line', i)\nwhile True: time.sleep(1)"
    app.install([sidecar("flood", flood)])
    app.start()
    warnings = wait_for(
        lambda: app.logs("data.source='processman' && level=4 && message~'were not copied'"),
        15,
        "the not-mirrored warning",
        interval=0.5,
    )
    assert warnings[-1]["data"]["notMirrored"] > 0
    assert "every line is in" in warnings[-1]["message"]

    def drained() -> dict[str, Any] | None:
        stats = app.http.get("/api/pm/bridge", headers=app.superuser()).json()
        return stats if stats["registered"] and stats["logs"]["waiting"] == 0 else None

    stats = wait_for(drained, 10, "the mirror to drain")
    assert stats["logs"]["linesPerSecond"] == 2500
    not_mirrored = stats["logs"]["notMirrored"]
    assert 0 < not_mirrored <= 20000 - 5000  # at least the buffer's worth was kept
    # Every line is either in PocketBase's logs or counted; the newest were kept.
    wait_for(
        lambda: app.log_count("data.process='flood'") + not_mirrored == 20000,
        10,
        "the mirrored lines to be written",
    )
    assert app.log_count("data.process='flood' && message='line 19999'") == 1
    log_file = app.data_dir / "processman" / "logs" / "flood.out.log"
    assert log_file.read_text().count("\n") == 20000  # the file has every line
