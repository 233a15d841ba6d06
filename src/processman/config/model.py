"""The value objects of a config, :class:`Probe` and :class:`ProcessConfig`, and their field tables: one
description of each field (JSON name, attribute, kind, default) that the loader, the checks of objects
built in code, the JSON Schema and the reported form all follow."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from processman.config.fields import (
    RESTART_POLICIES,
    Bool,
    Choice,
    Dependencies,
    Duration,
    Environment,
    ExitCodes,
    Field,
    Files,
    Folder,
    GroupName,
    Identifier,
    Kind,
    Limits,
    Pattern,
    Problems,
    SignalName,
    Size,
    Strings,
    Text,
    Whole,
    check_fields,
    read_fields,
    signal_name,
)
from processman.config.masking import mask_command, mask_text
from processman.config.notify import NotifyTarget, NotifyTargets
from processman.config.schedule import Schedule, ScheduleKind
from processman.errors import ConfigError

# Log files rotate at 50 MB and keep 5 older files, as supervisord does (50 MB, 10): a burst of
# output as large as a file is kept whole, and a process can fill at most 300 MB per stream.
LOG_MAX_SIZE = 50 * 1024 * 1024
LOG_BACKUPS = 5
MAX_LOG_BACKUPS = 100
# Dev mode folds every change within this many seconds after the first into one restart (SPEC 7).
WATCH_DEBOUNCE = 0.5
MAX_INSTANCES = 1000
PROCESS_TYPES = ("simple", "notify", "forking")
DEFAULT_KEEP_RUNS = 100
MAX_KEEP_RUNS = 10000

PROBE_KINDS = ("http", "tcp", "command")
PROBE_EXPECTED = 'an object with "http" (a URL), "tcp" ("host:port" or a port) or "command" (an array)'
_TCP_TARGET = re.compile(r".*:[0-9]+")

# The fields of a probe beside its target (one of "http", "tcp", "command").
PROBE_FIELDS: tuple[Field, ...] = (
    Field("status", "status", Whole(100, 599, "an HTTP status code"), 200, "expected HTTP status (http)"),
    Field("interval", "interval", Duration(), 1.0, "time between checks"),
    Field("timeout", "timeout", Duration(), 1.0, "time one check may take"),
    Field(
        "failureThreshold",
        "failure_threshold",
        Whole(1, None, "a whole number, 1 or more"),
        3,
        "failures in a row that count",
    ),
    Field("initialDelay", "initial_delay", Duration(), 0.0, "wait before the first check"),
)


_PROBE_DEFAULT = {spec.attr: spec.default for spec in PROBE_FIELDS}


@dataclass(frozen=True)
class Probe:
    """A readiness or liveness check: an HTTP GET, a TCP connect or a command.

    ``target`` is the URL (http), ``host:port`` (tcp) or ignored (command, see ``command``). Raises
    ConfigError listing every problem when a value breaks the rules a config file follows.
    """

    kind: Literal["http", "tcp", "command"]
    target: str = ""
    command: tuple[str, ...] = ()
    status: int = _PROBE_DEFAULT["status"]
    interval: float = _PROBE_DEFAULT["interval"]
    timeout: float = _PROBE_DEFAULT["timeout"]
    failure_threshold: int = _PROBE_DEFAULT["failure_threshold"]
    initial_delay: float = _PROBE_DEFAULT["initial_delay"]

    def __post_init__(self) -> None:
        problems = Problems()
        if self.kind == "http":
            if not isinstance(self.target, str) or not self.target.startswith(("http://", "https://")):
                problems.expect("http", "a URL starting with http:// or https://", self.target)
        elif self.kind == "tcp":
            if not isinstance(self.target, str) or not _TCP_TARGET.fullmatch(self.target):
                problems.expect("tcp", '"host:port"', self.target)
        elif self.kind == "command":
            Strings().check(self.command, "command", problems)
            if not problems and not self.command:
                problems.expect("command", "a non-empty array of strings", self.command)
        else:
            problems.expect("kind", '"http", "tcp" or "command"', self.kind)
        check_fields(self, PROBE_FIELDS, problems)
        if problems:
            raise ConfigError("invalid probe: " + "; ".join(problems.lines()))
        object.__setattr__(self, "command", tuple(self.command))


class ProbeKind(Kind):
    """A probe field (readiness, liveness)."""

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> Probe | None:
        if not isinstance(raw, Mapping):
            problems.expect(at, PROBE_EXPECTED, raw)
            return None
        kinds = [kind for kind in PROBE_KINDS if kind in raw]
        if len(kinds) != 1:
            problems.expect(at, PROBE_EXPECTED, raw)
            return None
        kind = kinds[0]
        before = len(problems.items)
        target, command = "", ()
        value = raw[kind]
        if kind == "http" and isinstance(value, str) and value.startswith(("http://", "https://")):
            target = value
        elif kind == "tcp" and isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
            target = f"127.0.0.1:{value}"
        elif kind == "tcp" and isinstance(value, str) and _TCP_TARGET.fullmatch(value):
            target = value
        elif (
            kind == "command"
            and isinstance(value, list)
            and value
            and all(isinstance(x, str) and "\0" not in x for x in value)
        ):
            command = tuple(value)
        else:
            problems.expect(f"{at}.{kind}", PROBE_EXPECTED, value)
        values = read_fields(raw, PROBE_FIELDS, problems, base_dir, prefix=f"{at}.")
        known = {kind, *(spec.key for spec in PROBE_FIELDS)}
        for key in raw:
            if key not in known:
                problems.error(
                    f"{at}.{key}", f"unknown probe field; expected one of {', '.join(sorted(known))}"
                )
        if len(problems.items) > before:
            return None
        try:
            return Probe(kind=kind, target=target, command=command, **values)  # type: ignore[arg-type]
        except ConfigError as exc:  # a rule the reading above missed: still a problem, never a crash
            problems.error(at, str(exc))
            return None

    def check(self, value: Any, at: str, problems: Problems) -> None:
        if not isinstance(value, Probe):  # a Probe checked itself when it was made
            problems.expect(at, "a Probe", value)

    def show(self, value: Any, *, mask: bool) -> Any:
        return probe_to_json(value, mask=mask)

    def schema(self) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "http": {"type": "string", "pattern": "^https?://"},
            "tcp": {
                "oneOf": [
                    {"type": "integer", "minimum": 1, "maximum": 65535},
                    {"type": "string", "pattern": ":[0-9]+$"},
                ]
            },
            "command": {"type": "array", "minItems": 1, "items": Strings().schema()["items"]},
        }
        for spec in PROBE_FIELDS:
            properties[spec.key] = {**spec.kind.schema(), "description": spec.description}
            properties[spec.key]["default"] = spec.kind.show(spec.default, mask=False)
        return {
            "type": "object",
            "additionalProperties": False,
            "oneOf": [{"required": [kind]} for kind in PROBE_KINDS],
            "properties": properties,
        }


def probe_to_json(probe: Probe, *, mask: bool = True) -> dict[str, Any]:
    """A probe as the config file gives it; with ``mask``, a URL's password and secret-looking command
    arguments are masked."""
    data: dict[str, Any] = {}
    if probe.kind == "http":
        data.update(http=mask_text(probe.target) if mask else probe.target, status=probe.status)
    elif probe.kind == "tcp":
        data["tcp"] = probe.target
    else:
        data["command"] = mask_command(probe.command) if mask else list(probe.command)
    for spec in PROBE_FIELDS:
        if spec.key != "status":  # an http probe's only, shown above
            data[spec.key] = spec.kind.show(getattr(probe, spec.attr), mask=mask)
    return data


# The fields of a process, in the order the reported config lists them.
PROCESS_FIELDS: tuple[Field, ...] = (
    Field("id", "id", Identifier(), None, "unique name of the process", required=True),
    Field("group", "group", GroupName(), None, 'a group: "group:<name>" acts on all its processes'),
    Field("script", "script", Text(), None, "script run through an interpreter"),
    Field("command", "command", Text(), None, "executable looked up on PATH"),
    Field("args", "args", Strings(), (), "arguments"),
    Field("cwd", "cwd", Folder(), Path("."), "working directory, relative to this file's folder"),
    Field("env", "env", Environment(), {}, "environment variables added"),
    Field(
        "envFile",
        "env_file",
        Files(),
        (),
        "dotenv files read at every start, relative to this file's folder (env wins over them)",
        omit_empty=True,
    ),
    Field("interpreter", "interpreter", Text(), "auto", "what runs a script"),
    Field(
        "maxRetries",
        "max_retries",
        Whole(-1, None, "a whole number, -1 (never give up) or more"),
        None,
        "restarts in a row before giving up (default: -1, never, for a service; 0 for a job)",
    ),
    Field("backoff", "backoff", Duration(), 1.0, "first delay before a restart (doubles)"),
    Field("devMode", "dev_mode", Bool(), False, "restart when watched files change"),
    Field("watchPaths", "watch_paths", Strings(), (), "paths watched in dev mode (default: cwd)"),
    Field("watchDebounce", "watch_debounce", Duration(), WATCH_DEBOUNCE, "changes folded into one restart"),
    Field("stopTimeout", "stop_timeout", Duration(), 10.0, "time between the stop signal and SIGKILL"),
    Field("stopSignal", "stop_signal", SignalName(), "SIGTERM", "the signal that asks the tree to stop"),
    Field("pidFile", "pid_file", Text(), None, "type forking: the daemon's pid file (relative to cwd)"),
    Field("minUptime", "min_uptime", Duration(), 10.0, "a run this long resets the failure count"),
    Field("maxMemory", "max_memory", Size(1), None, "restart above this resident memory"),
    Field("limits", "limits", Limits(), {}, "OS limits applied at spawn", omit_empty=True),
    Field("readiness", "readiness", ProbeKind(), None, "when the process is ready"),
    Field("liveness", "liveness", ProbeKind(), None, "restart when this fails"),
    Field("dependsOn", "depends_on", Dependencies(), {}, "entries to wait for", omit_empty=True),
    Field(
        "instances",
        "instances",
        Whole(1, MAX_INSTANCES, f"a whole number from 1 to {MAX_INSTANCES}"),
        None,
        'copies of this entry, "<id>:0" .. "<id>:N-1"',
    ),
    Field("restart", "restart", Choice(RESTART_POLICIES), "always", "when an exit is followed by a start"),
    Field(
        "successExitCodes",
        "success_exit_codes",
        ExitCodes(),
        (0,),
        "exit codes of a successful run (a one-shot task is completed, a job's run succeeded)",
    ),
    Field("autostart", "autostart", Bool(), True, "start with the manager (false: only on demand)"),
    Field("schedule", "schedule", ScheduleKind(), None, "a job: runs at these times instead of kept alive"),
    Field(
        "timeout",
        "timeout",
        Duration(positive=True),
        None,
        "a run longer than this is stopped and recorded as timed out",
    ),
    Field(
        "keepRuns",
        "keep_runs",
        Whole(1, MAX_KEEP_RUNS, f"a whole number from 1 to {MAX_KEEP_RUNS}"),
        DEFAULT_KEEP_RUNS,
        "runs kept in the run history",
    ),
    Field(
        "readyLogLine",
        "ready_log_line",
        Pattern(),
        None,
        'a regular expression: an output line matching it meets "logReady" in dependsOn',
    ),
    Field(
        "type",
        "type",
        Choice(PROCESS_TYPES),
        "simple",
        "notify: ready when it sends READY=1 (sd_notify); forking: it exits 0 after starting a daemon",
    ),
    Field("watchdogSec", "watchdog_sec", Duration(), None, "restart when no WATCHDOG=1 comes for this long"),
    Field("logMaxSize", "log_max_size", Size(0), LOG_MAX_SIZE, "log file size that rotates it (0: never)"),
    Field(
        "logBackups",
        "log_backups",
        Whole(0, MAX_LOG_BACKUPS, f"a whole number from 0 to {MAX_LOG_BACKUPS}"),
        LOG_BACKUPS,
        "older log files kept",
    ),
    Field("notify", "notify", NotifyTargets(), (), "where this process's events are sent", omit_empty=True),
)

# JSON field name -> Python attribute name, in the order of the reported config.
FIELDS: dict[str, str] = {spec.key: spec.attr for spec in PROCESS_FIELDS}
FIELD_BY_ATTR: dict[str, Field] = {spec.attr: spec for spec in PROCESS_FIELDS}


_PROCESS_DEFAULT = {spec.attr: spec.default for spec in PROCESS_FIELDS}


def check_target(script: Any, command: Any, problems: Problems) -> None:
    """Exactly one of script and command."""
    if script is None and command is None:
        problems.error("script/command", "one of them is required")
    elif script is not None and command is not None:
        problems.error("script/command", "set only one of them, not both")


@dataclass(frozen=True, slots=True, weakref_slot=True)
class ProcessConfig:
    """One supervised process, as configured.

    >>> ProcessConfig(id="worker", command="node", args=("worker.js",), cwd="/srv/app")
    ProcessConfig(id='worker', command='node', ...)

    ``cwd`` is made absolute at construction (relative to the current directory; the file loader
    resolves it against the config file's folder first). Durations are seconds, sizes bytes. Raises
    ConfigError listing every problem when a value breaks the rules a config file follows.
    """

    id: str
    script: str | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    cwd: Path = _PROCESS_DEFAULT["cwd"]
    env: Mapping[str, str] = field(default_factory=dict)
    # Dotenv files read at every start (later files win; ``env`` wins over them).
    env_file: tuple[Path, ...] = ()
    interpreter: str = _PROCESS_DEFAULT["interpreter"]
    # Failures in a row before giving up (-1: never). None: -1 for a service, 0 for a job (a cron job
    # is not retried unless asked); resolved at construction.
    max_retries: int | None = None
    backoff: float = _PROCESS_DEFAULT["backoff"]
    dev_mode: bool = _PROCESS_DEFAULT["dev_mode"]
    watch_paths: tuple[str, ...] = ()
    watch_debounce: float = _PROCESS_DEFAULT["watch_debounce"]
    stop_timeout: float = _PROCESS_DEFAULT["stop_timeout"]
    stop_signal: str = _PROCESS_DEFAULT["stop_signal"]  # a name from STOP_SIGNALS ("SIGTERM")
    pid_file: str | None = None  # type forking: where the daemon writes its pid (relative to cwd)
    # A run longer than this is healthy: the failure count resets and the restart is immediate.
    min_uptime: float = _PROCESS_DEFAULT["min_uptime"]
    # Restart when the whole tree's resident memory stays above this many bytes.
    max_memory: int | None = None
    # OS limits applied at spawn: openFiles, cpuSeconds, coreSize (bytes).
    limits: Mapping[str, int] = field(default_factory=dict)
    readiness: Probe | None = None
    liveness: Probe | None = None
    # Other entry ids -> "started" | "healthy" | "completed" | "completedSuccessfully" | "logReady".
    depends_on: Mapping[str, str] = field(default_factory=dict)
    # Copies of this entry (None: a single plain process). Set, even to 1, ids are "<entry>:<n>"
    # and ``instance`` is n, so scaling 2 -> 1 keeps "<entry>:0" running.
    instances: int | None = None
    instance: int | None = None
    # When an exit is followed by a new start: always (keep-alive), on-failure (not after exit code 0:
    # one-shot tasks), never.
    restart: Literal["always", "on-failure", "never"] = _PROCESS_DEFAULT["restart"]
    # simple: ready once started (or when its readiness probe passes); notify: ready when it sends
    # READY=1 on its NOTIFY_SOCKET (the sd_notify protocol); forking: the started process exits 0 once
    # its daemon runs, and the process runs while its tree has members (systemd's Type=forking).
    type: Literal["simple", "notify", "forking"] = _PROCESS_DEFAULT["type"]
    # Exit codes that mean success: a one-shot task that exits with one is completed.
    success_exit_codes: tuple[int, ...] = _PROCESS_DEFAULT["success_exit_codes"]
    autostart: bool = _PROCESS_DEFAULT["autostart"]  # False: started only on demand
    # A job: runs at these times (status "scheduled" between runs) instead of being kept alive.
    schedule: Schedule | None = None
    timeout: float | None = None  # one run's limit; past it the run is stopped (timed out)
    keep_runs: int = _PROCESS_DEFAULT["keep_runs"]  # runs kept in the run history
    # An output line matching this regular expression meets "logReady" for those that depend on it.
    ready_log_line: str | None = None
    # With a watchdog, the process sends WATCHDOG=1 at least this often (seconds) or is restarted.
    watchdog_sec: float | None = None
    # Each log file rotates when it would grow past log_max_size bytes (0: never), keeping
    # log_backups older files (name.1 .. name.N).
    log_max_size: int = _PROCESS_DEFAULT["log_max_size"]
    log_backups: int = _PROCESS_DEFAULT["log_backups"]
    # Where this process's events (crashed, failed, ...) are sent, besides the top-level targets.
    notify: tuple[NotifyTarget, ...] = ()
    entry: str = ""  # the config entry this process comes from (its id without ":<n>")
    # The config file's folder: the search for a virtualenv goes from cwd up to it (None: cwd only).
    root: Path | None = None
    group: str | None = None  # processes of a group are acted on together: "group:<name>"

    def __post_init__(self) -> None:
        problems = Problems()
        check_fields(self, PROCESS_FIELDS, problems)
        check_target(self.script, self.command, problems)
        if problems:
            raise ConfigError(f"invalid process config {self.id!r}: " + "; ".join(problems.lines()))
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "watch_paths", tuple(self.watch_paths))
        object.__setattr__(self, "env", dict(self.env))
        object.__setattr__(self, "limits", dict(self.limits))
        object.__setattr__(self, "depends_on", dict(self.depends_on))
        object.__setattr__(self, "notify", tuple(self.notify))
        object.__setattr__(self, "success_exit_codes", tuple(sorted(set(self.success_exit_codes))))
        if self.max_retries is None:
            object.__setattr__(self, "max_retries", 0 if self.schedule is not None else -1)
        if not self.entry:
            object.__setattr__(self, "entry", self.id.partition(":")[0])
        object.__setattr__(self, "cwd", Path(os.path.abspath(self.cwd)))
        object.__setattr__(self, "stop_signal", signal_name(self.stop_signal))
        if self.root is not None:
            object.__setattr__(self, "root", Path(os.path.abspath(self.root)))
        files = [self.env_file] if isinstance(self.env_file, str | os.PathLike) else self.env_file
        object.__setattr__(self, "env_file", tuple(Path(os.path.abspath(item)) for item in files))
        if self.dev_mode and not self.watch_paths:
            object.__setattr__(self, "watch_paths", (".",))

    @property
    def retries(self) -> int:
        """maxRetries as resolved: failures in a row before giving up (-1: never)."""
        return -1 if self.max_retries is None else self.max_retries

    @property
    def is_job(self) -> bool:
        return self.schedule is not None

    @property
    def is_task(self) -> bool:
        """Runs to an end rather than kept alive: a job, or restart "never" / "on-failure"."""
        return self.schedule is not None or self.restart != "always"

    def __repr__(self) -> str:
        target = f"script={self.script!r}" if self.script else f"command={self.command!r}"
        return f"ProcessConfig(id={self.id!r}, {target}, ...)"


def config_to_json(config: ProcessConfig, *, mask: bool = True) -> dict[str, Any]:
    """The config in the file's JSON names, durations and sizes as strings; with ``mask``, secrets (env
    values, probe credentials) masked. ``instance`` is added for an instance of an entry."""
    data: dict[str, Any] = {}
    for spec in PROCESS_FIELDS:
        value = getattr(config, spec.attr)
        if value is None or (spec.omit_empty and not value):
            continue
        data[spec.key] = spec.kind.show(value, mask=mask)
    if config.instance is not None:
        data["instance"] = config.instance
    return data


def shown_field(attr: str, value: Any, *, mask: bool = True) -> tuple[str, Any]:
    """One attribute of a ProcessConfig as reported: its JSON name and its shown value."""
    spec = FIELD_BY_ATTR.get(attr)
    if spec is None:  # instance, entry: no field of the file
        return attr, value
    return spec.key, spec.shown(value, mask=mask)
