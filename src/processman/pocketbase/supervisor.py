"""``processman pocketbase supervise``: the process manager as PocketBase's child.

The hook starts it for ``pocketbase serve`` with three variables: ``PB_HTTP`` (PocketBase's ``--http``
address), ``PB_DATA_DIR`` (its data folder, absolute) and ``PM_SECRET`` (the shared secret, which the
supervisor first moves out of its environment, see ``processman.handover``). It runs the
normal runner with two services: the HTTP API on 127.0.0.1 at a free port, which only accepts the
secret, and the :class:`PocketBaseBridge`. Its stdout goes nowhere, so it logs to
``DATA_DIR/processman/supervisor.log`` and, through the bridge, into PocketBase's own logs.

PocketBase waits for it to exit before it exits itself, so the supervisor bounds its own stop: when the
stop ladder has not finished ``stopTimeout + 3s`` after the stop began, every process of the run gets
SIGKILL, and a second later the supervisor exits regardless.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from processman.config import CONFIG_FILENAME
from processman.engine.backend import BackendError
from processman.engine.containment import ContainmentError
from processman.engine.posix import TagScanner, send_signal
from processman.environment import PocketBaseInfo
from processman.errors import AlreadyRunningElsewhere, ProcessmanError
from processman.handover import HandoverError, take_secrets
from processman.pocketbase.bridge import PocketBaseBridge
from processman.pocketbase.mirror import LogMirror, MirrorHandler
from processman.pocketbase.parent import stdin_is_pipe
from processman.runner import Runner, ServeSettings

logger = logging.getLogger("processman")

DEFAULT_STOP_TIMEOUT = 10.0
STOP_MARGIN = 3.0  # beyond the longest stopTimeout: the SIGKILL round, the API and guardian shutdown
EXIT_GRACE = 1.0  # after the deadline's SIGKILL, before exiting regardless
PREVIOUS_RUN_WAIT = 60.0  # a supervisor of the previous PocketBase may still be stopping its sidecars
LOG_FILE_BYTES = 5 * 1024 * 1024
SECRET_VARIABLE = "PM_SECRET"
QUIET_LOGGERS = ("httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access", "watchfiles")


class SupervisorSetupError(ProcessmanError):
    """The supervisor was started without what the hook gives it."""


@dataclass(frozen=True)
class HookEnvironment:
    """What the hook passes: PocketBase's address and data folder, and the shared secret."""

    http: str
    data_dir: Path
    secret: str

    VARIABLES = ("PB_HTTP", "PB_DATA_DIR", SECRET_VARIABLE)

    def __repr__(self) -> str:
        return f"HookEnvironment(http={self.http!r}, data_dir={str(self.data_dir)!r}, secret='****')"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> HookEnvironment:
        missing = [name for name in cls.VARIABLES if not environ.get(name)]
        if missing:
            raise SupervisorSetupError(
                f"{', '.join(missing)} not set: `processman pocketbase supervise` is started by the "
                "PocketBase hook (install it with `processman pocketbase install`, then run "
                "`pocketbase serve`)"
            )
        data_dir = Path(environ["PB_DATA_DIR"])
        if not data_dir.is_absolute():
            raise SupervisorSetupError(f"PB_DATA_DIR: expected an absolute path, got {str(data_dir)!r}")
        return cls(environ["PB_HTTP"], data_dir, environ[SECRET_VARIABLE])

    @property
    def pocketbase(self) -> PocketBaseInfo:
        return PocketBaseInfo.from_address(self.http, str(self.data_dir))

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "processman"


class StopDeadline:
    """A thread that bounds the stop: it does not depend on the event loop, which may be the thing stuck.

    ``kill`` runs when the deadline passes; ``exit`` (``os._exit``) if the supervisor is still there
    ``grace`` seconds later.
    """

    def __init__(
        self, kill: Callable[[], None], *, grace: float = EXIT_GRACE, exit: Callable[[int], None] = os._exit
    ) -> None:
        self._kill = kill
        self._exit = exit
        self.grace = grace
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.expired = False

    def __repr__(self) -> str:
        state = "expired" if self.expired else "armed" if self._thread is not None else "idle"
        return f"<StopDeadline {state}>"

    def arm(self, seconds: float) -> None:
        """Start the countdown; later calls change nothing (the first stop request sets the deadline)."""
        if self._thread is not None or self._done.is_set():
            return
        self._thread = threading.Thread(target=self._run, args=(seconds,), name="stop deadline", daemon=True)
        self._thread.start()

    def disarm(self) -> None:
        """The stop finished in time."""
        self._done.set()

    def _run(self, seconds: float) -> None:
        if self._done.wait(seconds):
            return
        self.expired = True
        logger.error(
            "still stopping %.1fs after the stop began; killing every process of this run now", seconds
        )
        try:
            self._kill()
        except Exception:
            logger.exception("killing the processes failed")
        if self._done.wait(self.grace):
            return
        logger.error("exiting without a clean shutdown; the guardian removes whatever is left")
        logging.shutdown()
        self._exit(1)


class SupervisorRunner(Runner):
    """The runner, with the stop bounded by a :class:`StopDeadline`."""

    def __init__(self, settings: ServeSettings) -> None:
        super().__init__(settings)
        self.deadline = StopDeadline(self._kill_everything)

    def request_stop(self, reason: str) -> None:
        super().request_stop(reason)
        self.deadline.arm(self.stop_budget())

    def stop_budget(self) -> float:
        """The longest stopTimeout of the configured processes, plus a margin."""
        manager = self.manager
        timeouts = [state.config.stop_timeout for state in manager.states()] if manager is not None else []
        return max(timeouts, default=DEFAULT_STOP_TIMEOUT) + STOP_MARGIN

    def _kill_everything(self) -> None:
        manager = self.manager
        if manager is None:
            return
        # Reads /proc only: safe from the deadline's thread while the loop is busy.
        send_signal(TagScanner().tagged_with_prefix(f"{manager.run_id}:"), None, signal.SIGKILL)


def configure_logging(log_file: Path, mirror: LogMirror) -> None:
    """The supervisor's records go to its log file and to PocketBase's logs; sidecar output is already in
    its per-process files and reaches PocketBase through the mirror, so it is not logged again."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=LOG_FILE_BYTES, backupCount=3)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [file_handler, MirrorHandler(mirror)]
    root.setLevel(logging.INFO)
    logging.getLogger("processman.output").disabled = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def build_runner(hook: HookEnvironment, mirror: LogMirror) -> SupervisorRunner:
    from processman.api import Address, ApiService, SharedSecret
    from processman.serverfile import Announced

    pocketbase = hook.pocketbase
    api = ApiService(Address("127.0.0.1", 0), SharedSecret(hook.secret), dashboard=True, shutdown_timeout=1)
    api.bind()
    bridge = PocketBaseBridge(pocketbase, hook.secret, api.port, mirror)
    # Clients are sent to PocketBase's /api/pm routes (a superuser's token), not to this private API.
    announced = Announced(api, hook.data_dir, lambda: pocketbase.url, pocketbase=True)
    settings = ServeSettings(
        config_path=hook.data_dir / CONFIG_FILENAME,
        data_dir=hook.data_dir,
        pocketbase=pocketbase,
        services=[announced, bridge],
        email_sender=bridge.send_email,
    )
    return SupervisorRunner(settings)


def _parent_speaks(timeout: float) -> bool:
    if not stdin_is_pipe():
        time.sleep(timeout)
        return False
    readable, _, _ = select.select([0], [], [], timeout)
    return bool(readable)


def supervise(environ: Mapping[str, str] | None = None) -> int:
    """Run until PocketBase stops or goes away. Returns the exit code."""
    if environ is None:
        # First of all: the secret leaves the environment, even the initial one in /proc (this may
        # re-execute the supervisor; see processman.handover), so that no sidecar can read it.
        try:
            environ = {**os.environ, **take_secrets([SECRET_VARIABLE])}
        except HandoverError as exc:
            raise SupervisorSetupError(str(exc)) from exc
    hook = HookEnvironment.from_environ(environ)
    # The sidecars inherit this environment: PocketBase's own variables are set for them from `hook`.
    for name in HookEnvironment.VARIABLES:
        os.environ.pop(name, None)
    mirror = LogMirror(log_dir=hook.state_dir / "logs")
    configure_logging(hook.state_dir / "supervisor.log", mirror)
    pocketbase = hook.pocketbase
    logger.info(
        "supervisor pid %d for PocketBase at %s (data %s)", os.getpid(), pocketbase.url, pocketbase.data_dir
    )
    if pocketbase.port == 0:
        logger.warning(
            "PocketBase listens on port 0: its real port is unknown, so PB_PORT and PB_URL are wrong"
        )
    runner = build_runner(hook, mirror)
    waited_until = time.monotonic() + PREVIOUS_RUN_WAIT
    waiting = False
    try:
        while True:
            try:
                return asyncio.run(runner.run())
            except AlreadyRunningElsewhere as exc:
                if time.monotonic() > waited_until:
                    logger.error("%s; giving up", exc)
                    return 1
                if not waiting:
                    logger.info("%s; waiting for it to finish stopping", exc)
                    waiting = True
                # The supervisor of a PocketBase that was just killed is finishing its stop (it is bounded
                # by its own deadline): nothing of ours runs yet, so try again shortly, unless our own
                # PocketBase stops meanwhile (its pipe then has "stop" or its end).
                if _parent_speaks(0.2):
                    logger.info("PocketBase stopped before the previous supervisor did; nothing was started")
                    return 0
            except (BackendError, ContainmentError) as exc:
                logger.error("%s", exc)  # a setting the user can change: one sentence, no traceback
                return 1
            except Exception:
                # Said in supervisor.log: PocketBase's routes would otherwise answer "starting" with no
                # word of why.
                logger.exception("the supervisor stopped on an internal error")
                return 1
    finally:
        runner.deadline.disarm()
