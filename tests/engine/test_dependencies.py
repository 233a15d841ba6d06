"""dependsOn at run time: start order (started, healthy, completed), waiting, and stop order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from processman import ProcessManager, Status
from processman.config import Probe, expand_instances
from processman.engine.events import Event, ProcessExited, StatusChanged
from tests.conftest import config, free_port, wait_until
from tests.engine.test_probes import http_server, refusing_port

Factory = Callable[..., ProcessManager]
SLEEPER = "import time\nwhile True: time.sleep(1)"

# The dependant checks for itself that the server answers the moment it starts.
CLIENT = """
import time, urllib.request
print("got", urllib.request.urlopen("http://127.0.0.1:{port}/health", timeout=2).status, flush=True)
while True: time.sleep(1)
"""


@pytest.fixture
def never() -> Iterator[Probe]:
    """A readiness probe that never passes: it connects to a port that refuses."""
    with refusing_port() as port:
        yield Probe("tcp", f"127.0.0.1:{port}", interval=0.05)


class Timeline:
    """Status changes and exits in the order the manager published them."""

    def __init__(self, manager: ProcessManager) -> None:
        self.events: list[tuple[str, str, float]] = []
        manager.add_listener(self.record)

    def record(self, event: Event) -> None:
        if isinstance(event, StatusChanged):
            self.events.append((event.process_id, str(event.status), event.timestamp))
        elif isinstance(event, ProcessExited):
            self.events.append((event.process_id, f"exited {event.returncode}", event.timestamp))

    def when(self, process_id: str, what: str) -> float:
        return next(t for p, w, t in self.events if p == process_id and w == what)

    def index(self, process_id: str, what: str) -> int:
        return next(i for i, (p, w, _) in enumerate(self.events) if p == process_id and w == what)


async def test_an_http_readiness_probe_gates_the_dependant_start(manager_factory: Factory) -> None:
    port = free_port()
    readiness = Probe("http", f"http://127.0.0.1:{port}/health", interval=0.05)
    manager = manager_factory(
        # Config order puts the dependant first: the order comes from dependsOn, not from the file.
        config("app", CLIENT.format(port=port), depends_on={"db": "healthy"}),
        http_server("db", port, delay=0.5, readiness=readiness),
    )
    timeline = Timeline(manager)
    await manager.start()
    app = manager.state("app")
    assert app.status is Status.STARTING and app.pid == 0
    assert app.last_error == "waiting for db (healthy)"
    await wait_until(manager, lambda: any(line.content == "got 200" for line in manager.logs("app")))
    # The dependant was spawned (running: it has no readiness probe) only after db became ready.
    assert timeline.when("db", "running") <= timeline.when("app", "running")
    assert timeline.index("db", "running") < timeline.index("app", "running")
    app = manager.state("app")
    assert app.status is Status.RUNNING and app.restart_count == 0 and app.last_error == ""
    assert any("waiting for db (healthy)" in line.content for line in manager.logs("app"))


async def test_a_completed_dependency_runs_to_the_end_first(manager_factory: Factory, tmp_path: Path) -> None:
    migrate = "import pathlib, time\ntime.sleep(0.3)\npathlib.Path('migrated').write_text('yes')"
    app = "import pathlib, time\nprint('migrated:', pathlib.Path('migrated').exists())\ntime.sleep(600)"
    manager = manager_factory(
        config("migrate", migrate, cwd=tmp_path, backoff=5.0),
        config("app", app, cwd=tmp_path, depends_on={"migrate": "completed"}),
    )
    timeline = Timeline(manager)
    await manager.start()
    assert manager.state("app").last_error == "waiting for migrate (completed)"
    await wait_until(manager, lambda: manager.state("app").status is Status.RUNNING, what="app running")
    assert timeline.index("migrate", "exited 0") < timeline.index("app", "running")
    await wait_until(manager, lambda: any(line.content == "migrated: True" for line in manager.logs("app")))


async def test_started_needs_a_spawned_process_not_a_ready_one(
    manager_factory: Factory, never: Probe
) -> None:
    manager = manager_factory(
        config("db", SLEEPER, readiness=never),
        config("app", SLEEPER, depends_on={"db": "started"}),
        config("web", SLEEPER, depends_on={"db": "healthy"}),
    )
    await manager.start()
    await wait_until(manager, lambda: manager.state("app").status is Status.RUNNING, what="app running")
    assert manager.state("db").status is Status.STARTING and manager.state("db").pid != 0
    assert manager.state("web").status is Status.STARTING and manager.state("web").pid == 0


async def test_waiting_processes_do_not_delay_the_others(manager_factory: Factory, never: Probe) -> None:
    manager = manager_factory(
        config("db", SLEEPER, readiness=never),
        config("app", SLEEPER, depends_on={"db": "healthy"}),
        config("free", SLEEPER),
    )
    begun = time.monotonic()
    await manager.start()  # returns while app waits
    assert time.monotonic() - begun < 5
    assert manager.state("free").status is Status.RUNNING
    assert manager.state("app").status is Status.STARTING
    # A waiting process stops at once, and stays stopped.
    await manager.stop_process("app")
    assert manager.state("app").status is Status.STOPPED and manager.state("app").last_error == ""


async def test_a_user_start_of_a_dependant_waits_too(manager_factory: Factory, tmp_path: Path) -> None:
    readiness = Probe("command", command=("test", "-f", "ready"), interval=0.05)
    manager = manager_factory(
        config("db", SLEEPER, cwd=tmp_path, readiness=readiness),
        config("app", SLEEPER, depends_on={"db": "healthy"}),
    )
    await manager.start()
    await manager.stop_process("app")
    await manager.stop_process("db")
    await manager.start_process("app")
    assert manager.state("app").status is Status.STARTING and manager.state("app").pid == 0
    await manager.start_process("db")
    assert manager.state("app").pid == 0  # db is spawned but not ready
    (tmp_path / "ready").touch()
    await wait_until(manager, lambda: manager.state("app").status is Status.RUNNING, what="app running")


async def test_a_dependency_on_an_entry_waits_for_all_its_instances(
    manager_factory: Factory, tmp_path: Path
) -> None:
    # Instance n becomes ready when it creates ready.<n>; instance 1 takes longer.
    code = (
        "import os, pathlib, time\nn = os.environ['PROCESSMAN_INSTANCE']\n"
        "time.sleep(0.5 if n == '1' else 0)\npathlib.Path('ready.' + n).touch()\ntime.sleep(600)"
    )
    readiness = Probe("command", command=("sh", "-c", 'test -f "ready.$PROCESSMAN_INSTANCE"'), interval=0.05)
    workers = expand_instances(config("worker", code, cwd=tmp_path, readiness=readiness, instances=2))
    manager = manager_factory(*workers, config("app", SLEEPER, depends_on={"worker": "healthy"}))
    timeline = Timeline(manager)
    await manager.start()
    await wait_until(manager, lambda: manager.state("app").status is Status.RUNNING, what="app running")
    assert timeline.index("worker:0", "running") < timeline.index("worker:1", "running")
    assert timeline.index("worker:1", "running") < timeline.index("app", "running")


async def test_dependants_stop_before_their_dependencies(manager_factory: Factory) -> None:
    # app takes a moment to shut down; stopped in parallel, db would be gone first.
    slow_stop = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.3), sys.exit(0)))\n"
        "print('handler set', flush=True)\n"
        "while True: time.sleep(1)"
    )
    manager = manager_factory(
        config("db", SLEEPER), config("app", slow_stop, depends_on={"db": "started"}), config("free", SLEEPER)
    )
    timeline = Timeline(manager)
    await manager.start()
    await wait_until(manager, lambda: any(line.content == "handler set" for line in manager.logs("app")))
    await manager.close()
    stopped = [p for p, w, _ in timeline.events if w == "stopped"]
    assert stopped.index("app") < stopped.index("db")
    assert stopped.index("free") < stopped.index("app")  # the rest stops in parallel, not after


async def test_a_cycle_registered_from_code_waits_and_still_stops(manager_factory: Factory) -> None:
    # The loader rejects cycles (tests/test_config.py); code registration must still not hang.
    manager = manager_factory(
        config("a", SLEEPER, depends_on={"b": "started"}), config("b", SLEEPER, depends_on={"a": "started"})
    )
    await manager.start()
    assert manager.state("a").last_error == "waiting for b (started)"
    assert manager.state("b").last_error == "waiting for a (started)"
    await asyncio.wait_for(manager.close(), 5)
    assert {s.status for s in manager.states()} == {Status.STOPPED}
