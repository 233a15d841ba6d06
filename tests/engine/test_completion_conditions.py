"""dependsOn conditions on how a dependency ended or what it printed: completed (any exit code),
completedSuccessfully (its successExitCodes) and logReady (a line matching its readyLogLine)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from processman import ProcessManager, Status
from processman.config import expand_instances
from processman.engine.events import Event, LogLines
from tests.conftest import config, wait_until
from tests.engine.test_dependencies import SLEEPER, Timeline

Factory = Callable[..., ProcessManager]

# A one-shot migration: it leaves a file behind, then exits with the code given in its environment.
MIGRATE = (
    "import os, pathlib, sys\npathlib.Path('migrated').write_text('yes')\nsys.exit(int(os.environ['CODE']))"
)
# The dependant says whether the migration had run when it started.
WORKER = (
    "import pathlib, time\nprint('migrated:', pathlib.Path('migrated').exists(), flush=True)\ntime.sleep(600)"
)
# A database that boots until the test creates 'go', then says it is ready (on stderr, as postgres does).
DB = """
import pathlib, sys, time
print('booting', flush=True)
while not pathlib.Path('go').exists(): time.sleep(0.01)
print('LOG:  database system is ready to accept connections', file=sys.stderr, flush=True)
while True: time.sleep(1)
"""
READY = "ready to accept connections"


def running(manager: ProcessManager, process_id: str) -> Callable[[], bool]:
    return lambda: manager.state(process_id).status is Status.RUNNING


def printed(manager: ProcessManager, process_id: str, text: str) -> Callable[[], bool]:
    return lambda: any(text in line.content for line in manager.logs(process_id))


async def waiting(manager: ProcessManager, process_id: str) -> str:
    """What a dependant that has not been spawned waits for (a start returns before the wait says)."""
    await wait_until(manager, lambda: manager.state(process_id).last_error != "", what="the wait's words")
    state = manager.state(process_id)
    assert state.status is Status.STARTING and state.pid == 0, state
    return state.last_error


# ---- completed and completedSuccessfully ----------------------------------------------------------


async def test_completed_is_met_by_an_exit_with_any_code(manager_factory: Factory, tmp_path: Path) -> None:
    manager = manager_factory(
        config("migrate", MIGRATE, cwd=tmp_path, env={"CODE": "3"}, restart="never"),
        config("worker", WORKER, cwd=tmp_path, depends_on={"migrate": "completed"}),
    )
    timeline = Timeline(manager)
    await manager.start()
    await wait_until(manager, running(manager, "worker"), what="worker running")
    assert timeline.index("migrate", "exited 3") < timeline.index("worker", "running")
    await wait_until(manager, printed(manager, "worker", "migrated: True"), what="the worker's line")


async def test_completed_successfully_is_met_by_one_of_its_success_exit_codes(
    manager_factory: Factory, tmp_path: Path
) -> None:
    manager = manager_factory(
        config(
            "migrate", MIGRATE, cwd=tmp_path, env={"CODE": "3"}, restart="never", success_exit_codes=(0, 3)
        ),
        config("worker", WORKER, cwd=tmp_path, depends_on={"migrate": "completedSuccessfully"}),
    )
    timeline = Timeline(manager)
    await manager.start()
    await wait_until(manager, running(manager, "worker"), what="worker running")
    assert timeline.index("migrate", "exited 3") < timeline.index("worker", "running")
    await wait_until(manager, printed(manager, "worker", "migrated: True"), what="the worker's line")


async def test_a_failed_migration_never_meets_completed_successfully(
    manager_factory: Factory, tmp_path: Path
) -> None:
    manager = manager_factory(
        config("migrate", MIGRATE, cwd=tmp_path, env={"CODE": "1"}, restart="never"),
        config("worker", WORKER, cwd=tmp_path, depends_on={"migrate": "completedSuccessfully"}),
        # The same exit meets "completed": once audit runs, the gate has seen the exit.
        config("audit", SLEEPER, depends_on={"migrate": "completed"}),
    )
    timeline = Timeline(manager)
    await manager.start()
    await wait_until(manager, running(manager, "audit"), what="audit running")
    assert timeline.index("migrate", "exited 1") < timeline.index("audit", "running")
    assert await waiting(manager, "worker") == "waiting for migrate (completedSuccessfully)"


# ---- logReady -------------------------------------------------------------------------------------


async def test_log_ready_waits_for_the_line_on_stderr(manager_factory: Factory, tmp_path: Path) -> None:
    manager = manager_factory(
        config("db", DB, cwd=tmp_path, ready_log_line=r"ready to accept connections$"),
        config("api", SLEEPER, depends_on={"db": "logReady"}),
    )
    timeline = Timeline(manager)
    await manager.start()
    await wait_until(manager, printed(manager, "db", "booting"), what="db booting")
    assert await waiting(manager, "api") == "waiting for db (logReady)"
    (tmp_path / "go").touch()
    await wait_until(manager, running(manager, "api"), what="api running")
    # db has no readiness probe: it was running long before; api came after the line.
    assert timeline.index("db", "running") < timeline.index("api", "running")
    assert manager.state("api").last_error == ""


async def test_a_redrawn_line_counts_once_finished(manager_factory: Factory, tmp_path: Path) -> None:
    # A line redrawn with carriage returns shows as partial until its newline, and does not count.
    code = """
    import pathlib, sys, time
    sys.stdout.write('loading 50%\\rready to accept connections'); sys.stdout.flush()
    while not pathlib.Path('go').exists(): time.sleep(0.01)
    print(flush=True)
    while True: time.sleep(1)
    """
    manager = manager_factory(
        config("db", code, cwd=tmp_path, ready_log_line=READY),
        config("api", SLEEPER, depends_on={"db": "logReady"}),
    )
    partial: list[LogLines] = []

    def record(event: Event) -> None:
        if isinstance(event, LogLines) and event.partial and event.process_id == "db":
            partial.append(event)

    manager.add_listener(record)
    await manager.start()
    await wait_until(manager, lambda: bool(partial), what="the partial line")
    assert await waiting(manager, "api") == "waiting for db (logReady)"
    (tmp_path / "go").touch()
    await wait_until(manager, running(manager, "api"), what="api running")


async def test_processman_notes_do_not_count(manager_factory: Factory) -> None:
    # db writes nothing itself; "." would match any of processman's notes about it (system stream).
    manager = manager_factory(
        config("db", "import time; time.sleep(600)", ready_log_line="."),
        config("api", SLEEPER, depends_on={"db": "logReady"}),
    )
    await manager.start()
    await wait_until(manager, running(manager, "db"), what="db running")
    await manager.signal_process("db", "SIGCONT")  # processman notes that it sent it

    def noted() -> bool:
        return any(line.stream == "system" for line in manager.logs("db"))

    await wait_until(manager, noted, what="a note about db")
    assert manager.state("db").status is Status.RUNNING
    assert await waiting(manager, "api") == "waiting for db (logReady)"


async def test_log_ready_is_not_met_once_the_dependency_stopped(
    manager_factory: Factory, tmp_path: Path
) -> None:
    (tmp_path / "go").touch()
    manager = manager_factory(
        config("db", DB, cwd=tmp_path, ready_log_line=READY),
        config("api", SLEEPER, depends_on={"db": "logReady"}),
    )
    await manager.start()
    await wait_until(manager, running(manager, "api"), what="api running")
    await manager.stop_process("db")
    await manager.restart_process("api")
    assert await waiting(manager, "api") == "waiting for db (logReady)"
    await manager.start_process("db")
    await wait_until(manager, running(manager, "api"), what="api running again")


async def test_a_new_start_of_the_dependency_needs_a_new_line(
    manager_factory: Factory, tmp_path: Path
) -> None:
    # The first run is ready at once; the next one only once the test creates 'go'.
    code = """
    import pathlib, time
    first = not pathlib.Path('ran').exists()
    pathlib.Path('ran').touch()
    print('booting', 'first' if first else 'again', flush=True)
    while not first and not pathlib.Path('go').exists(): time.sleep(0.01)
    print('ready to accept connections', flush=True)
    while True: time.sleep(1)
    """
    manager = manager_factory(
        config("db", code, cwd=tmp_path, ready_log_line=READY),
        config("api", SLEEPER, depends_on={"db": "logReady"}),
    )
    await manager.start()
    await wait_until(manager, running(manager, "api"), what="api running")
    await manager.stop_process("api")
    await manager.restart_process("db")
    await wait_until(manager, printed(manager, "db", "booting again"), what="db booting again")
    await manager.start_process("api")
    assert await waiting(manager, "api") == "waiting for db (logReady)"
    (tmp_path / "go").touch()
    await wait_until(manager, running(manager, "api"), what="api running again")


async def test_log_ready_waits_for_every_instance(manager_factory: Factory, tmp_path: Path) -> None:
    # Instance 0 is ready at once, instance 1 once the test creates 'go'.
    code = """
    import os, pathlib, time
    while os.environ['PROCESSMAN_INSTANCE'] == '1' and not pathlib.Path('go').exists(): time.sleep(0.01)
    print('ready to accept connections', flush=True)
    while True: time.sleep(1)
    """
    dbs = expand_instances(config("db", code, cwd=tmp_path, ready_log_line=READY, instances=2))
    manager = manager_factory(*dbs, config("api", SLEEPER, depends_on={"db": "logReady"}))
    await manager.start()
    await wait_until(manager, printed(manager, "db:0", READY), what="db:0 ready")
    assert await waiting(manager, "api") == "waiting for db (logReady)"
    (tmp_path / "go").touch()
    await wait_until(manager, running(manager, "api"), what="api running")


async def test_log_ready_on_a_dependency_without_a_ready_log_line_says_so(manager_factory: Factory) -> None:
    # The loader refuses this in a file; registered from code, the dependant waits and says why.
    manager = manager_factory(config("db", SLEEPER), config("api", SLEEPER, depends_on={"db": "logReady"}))
    await manager.start()
    await wait_until(manager, running(manager, "db"), what="db running")
    assert await waiting(manager, "api") == "waiting for db (logReady: it has no readyLogLine)"


# ---- run now ---------------------------------------------------------------------------------------


async def test_run_of_a_task_whose_dependencies_are_met_answers_with_its_run(
    manager_factory: Factory, tmp_path: Path
) -> None:
    manager = manager_factory(
        config("db", SLEEPER),
        config(
            "migrate",
            MIGRATE,
            cwd=tmp_path,
            env={"CODE": "0"},
            restart="never",
            autostart=False,
            depends_on={"db": "started"},
        ),
    )
    await manager.start()
    await wait_until(manager, running(manager, "db"), what="db running")
    run = await manager.run_process("migrate")
    assert run is not None and run.number == 1  # begun at once, not queued
    await wait_until(manager, lambda: manager.state("migrate").status is Status.COMPLETED, what="completed")
    await manager.stop_process("db")
    assert await manager.run_process("migrate") is None  # queued behind db
    assert await waiting(manager, "migrate") == "waiting for db (started)"
    await manager.start_process("db")
    await wait_until(manager, lambda: len(manager.runs("migrate")) == 2, what="the queued run")
