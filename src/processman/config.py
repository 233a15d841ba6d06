"""Process configuration: the value objects and the one loader of ``pb_processes.json``.

The loader reads and validates and does nothing else: it never logs, never exits and never raises for
bad content. Every problem is collected as a :class:`ConfigProblem` that names the file, the entry, the
field, the bad value and what was expected, so ``processman check`` can list them all at once and the
manager can skip the broken entries while the valid ones still run.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from processman.durations import format_duration, parse_duration

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
    "stopTimeout": "stop_timeout",
    "minUptime": "min_uptime",
}

_SECRET_MARKERS = ("KEY", "SECRET", "PASSWORD", "TOKEN", "PASS", "CREDENTIAL", "PRIVATE", "AUTH")
MASK = "****"


def is_secret_name(name: str) -> bool:
    """True when an environment variable's name says its value is a secret."""
    upper = name.upper()
    return any(marker in upper for marker in _SECRET_MARKERS)


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    return {name: MASK if is_secret_name(name) else value for name, value in env.items()}


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
    stop_timeout: float = 10.0
    # A run longer than this is healthy: the failure count resets and the restart is immediate.
    min_uptime: float = 10.0

    def __post_init__(self) -> None:
        problems = _validate_values(self)
        if problems:
            raise ValueError(f"invalid process config {self.id!r}: " + "; ".join(problems))
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "watch_paths", tuple(self.watch_paths))
        object.__setattr__(self, "env", dict(self.env))
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
            stopTimeout=format_duration(self.stop_timeout),
            minUptime=format_duration(self.min_uptime),
        )
        return data


def _validate_values(config: ProcessConfig) -> list[str]:
    """Checks shared by code registration; the file loader reports the same rules per field."""
    problems = []
    if not isinstance(config.id, str) or not _valid_id(config.id):
        problems.append(f"id: expected {_ID_EXPECTED}, got {config.id!r}")
    if (config.script is None) == (config.command is None):
        problems.append("exactly one of script and command must be set")
    if config.max_retries < -1:
        problems.append(f"max_retries: expected -1 or more, got {config.max_retries}")
    for name in ("backoff", "stop_timeout", "min_uptime"):
        if getattr(config, name) < 0:
            problems.append(f"{name}: expected a duration of 0 or more, got {getattr(config, name)}")
    return problems


_ID_EXPECTED = f"letters, digits, '.', '_' or '-', starting with a letter or digit, at most {ID_MAX_LENGTH}"


def _valid_id(value: str) -> bool:
    return len(value) <= ID_MAX_LENGTH and ID_PATTERN.match(value) is not None


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
        return f"{self.file}: {self.where}: {self.message}"


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


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read and validate a config file. Never raises for bad content: see :class:`LoadedConfig`."""
    file_path = Path(path).absolute()
    name = str(file_path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LoadedConfig(file_path, False, (), ())
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = ConfigProblem(name, "file", f"cannot be read: {reason}")
        return LoadedConfig(file_path, True, (), (problem,))
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
    processes, problems = parse_processes(data, file=name, base_dir=file_path.parent)
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
        configs.append(config)
    return tuple(configs), tuple(problems)


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
            self.where = f'{self.where} (id "{process_id}")'
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
        stop_timeout = self._duration(entry, "stopTimeout", 10.0)
        min_uptime = self._duration(entry, "minUptime", 10.0)
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
            stop_timeout=stop_timeout,
            min_uptime=min_uptime,
        )

    def _optional_str(self, entry: dict[str, Any], name: str) -> str | None:
        if name not in entry:
            return None
        value = entry[name]
        if not isinstance(value, str) or not value:
            self._expect(name, "a non-empty string", value)
            return None
        return value

    def _str_list(self, entry: dict[str, Any], name: str) -> list[str]:
        value = entry.get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self._expect(name, "an array of strings", value)
            return []
        return value

    def _env(self, entry: dict[str, Any]) -> dict[str, str]:
        value = entry.get("env", {})
        if not isinstance(value, dict):
            self._expect("env", "an object of strings", value)
            return {}
        env: dict[str, str] = {}
        for name, item in value.items():
            # Numbers are common in hand-written env blocks ("PORT": 8000): accept them as text.
            if isinstance(item, str):
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

    def _duration(self, entry: dict[str, Any], name: str, default: float) -> float:
        if name not in entry:
            return default
        value = entry[name]
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except ValueError:
                pass
        self._expect(name, DURATION_EXPECTED, value)
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
            "stopTimeout": {**duration, "default": "10s"},
            "minUptime": {**duration, "default": "10s"},
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
