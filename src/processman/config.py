"""Process configuration: the value objects and the one loader of ``pb_processes.json``.

The loader reads and validates and does nothing else: it never logs, never exits and never raises for
bad content. Every problem is collected as a :class:`ConfigProblem` that names the file, the entry, the
field, the bad value and what was expected, so ``processman check`` can list them all at once and the
manager can skip the broken entries while the valid ones still run.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from processman.durations import format_duration, parse_duration
from processman.sizes import format_size, parse_size

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
ID_MAX_LENGTH = 64
CONFIG_FILENAME = "pb_processes.json"

DURATION_EXPECTED = 'a duration like "500ms", "2s" or "1m"'

# JSON field name -> Python attribute name. The order is the order of the reported config.
FIELDS: dict[str, str] = {
    "id": "id",
    "script": "script",
    "command": "command",
    "args": "args",
    "cwd": "cwd",
    "env": "env",
    "interpreter": "interpreter",
    "maxRetries": "max_retries",
    "backoff": "backoff",
    "devMode": "dev_mode",
    "watchPaths": "watch_paths",
    "watchDebounce": "watch_debounce",
    "stopTimeout": "stop_timeout",
    "minUptime": "min_uptime",
    "maxMemory": "max_memory",
    "limits": "limits",
    "readiness": "readiness",
    "liveness": "liveness",
    "dependsOn": "depends_on",
    "instances": "instances",
    "restart": "restart",
    "logMaxSize": "log_max_size",
    "logBackups": "log_backups",
}

RESTART_POLICIES = ("always", "on-failure", "never")

LIMIT_NAMES = ("openFiles", "cpuSeconds", "coreSize")
DEPENDENCY_CONDITIONS = ("started", "healthy", "completed")
SIZE_EXPECTED = 'a size like "512MB" or "1GB"'
# Log files rotate at 50 MB and keep 5 older files, as supervisord does (50 MB, 10): a burst of
# output as large as a file is kept whole, and a process can fill at most 300 MB per stream.
LOG_MAX_SIZE = 50 * 1024 * 1024
LOG_BACKUPS = 5
MAX_LOG_BACKUPS = 100
# Dev mode folds every change within this many seconds after the first into one restart (SPEC 7).
WATCH_DEBOUNCE = 0.5


@dataclass(frozen=True)
class Probe:
    """A readiness or liveness check: an HTTP GET, a TCP connect or a command.

    ``target`` is the URL (http), ``host:port`` (tcp) or ignored (command, see ``command``).
    """

    kind: Literal["http", "tcp", "command"]
    target: str = ""
    command: tuple[str, ...] = ()
    status: int = 200
    interval: float = 1.0
    timeout: float = 1.0
    failure_threshold: int = 3
    initial_delay: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.kind == "http":
            data.update(http=self.target, status=self.status)
        elif self.kind == "tcp":
            data["tcp"] = self.target
        else:
            data["command"] = list(self.command)
        data.update(
            interval=format_duration(self.interval),
            timeout=format_duration(self.timeout),
            failureThreshold=self.failure_threshold,
            initialDelay=format_duration(self.initial_delay),
        )
        return data


_SECRET_MARKERS = ("KEY", "SECRET", "PASSWORD", "TOKEN", "PASS", "CREDENTIAL", "PRIVATE", "AUTH")
MASK = "****"


def is_secret_name(name: str) -> bool:
    """True when an environment variable's name says its value is a secret."""
    upper = name.upper()
    return any(marker in upper for marker in _SECRET_MARKERS)


# The password of a URL (DATABASE_URL=postgres://app:password@db/app), whatever the variable's name.
_URL_PASSWORD = re.compile(r"(://[^/@:\s]*):[^/@\s]*@")


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    return {
        name: MASK if is_secret_name(name) else _URL_PASSWORD.sub(rf"\1:{MASK}@", value)
        for name, value in env.items()
    }


@dataclass(frozen=True)
class ProcessConfig:
    """One supervised process, as configured.

    >>> ProcessConfig(id="worker", command="node", args=("worker.js",), cwd="/srv/app")
    ProcessConfig(id='worker', command='node', ...)

    ``cwd`` is made absolute at construction (relative to the current directory; the file loader
    resolves it against the config file's folder first). Durations are seconds.
    """

    id: str
    script: str | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    cwd: Path = Path(".")
    env: Mapping[str, str] = field(default_factory=dict)
    interpreter: str = "auto"
    max_retries: int = -1
    backoff: float = 1.0
    dev_mode: bool = False
    watch_paths: tuple[str, ...] = ()
    watch_debounce: float = WATCH_DEBOUNCE
    stop_timeout: float = 10.0
    # A run longer than this is healthy: the failure count resets and the restart is immediate.
    min_uptime: float = 10.0
    # Restart when the whole tree's resident memory stays above this many bytes.
    max_memory: int | None = None
    # OS limits applied at spawn: openFiles, cpuSeconds, coreSize (bytes).
    limits: Mapping[str, int] = field(default_factory=dict)
    readiness: Probe | None = None
    liveness: Probe | None = None
    # Other entry ids -> "started" | "healthy" | "completed".
    depends_on: Mapping[str, str] = field(default_factory=dict)
    # Copies of this entry (None: a single plain process). Set, even to 1, ids are "<entry>:<n>"
    # and ``instance`` is n, so scaling 2 -> 1 keeps "<entry>:0" running.
    instances: int | None = None
    instance: int | None = None
    # When an exit is followed by a new start: always (keep-alive), on-failure (not after exit code 0:
    # one-shot tasks), never.
    restart: Literal["always", "on-failure", "never"] = "always"
    # Each log file rotates when it would grow past log_max_size bytes (0: never), keeping
    # log_backups older files (name.1 .. name.N).
    log_max_size: int = LOG_MAX_SIZE
    log_backups: int = LOG_BACKUPS
    entry: str = ""  # the config entry this process comes from (its id without ":<n>")

    def __post_init__(self) -> None:
        problems = _validate_values(self)
        if problems:
            raise ValueError(f"invalid process config {self.id!r}: " + "; ".join(problems))
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "watch_paths", tuple(self.watch_paths))
        object.__setattr__(self, "env", dict(self.env))
        object.__setattr__(self, "limits", dict(self.limits))
        object.__setattr__(self, "depends_on", dict(self.depends_on))
        if not self.entry:
            object.__setattr__(self, "entry", self.id.partition(":")[0])
        object.__setattr__(self, "cwd", Path(os.path.abspath(self.cwd)))
        if self.dev_mode and not self.watch_paths:
            object.__setattr__(self, "watch_paths", (".",))

    def __repr__(self) -> str:
        target = f"script={self.script!r}" if self.script else f"command={self.command!r}"
        return f"ProcessConfig(id={self.id!r}, {target}, ...)"

    def to_dict(self, *, interpreter: str | None = None, mask: bool = True) -> dict[str, Any]:
        """The config as reported by the API: JSON names, durations as strings, secrets masked."""
        data: dict[str, Any] = {"id": self.id}
        if self.script is not None:
            data["script"] = self.script
        if self.command is not None:
            data["command"] = self.command
        data.update(
            args=list(self.args),
            cwd=str(self.cwd),
            env=mask_env(self.env) if mask else dict(self.env),
            interpreter=interpreter if interpreter is not None else self.interpreter,
            maxRetries=self.max_retries,
            backoff=format_duration(self.backoff),
            devMode=self.dev_mode,
            watchPaths=list(self.watch_paths),
            watchDebounce=format_duration(self.watch_debounce),
            stopTimeout=format_duration(self.stop_timeout),
            minUptime=format_duration(self.min_uptime),
            restart=self.restart,
            logMaxSize=format_size(self.log_max_size) if self.log_max_size else "0",
            logBackups=self.log_backups,
        )
        if self.max_memory is not None:
            data["maxMemory"] = format_size(self.max_memory)
        if self.limits:
            data["limits"] = dict(self.limits)
        if self.readiness is not None:
            data["readiness"] = self.readiness.to_dict()
        if self.liveness is not None:
            data["liveness"] = self.liveness.to_dict()
        if self.depends_on:
            data["dependsOn"] = dict(self.depends_on)
        if self.instance is not None:
            data.update(instances=self.instances, instance=self.instance)
        return data


def _validate_values(config: ProcessConfig) -> list[str]:
    """Checks shared by code registration; the file loader reports the same rules per field."""
    problems = []
    base_id, _, instance = config.id.partition(":") if isinstance(config.id, str) else ("", "", "")
    if not isinstance(config.id, str) or not _valid_id(base_id) or (instance and not instance.isdigit()):
        problems.append(f"id: expected {_ID_EXPECTED}, got {config.id!r}")
    if (config.script is None) == (config.command is None):
        problems.append("exactly one of script and command must be set")
    if config.restart not in RESTART_POLICIES:
        problems.append(f"restart: expected one of {RESTART_POLICIES}, got {config.restart!r}")
    if config.instances is not None and config.instances < 1:
        problems.append(f"instances: expected 1 or more, got {config.instances}")
    for name, condition in config.depends_on.items():
        if condition not in DEPENDENCY_CONDITIONS:
            problems.append(
                f"depends_on[{name!r}]: expected one of {DEPENDENCY_CONDITIONS}, got {condition!r}"
            )
    if config.max_retries < -1:
        problems.append(f"max_retries: expected -1 or more, got {config.max_retries}")
    if not 0 <= config.log_backups <= MAX_LOG_BACKUPS:
        problems.append(f"log_backups: expected 0 to {MAX_LOG_BACKUPS}, got {config.log_backups}")
    if config.log_max_size < 0:
        problems.append(f"log_max_size: expected 0 or more bytes, got {config.log_max_size}")
    for name in ("backoff", "stop_timeout", "min_uptime", "watch_debounce"):
        if getattr(config, name) < 0:
            problems.append(f"{name}: expected a duration of 0 or more, got {getattr(config, name)}")
    return problems


_ID_EXPECTED = f"letters, digits, '.', '_' or '-', starting with a letter or digit, at most {ID_MAX_LENGTH}"


def _valid_id(value: str) -> bool:
    # fullmatch: "$" alone would accept a trailing newline ("web\n").
    return len(value) <= ID_MAX_LENGTH and ID_PATTERN.fullmatch(value) is not None


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file. ``severity`` error skips the entry; warning does not."""

    file: str
    where: str
    message: str
    severity: Literal["error", "warning"] = "error"
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        # Names from the file (an unknown field, an env name) may hold newlines or escape sequences:
        # shown escaped, a problem stays one line that cannot forge or repaint others.
        return f"{self.file}: {self.where}: {self.message}".translate(_CONTROL_CHARACTERS)


_CONTROL_CHARACTERS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    exists: bool
    processes: tuple[ProcessConfig, ...]
    problems: tuple[ConfigProblem, ...]

    @property
    def errors(self) -> tuple[ConfigProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[ConfigProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")


# A config file is a few kilobytes: anything this large is a mistake, refused before it fills memory.
MAX_CONFIG_BYTES = 16 * 1024 * 1024


class _Unreadable(Exception):
    """The file exists but is not something a config can be read from (a folder, a FIFO, too large)."""


def _read_text(path: Path) -> str:
    # O_NONBLOCK: opening a FIFO nobody writes to must not block; fstat then refuses it.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(descriptor, "rb") as file:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise _Unreadable("it is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise _Unreadable("it is not a regular file")
        data = file.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise _Unreadable(f"it is larger than {format_size(MAX_CONFIG_BYTES)}")
    return data.decode("utf-8")


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read and validate a config file. Never raises for bad content, however hostile (nested 100,000
    levels deep, numbers of 5000 digits, a FIFO): see :class:`LoadedConfig`."""
    file_path = Path(path).absolute()
    name = str(file_path)

    def unusable(message: str) -> LoadedConfig:
        return LoadedConfig(file_path, True, (), (ConfigProblem(name, "file", message),))

    try:
        text = _read_text(file_path)
    except FileNotFoundError:
        return LoadedConfig(file_path, False, (), ())
    except _Unreadable as exc:
        return unusable(f"cannot be read: {exc}")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return unusable(f"cannot be read: {reason}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = ConfigProblem(
            name,
            f"line {exc.lineno} column {exc.colno}",
            f"invalid JSON: {exc.msg}",
            line=exc.lineno,
            column=exc.colno,
        )
        return LoadedConfig(file_path, True, (), (problem,))
    except RecursionError:
        return unusable("invalid JSON: nested too deeply")
    except ValueError:  # the only other one: Python's limit on the digits of an integer
        return unusable(f"invalid JSON: a number has more than {sys.get_int_max_str_digits()} digits")
    except MemoryError:
        return unusable("invalid JSON: too large to decode")
    try:
        processes, problems = parse_processes(data, file=name, base_dir=file_path.parent)
    except (RecursionError, MemoryError) as exc:
        return unusable(f"cannot be read: {type(exc).__name__}")
    return LoadedConfig(file_path, True, processes, problems)


def parse_processes(
    data: Any, *, file: str, base_dir: Path
) -> tuple[tuple[ProcessConfig, ...], tuple[ConfigProblem, ...]]:
    """Validate decoded JSON. Returns the valid entries and every problem found."""
    problems: list[ConfigProblem] = []
    if isinstance(data, dict) and isinstance(data.get("processes"), list):
        entries: list[Any] = data["processes"]
        prefix = "processes"
    elif isinstance(data, list):
        entries = data
        prefix = ""
    else:
        got = _describe(data)
        problems.append(
            ConfigProblem(
                file, "top level", f'expected an array of processes or {{"processes": [...]}}, got {got}'
            )
        )
        return (), tuple(problems)

    configs: list[ProcessConfig] = []
    seen: dict[str, int] = {}
    where_of: dict[str, str] = {}
    for index, entry in enumerate(entries):
        reader = _EntryReader(file, f"{prefix}[{index}]", entry, base_dir)
        config = reader.read()
        problems.extend(reader.problems)
        if config is None:
            continue
        if config.id in seen:
            problems.append(
                ConfigProblem(
                    file,
                    reader.where,
                    f'id: duplicate id "{config.id}" '
                    f"(first used by entry [{seen[config.id]}]); entry skipped",
                )
            )
            continue
        seen[config.id] = index
        where_of[config.id] = reader.where
        configs.append(config)
    configs, dependency_problems = _check_dependencies(configs, file, where_of)
    problems.extend(dependency_problems)
    return tuple(instance for config in configs for instance in expand_instances(config)), tuple(problems)


def expand_instances(config: ProcessConfig) -> list[ProcessConfig]:
    """An entry with ``instances: N`` becomes N processes ``<id>:0`` .. ``<id>:N-1``."""
    if config.instances is None or config.instance is not None:
        return [config]
    return [
        dataclasses.replace(config, id=f"{config.entry}:{n}", instance=n, entry=config.entry)
        for n in range(config.instances)
    ]


def _check_dependencies(
    configs: list[ProcessConfig], file: str, where_of: dict[str, str]
) -> tuple[list[ProcessConfig], list[ConfigProblem]]:
    """Unknown dependencies and cycles skip the entries involved, with the cycle named."""
    problems: list[ConfigProblem] = []
    known = {config.id for config in configs}
    bad: set[str] = set()
    for config in configs:
        for name in config.depends_on:
            if name not in known:
                bad.add(config.id)
                problems.append(
                    ConfigProblem(
                        file, where_of[config.id], f'dependsOn: no entry has id "{name}"; entry skipped'
                    )
                )
    graph = {config.id: [name for name in config.depends_on if name in known] for config in configs}
    for cycle in find_cycles(graph):
        shown = " -> ".join([*cycle, cycle[0]])
        for member in cycle:
            if member not in bad:
                bad.add(member)
                problems.append(
                    ConfigProblem(
                        file, where_of[member], f"dependsOn: dependency cycle {shown}; entry skipped"
                    )
                )
    # An entry whose dependency was skipped cannot start either.
    changed = True
    while changed:
        changed = False
        for config in configs:
            if config.id not in bad and any(name in bad for name in config.depends_on):
                bad.add(config.id)
                changed = True
                problems.append(
                    ConfigProblem(
                        file, where_of[config.id], "dependsOn: depends on a skipped entry; entry skipped"
                    )
                )
    return [config for config in configs if config.id not in bad], problems


def find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Every dependency cycle once, each as the list of its members in order."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for neighbour in graph.get(node, ()):
            if state.get(neighbour) == 1:
                cycles.append(path[path.index(neighbour) :])
            elif neighbour not in state:
                visit(neighbour)
        path.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    return cycles


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return json.dumps(value)


class _EntryReader:
    """Reads one entry, collecting problems instead of raising."""

    def __init__(self, file: str, where: str, entry: Any, base_dir: Path) -> None:
        self.file = file
        self.where = where
        self.entry = entry
        self.base_dir = base_dir
        self.problems: list[ConfigProblem] = []
        self._failed = False

    def _error(self, name: str, message: str) -> None:
        self._failed = True
        self.problems.append(ConfigProblem(self.file, self.where, f"{name}: {message}; entry skipped"))

    def _expect(self, name: str, expected: str, value: Any) -> None:
        self._error(name, f"expected {expected}, got {_describe(value)}")

    def read(self) -> ProcessConfig | None:
        entry = self.entry
        if not isinstance(entry, dict):
            self._error("entry", f"expected an object, got {_describe(entry)}")
            return None
        process_id = entry.get("id")
        if isinstance(process_id, str) and process_id:
            self.where = f"{self.where} (id {json.dumps(process_id)})"
        for key in entry:
            if key not in FIELDS:
                close = difflib.get_close_matches(key, list(FIELDS), n=1, cutoff=0.6)
                hint = f'; did you mean "{close[0]}"?' if close else f"; known fields: {', '.join(FIELDS)}"
                self.problems.append(
                    ConfigProblem(self.file, self.where, f'unknown field "{key}" ignored{hint}', "warning")
                )

        if "id" not in entry:
            self._error("id", "required field is missing")
        elif not isinstance(process_id, str) or not _valid_id(process_id):
            self._expect("id", _ID_EXPECTED, process_id)

        script = self._optional_str(entry, "script")
        command = self._optional_str(entry, "command")
        if "script" not in entry and "command" not in entry:
            self._error("script/command", "one of them is required")
        elif "script" in entry and "command" in entry:
            self._error("script/command", "set only one of them, not both")

        args = self._str_list(entry, "args")
        cwd_text = self._optional_str(entry, "cwd") or "."
        env = self._env(entry)
        interpreter = self._optional_str(entry, "interpreter") or "auto"
        max_retries = self._max_retries(entry)
        backoff = self._duration(entry, "backoff", 1.0)
        dev_mode = self._bool(entry, "devMode")
        watch_paths = self._str_list(entry, "watchPaths")
        watch_debounce = self._duration(entry, "watchDebounce", WATCH_DEBOUNCE)
        stop_timeout = self._duration(entry, "stopTimeout", 10.0)
        min_uptime = self._duration(entry, "minUptime", 10.0)
        max_memory = self._size(entry, "maxMemory")
        log_max_size = self._size(entry, "logMaxSize", allow_zero=True)
        log_backups = self._whole_number(entry, "logBackups", LOG_BACKUPS, 0, MAX_LOG_BACKUPS)
        limits = self._limits(entry)
        readiness = self._probe(entry, "readiness")
        liveness = self._probe(entry, "liveness")
        depends_on = self._depends_on(entry)
        instances = self._instances(entry)
        restart = entry.get("restart", "always")
        if restart not in RESTART_POLICIES:
            self._expect("restart", '"always", "on-failure" or "never"', restart)
        if self._failed:
            return None
        assert isinstance(process_id, str)  # guaranteed by the checks above
        return ProcessConfig(
            id=process_id,
            script=script,
            command=command,
            args=tuple(args),
            cwd=(self.base_dir / cwd_text),
            env=env,
            interpreter=interpreter,
            max_retries=max_retries,
            backoff=backoff,
            dev_mode=dev_mode,
            watch_paths=tuple(watch_paths),
            watch_debounce=watch_debounce,
            stop_timeout=stop_timeout,
            min_uptime=min_uptime,
            max_memory=max_memory,
            limits=limits,
            readiness=readiness,
            liveness=liveness,
            depends_on=depends_on,
            instances=instances,
            restart=restart,
            log_max_size=LOG_MAX_SIZE if log_max_size is None else log_max_size,
            log_backups=log_backups,
        )

    def _size(self, entry: dict[str, Any], name: str, *, allow_zero: bool = False) -> int | None:
        if name not in entry:
            return None
        value = entry[name]
        smallest = 0 if allow_zero else 1
        if isinstance(value, int) and not isinstance(value, bool) and value >= smallest:
            return value
        if isinstance(value, str):
            try:
                size = parse_size(value)
            except ValueError:
                pass
            else:
                if size >= smallest:
                    return size
        self._expect(name, SIZE_EXPECTED + (" (0: never)" if allow_zero else ""), value)
        return None

    def _whole_number(self, entry: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
        value = entry.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self._expect(name, f"a whole number from {low} to {high}", value)
            return default
        return value

    def _limits(self, entry: dict[str, Any]) -> dict[str, int]:
        value = entry.get("limits", {})
        if not isinstance(value, dict):
            self._expect("limits", f"an object with {', '.join(LIMIT_NAMES)}", value)
            return {}
        limits: dict[str, int] = {}
        for name, item in value.items():
            if name not in LIMIT_NAMES:
                self._error(f"limits.{name}", f"unknown limit; expected one of {', '.join(LIMIT_NAMES)}")
            elif name == "coreSize" and isinstance(item, str):
                try:
                    limits[name] = parse_size(item)
                except ValueError:
                    self._expect(f"limits.{name}", SIZE_EXPECTED, item)
            elif isinstance(item, bool) or not isinstance(item, int) or item < 0:
                self._expect(f"limits.{name}", "a whole number, 0 or more", item)
            else:
                limits[name] = item
        return limits

    def _probe(self, entry: dict[str, Any], name: str) -> Probe | None:
        if name not in entry:
            return None
        value = entry[name]
        expected = 'an object with "http" (a URL), "tcp" ("host:port" or a port) or "command" (an array)'
        if not isinstance(value, dict):
            self._expect(name, expected, value)
            return None
        kinds = [kind for kind in ("http", "tcp", "command") if kind in value]
        if len(kinds) != 1:
            self._expect(name, expected, value)
            return None
        kind = kinds[0]
        target, command = "", ()
        raw = value[kind]
        if kind == "http" and isinstance(raw, str) and raw.startswith(("http://", "https://")):
            target = raw
        elif kind == "tcp" and isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw < 65536:
            target = f"127.0.0.1:{raw}"
        elif kind == "tcp" and isinstance(raw, str) and raw.rpartition(":")[2].isdigit():
            target = raw
        elif kind == "command" and isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
            command = tuple(raw)
        else:
            self._expect(f"{name}.{kind}", expected, raw)
            return None
        status = value.get("status", 200)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            self._expect(f"{name}.status", "an HTTP status code", status)
            status = 200
        threshold = value.get("failureThreshold", 3)
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            self._expect(f"{name}.failureThreshold", "a whole number, 1 or more", threshold)
            threshold = 3
        known = {kind, "status", "interval", "timeout", "failureThreshold", "initialDelay"}
        for key in value:
            if key not in known:
                self._error(
                    f"{name}.{key}", f"unknown probe field; expected one of {', '.join(sorted(known))}"
                )
        return Probe(
            kind=kind,  # type: ignore[arg-type]
            target=target,
            command=command,
            status=status,
            interval=self._duration(value, "interval", 1.0, prefix=f"{name}."),
            timeout=self._duration(value, "timeout", 1.0, prefix=f"{name}."),
            failure_threshold=threshold,
            initial_delay=self._duration(value, "initialDelay", 0.0, prefix=f"{name}."),
        )

    def _depends_on(self, entry: dict[str, Any]) -> dict[str, str]:
        value = entry.get("dependsOn", {})
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return dict.fromkeys(value, "started")
        if not isinstance(value, dict):
            self._expect("dependsOn", 'an object like {"db": "healthy"} or an array of ids', value)
            return {}
        depends: dict[str, str] = {}
        for name, condition in value.items():
            if condition not in DEPENDENCY_CONDITIONS:
                self._expect(f"dependsOn.{name}", '"started", "healthy" or "completed"', condition)
            else:
                depends[name] = condition
        return depends

    def _instances(self, entry: dict[str, Any]) -> int | None:
        if "instances" not in entry:
            return None
        value = entry["instances"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
            self._expect("instances", "a whole number from 1 to 1000", value)
            return 1
        return value

    def _optional_str(self, entry: dict[str, Any], name: str) -> str | None:
        if name not in entry:
            return None
        value = entry[name]
        if not isinstance(value, str) or not value:
            self._expect(name, "a non-empty string", value)
            return None
        if "\0" in value:  # no program can be given a NUL byte
            self._expect(name, "a string without NUL characters", value)
            return None
        return value

    def _str_list(self, entry: dict[str, Any], name: str) -> list[str]:
        value = entry.get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self._expect(name, "an array of strings", value)
            return []
        if any("\0" in item for item in value):
            self._expect(name, "strings without NUL characters", value)
            return []
        return value

    def _env(self, entry: dict[str, Any]) -> dict[str, str]:
        value = entry.get("env", {})
        if not isinstance(value, dict):
            self._expect("env", "an object of strings", value)
            return {}
        env: dict[str, str] = {}
        for name, item in value.items():
            if not name or "=" in name or "\0" in name:
                self._error("env", f"expected variable names without '=' or NUL characters, got {name!r}")
            # Numbers are common in hand-written env blocks ("PORT": 8000): accept them as text.
            elif isinstance(item, str) and "\0" in item:
                shown = MASK if is_secret_name(name) else item  # an error must not print a secret
                self._expect(f"env.{name}", "a string without NUL characters", shown)
            elif isinstance(item, str):
                env[name] = item
            elif isinstance(item, int | float) and not isinstance(item, bool):
                env[name] = json.dumps(item)
            else:
                self._expect(f"env.{name}", "a string", item)
        return env

    def _max_retries(self, entry: dict[str, Any]) -> int:
        value = entry.get("maxRetries", -1)
        if isinstance(value, bool) or not isinstance(value, int) or value < -1:
            self._expect("maxRetries", "a whole number, -1 (never give up) or more", value)
            return -1
        return value

    def _duration(self, entry: dict[str, Any], name: str, default: float, prefix: str = "") -> float:
        if name not in entry:
            return default
        value = entry[name]
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except ValueError:
                pass
        self._expect(prefix + name, DURATION_EXPECTED, value)
        return default

    def _bool(self, entry: dict[str, Any], name: str) -> bool:
        value = entry.get(name, False)
        if not isinstance(value, bool):
            self._expect(name, "true or false", value)
            return False
        return value


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of ``pb_processes.json`` for editors."""
    duration = {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h))+$", "examples": ["500ms", "2s", "1m"]}
    strings = {"type": "array", "items": {"type": "string"}}
    probe = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "http": {"type": "string"},
            "tcp": {"type": ["string", "integer"]},
            "command": strings,
            "status": {"type": "integer"},
            "interval": duration,
            "timeout": duration,
            "failureThreshold": {"type": "integer", "minimum": 1},
            "initialDelay": duration,
        },
    }
    process = {
        "type": "object",
        "required": ["id"],
        "oneOf": [{"required": ["script"]}, {"required": ["command"]}],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": ID_PATTERN.pattern, "maxLength": ID_MAX_LENGTH},
            "script": {"type": "string", "minLength": 1, "description": "script run through an interpreter"},
            "command": {"type": "string", "minLength": 1, "description": "executable looked up on PATH"},
            "args": strings,
            "cwd": {"type": "string", "default": ".", "description": "relative to this file's folder"},
            "env": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
            "interpreter": {"type": "string", "default": "auto"},
            "maxRetries": {"type": "integer", "minimum": -1, "default": -1},
            "backoff": {**duration, "default": "1s"},
            "devMode": {"type": "boolean", "default": False},
            "watchPaths": strings,
            "watchDebounce": {**duration, "default": "500ms"},
            "stopTimeout": {**duration, "default": "10s"},
            "minUptime": {**duration, "default": "10s"},
            "maxMemory": {"type": ["string", "integer"], "examples": ["512MB", "1GB"]},
            "limits": {
                "type": "object",
                "additionalProperties": False,
                "properties": {name: {"type": ["integer", "string"]} for name in LIMIT_NAMES},
            },
            "readiness": probe,
            "liveness": probe,
            "dependsOn": {
                "oneOf": [
                    {"type": "object", "additionalProperties": {"enum": list(DEPENDENCY_CONDITIONS)}},
                    strings,
                ]
            },
            "instances": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1},
            "restart": {"enum": list(RESTART_POLICIES), "default": "always"},
            "logMaxSize": {"type": ["string", "integer"], "default": "50MB", "examples": ["50MB", "0"]},
            "logBackups": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_LOG_BACKUPS,
                "default": LOG_BACKUPS,
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "processman configuration (pb_processes.json)",
        "oneOf": [
            {"type": "array", "items": process},
            {"type": "object", "properties": {"processes": {"type": "array", "items": process}}},
        ],
    }


def configs_from_dicts(entries: Sequence[Mapping[str, Any]], base_dir: Path) -> tuple[ProcessConfig, ...]:
    """Build configs from JSON-shaped dicts; raise ValueError listing every problem."""
    configs, problems = parse_processes(list(entries), file="<code>", base_dir=base_dir)
    errors = [str(p) for p in problems if p.severity == "error"]
    if errors:
        raise ValueError("\n".join(errors))
    return configs
