"""Readiness and hang detection through the sd_notify protocol: each run gets its own NOTIFY_SOCKET;
``type: notify`` is ready on READY=1; STATUS= is shown; WATCHDOG=1 feeds ``watchdogSec``; MAINPID=,
STOPPING=1 and EXTEND_TIMEOUT_USEC= are honoured. Clients: Debian's ``systemd-notify`` and the PyPI
package ``sdnotify``."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from processman import ProcessConfig, ProcessManager, Status
from processman.api.wire import state_to_json
from tests.conftest import alive, config, wait_until

Factory = Callable[..., ProcessManager]

SYSTEMD_NOTIFY = shutil.which("systemd-notify")
needs_systemd_notify = pytest.mark.skipif(
    SYSTEMD_NOTIFY is None, reason="Debian's systemd-notify is missing: apt-get install -y systemd"
)


def shell(process_id: str, script: str, **fields: object) -> ProcessConfig:
    return ProcessConfig(id=process_id, command="sh", args=("-c", script), backoff=0.05, **fields)  # type: ignore[arg-type]


@needs_systemd_notify
async def test_systemd_notify_ready_makes_a_notify_process_ready(
    manager_factory: Factory, tmp_path: Path
) -> None:
    trigger = tmp_path / "go"
    script = (
        f'while [ ! -e "{trigger}" ]; do sleep 0.05; done; '
        'systemd-notify --ready --status="warmed up"; echo "notify exit $?"; exec sleep 3600'
    )
    manager = manager_factory(shell("svc", script, type="notify"))
    await manager.start()
    await wait_until(manager, lambda: bool(manager.state("svc").pid), what="a pid")
    state = manager.state("svc")
    assert state.status is Status.STARTING and not state.ready, "not ready before READY=1"
    trigger.write_text("")
    await wait_until(manager, lambda: manager.state("svc").status is Status.RUNNING, what="READY=1")
    state = manager.state("svc")
    assert state.ready and state.status_text == "warmed up"
    assert state_to_json(state)["statusText"] == "warmed up"
    # The barrier systemd-notify waits for (a descriptor it sends) was released: it exits 0.
    await wait_until(
        manager, lambda: any("notify exit" in line.content for line in manager.logs("svc", 20)), what="exit"
    )
    assert "notify exit 0" in [line.content for line in manager.logs("svc", 20)]


async def test_a_simple_process_gets_no_notify_socket(manager_factory: Factory) -> None:
    code = "import os; print('socket:', os.environ.get('NOTIFY_SOCKET')); import time; time.sleep(3600)"
    manager = manager_factory(config("plain", code))
    await manager.start()
    await wait_until(manager, lambda: bool(manager.logs("plain", 5)), what="its line")
    assert manager.logs("plain", 1)[0].content == "socket: None"
    assert manager.state("plain").ready


FED_THEN_HUNG = """
import os, sys, time, sdnotify
notifier = sdnotify.SystemdNotifier(debug=True)
print("watchdog usec", os.environ["WATCHDOG_USEC"], flush=True)
notifier.notify("READY=1\\nSTATUS=serving\\nMAINPID=%d" % os.getpid())
for _ in range(10):
    notifier.notify("WATCHDOG=1")
    time.sleep(0.1)
notifier.notify("STATUS=hung")
time.sleep(3600)  # a hang: no more WATCHDOG=1
"""


async def test_a_watchdog_that_stops_being_fed_restarts_the_process(manager_factory: Factory) -> None:
    manager = manager_factory(config("dog", FED_THEN_HUNG, type="notify", watchdog_sec=0.5))
    await manager.start()
    await wait_until(manager, lambda: manager.state("dog").status is Status.RUNNING, what="READY=1")
    first = manager.state("dog")
    assert first.main_pid == first.pid and first.status_text in ("serving", "hung")
    assert "watchdog usec 500000" in [line.content for line in manager.logs("dog", 10)]
    await wait_until(manager, lambda: len(manager.state("dog").exits) >= 1, timeout=20, what="a restart")
    exit_record = manager.state("dog").exits[0]
    assert exit_record.reason == "watchdog: no WATCHDOG=1 within 500ms", exit_record
    assert exit_record.uptime >= 1.0, "it was fed for a second, so not restarted before"
    notes = [line.content for line in manager.logs("dog", 100) if line.stream == "system"]
    assert any("watchdog" in note for note in notes)


EXTENDED = """
import time, sdnotify
notifier = sdnotify.SystemdNotifier(debug=True)
notifier.notify("READY=1")
notifier.notify("EXTEND_TIMEOUT_USEC=5000000")  # a long job: 5 s before the next WATCHDOG=1
time.sleep(1.2)  # longer than watchdogSec
notifier.notify("STATUS=survived\\nWATCHDOG=1")
while True:
    time.sleep(0.1)
    notifier.notify("WATCHDOG=1")
"""


async def test_extend_timeout_holds_the_watchdog_off(manager_factory: Factory) -> None:
    manager = manager_factory(config("slow", EXTENDED, type="notify", watchdog_sec=0.5))
    await manager.start()
    await wait_until(
        manager, lambda: manager.state("slow").status_text == "survived", timeout=20, what="STATUS"
    )
    assert manager.state("slow").exits == () and manager.state("slow").restart_count == 0


STOPPING = """
import sys, time, sdnotify
notifier = sdnotify.SystemdNotifier(debug=True)
notifier.notify("READY=1")
time.sleep(0.3)
notifier.notify("STOPPING=1\\nSTATUS=draining")
time.sleep(3600)
"""


async def test_stopping_is_shown_and_the_process_is_no_longer_ready(manager_factory: Factory) -> None:
    manager = manager_factory(config("drain", STOPPING, type="notify"))
    await manager.start()
    await wait_until(manager, lambda: manager.state("drain").status_text == "draining", what="STOPPING=1")
    state = manager.state("drain")
    assert not state.ready and state.status is Status.RUNNING
    assert any("stopping" in line.content for line in manager.logs("drain", 20) if line.stream == "system")


async def test_each_process_gets_its_own_socket(manager_factory: Factory) -> None:
    code = "import os; print(os.environ['NOTIFY_SOCKET'], flush=True); import time; time.sleep(3600)"
    manager = manager_factory(config("a", code, type="notify"), config("b", code, watchdog_sec=60.0))
    await manager.start()
    await wait_until(manager, lambda: bool(manager.logs("a", 1) and manager.logs("b", 1)), what="names")
    names = {manager.logs(i, 1)[0].content for i in ("a", "b")}
    assert len(names) == 2 and all(name.startswith("@processman/") for name in names), names


def test_list_shows_the_status_text_when_there_is_no_error() -> None:
    import click

    from processman.cli.client import format_table

    states = [
        {"id": "q", "status": "running", "pid": 7, "uptime": "1s", "restartCount": 0, "statusText": "3 jobs"},
        {"id": "w", "status": "crashed", "pid": 0, "restartCount": 2, "lastError": "boom", "statusText": "x"},
    ]
    lines = [click.unstyle(line) for line in format_table(states, 120)]
    assert lines[1].endswith("3 jobs") and lines[2].endswith("boom")


SLOW_TO_STOP = """
import signal, time, sdnotify
notifier = sdnotify.SystemdNotifier()
asked = []
# Only a flag here: sdnotify's notify() swallows every exception, a SystemExit from a handler included.
signal.signal(signal.SIGTERM, lambda signum, frame: asked.append(signum))
notifier.notify("READY=1")
while not asked:
    time.sleep(0.02)
notifier.notify("STOPPING=1\\nEXTEND_TIMEOUT_USEC=5000000")  # 5 s more than stopTimeout
time.sleep(1.0)
print("drained", flush=True)
"""


async def test_extend_timeout_during_a_stop_holds_off_the_sigkill(manager_factory: Factory) -> None:
    manager = manager_factory(config("drain", SLOW_TO_STOP, type="notify", stop_timeout=0.3))
    await manager.start()
    await wait_until(manager, lambda: manager.state("drain").ready, what="READY=1")
    await manager.stop_process("drain")
    exit = manager.state("drain").exits[-1]
    assert (exit.returncode, exit.signal) == (0, None), exit
    assert "drained" in [line.content for line in manager.logs("drain", 20)]


@needs_systemd_notify
async def test_mainpid_hands_the_run_to_the_process_it_names(manager_factory: Factory) -> None:
    # The started shell forks its service, names it with MAINPID= (systemd-notify --pid) and exits.
    script = 'sleep 3600 & systemd-notify --ready --pid="$!"; exit 0'
    manager = manager_factory(shell("svc", script, type="notify", min_uptime=60.0))
    await manager.start()
    await wait_until(
        manager, lambda: any("main pid" in line.content for line in manager.logs("svc", 20)), what="handover"
    )
    state = manager.state("svc")
    assert state.status is Status.RUNNING and state.ready and state.exits == ()
    assert state.pid == state.main_pid != 0
    service = state.pid
    await manager.stop_process("svc")
    assert manager.state("svc").status is Status.STOPPED and not alive(service)


DEAF_AND_EXTENDED_AT_START = """
import signal, time, sdnotify
signal.signal(signal.SIGTERM, signal.SIG_IGN)
notifier = sdnotify.SystemdNotifier()
notifier.notify("EXTEND_TIMEOUT_USEC=30000000")  # while starting: for the start, not for a later stop
notifier.notify("READY=1")
while True:
    time.sleep(1)
"""


async def test_an_extension_asked_while_starting_does_not_hold_off_a_later_stop(
    manager_factory: Factory,
) -> None:
    manager = manager_factory(config("deaf", DEAF_AND_EXTENDED_AT_START, type="notify", stop_timeout=0.3))
    await manager.start()
    await wait_until(manager, lambda: manager.state("deaf").ready, what="READY=1")
    async with asyncio.timeout(10):  # the 30 s asked for at start would hold it far longer
        await manager.stop_process("deaf")
    assert manager.state("deaf").exits[-1].signal == 9


@needs_systemd_notify
async def test_the_run_ends_when_its_named_main_process_ends(manager_factory: Factory) -> None:
    # A helper of the service lives on; the run is the main process's, as systemd's.
    script = 'sleep 3600 & main="$!"; sleep 3600 & systemd-notify --ready --pid="$main"; exit 0'
    manager = manager_factory(shell("svc", script, type="notify", min_uptime=60.0, max_retries=0))
    await manager.start()
    await wait_until(
        manager, lambda: any("main pid" in line.content for line in manager.logs("svc", 20)), what="handover"
    )
    main = manager.state("svc").pid
    os.kill(main, signal.SIGKILL)
    await wait_until(manager, lambda: bool(manager.state("svc").exits), what="the run's end")
    assert manager.state("svc").pid != main and not alive(main)
