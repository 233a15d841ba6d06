"""The one loader of ``pb_processes.json``.

The loader reads and validates and does nothing else: it never logs, never exits and never raises for
bad content, however hostile. Every problem is collected as a :class:`ConfigProblem` that names the
file, the entry, the field, the bad value and what was expected, so ``processman check`` can list them
all at once and the manager can skip the broken entries while the valid ones still run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from processman.config.fields import Problems, describe, read_fields
from processman.config.model import FIELDS, PROCESS_FIELDS, ProcessConfig, check_target
from processman.config.notify import NotifyTarget, NotifyTargets
from processman.errors import ConfigError
from processman.sizes import format_size

CONFIG_FILENAME = "pb_processes.json"


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
    # The top-level ``notify`` of the object form: targets for the events of every process.
    notify: tuple[NotifyTarget, ...] = ()

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
    # Checked before open(): given a folder's descriptor, open() raises and leaves the descriptor open.
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise _Unreadable("it is a folder, not a file" if stat.S_ISDIR(mode) else "it is not a regular file")
    with open(descriptor, "rb") as file:
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
        notify, notify_problems = parse_notify(data, file=name, base_dir=file_path.parent)
    except (RecursionError, MemoryError) as exc:
        return unusable(f"cannot be read: {type(exc).__name__}")
    return LoadedConfig(file_path, True, processes, problems + notify_problems, notify)


def parse_notify(
    data: Any, *, file: str, base_dir: Path
) -> tuple[tuple[NotifyTarget, ...], tuple[ConfigProblem, ...]]:
    """The top-level ``notify`` of the object form: the valid targets, and a problem for each other."""
    if not isinstance(data, dict) or "notify" not in data:
        return (), ()
    found = Problems()
    targets = NotifyTargets().read(data["notify"], "notify", found, base_dir)
    problems = tuple(ConfigProblem(file, "top level", f"{line}; target skipped") for line in found.lines())
    return targets or (), problems


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
        got = describe(data)
        problems.append(
            ConfigProblem(
                file, "top level", f'expected an array of processes or {{"processes": [...]}}, got {got}'
            )
        )
        return (), tuple(problems)

    configs: list[ProcessConfig] = []
    seen: dict[str, int] = {}
    where_of: dict[str, str] = {}
    skipped: set[str] = set()  # ids of entries skipped for their own problems
    for index, entry in enumerate(entries):
        where = f"{prefix}[{index}]"
        if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]:
            where = f"{where} (id {json.dumps(entry['id'])})"
        problems.extend(_unknown_fields(entry, file, where))
        found = Problems()
        config = _read_entry(entry, base_dir, found)
        problems.extend(ConfigProblem(file, where, f"{line}; entry skipped") for line in found.lines())
        if config is None:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                skipped.add(entry["id"])
            continue
        if config.id in seen:
            problems.append(
                ConfigProblem(
                    file,
                    where,
                    f'id: duplicate id "{config.id}" '
                    f"(first used by entry [{seen[config.id]}]); entry skipped",
                )
            )
            continue
        seen[config.id] = index
        where_of[config.id] = where
        configs.append(config)
    configs, dependency_problems = _check_dependencies(configs, file, where_of, skipped)
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
    configs: list[ProcessConfig], file: str, where_of: dict[str, str], skipped: set[str]
) -> tuple[list[ProcessConfig], list[ConfigProblem]]:
    """Unknown dependencies and cycles skip the entries involved, with the cycle named; so does a
    dependency on an entry skipped for its own problems (``skipped``), said as such."""
    problems: list[ConfigProblem] = []
    known = {config.id: config for config in configs}
    bad: set[str] = set()
    for config in configs:
        for name, condition in config.depends_on.items():
            if name not in known:
                bad.add(config.id)
                why = (
                    f'entry "{name}" has problems of its own (above)'
                    if name in skipped
                    else f'no entry has id "{name}"'
                )
                problems.append(ConfigProblem(file, where_of[config.id], f"dependsOn: {why}; entry skipped"))
            elif condition == "logReady" and known[name].is_task and known[name].ready_log_line is not None:
                problems.append(
                    ConfigProblem(
                        file,
                        where_of[config.id],
                        f'dependsOn.{name}: "logReady" holds only while "{name}" runs, and it runs to an '
                        'end: "completed" or "completedSuccessfully" waits for that end',
                        "warning",
                    )
                )
            elif condition == "logReady" and known[name].ready_log_line is None:
                bad.add(config.id)
                problems.append(
                    ConfigProblem(
                        file,
                        where_of[config.id],
                        f'dependsOn.{name}: "logReady" needs "readyLogLine" on "{name}" (the line that '
                        "says it is ready); entry skipped",
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
                        file,
                        where_of[config.id],
                        "dependsOn: depends on an entry with problems; entry skipped",
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


def _read_entry(entry: Any, base_dir: Path, problems: Problems) -> ProcessConfig | None:
    """One entry: a ProcessConfig, or None with every problem reported."""
    if not isinstance(entry, dict):
        problems.expect("entry", "an object", entry)
        return None
    values = read_fields(entry, PROCESS_FIELDS, problems, base_dir)
    # By presence: a "script": null is reported above, and is not the missing script.
    check_target("script" in entry or None, "command" in entry or None, problems)
    if problems:
        return None
    try:
        return ProcessConfig(**values, root=base_dir)
    except ConfigError as exc:  # a rule the reading missed: still a problem, never a crash
        problems.error("entry", str(exc))
        return None


def _unknown_fields(entry: Any, file: str, where: str) -> list[ConfigProblem]:
    """Warnings for fields no entry has (a typo, most often): the entry still runs."""
    if not isinstance(entry, dict):
        return []
    warnings = []
    for key in entry:
        if key not in FIELDS:
            import difflib  # only for a misspelt key

            close = difflib.get_close_matches(key, list(FIELDS), n=1, cutoff=0.6)
            hint = f'; did you mean "{close[0]}"?' if close else f"; known fields: {', '.join(FIELDS)}"
            warnings.append(ConfigProblem(file, where, f'unknown field "{key}" ignored{hint}', "warning"))
    return warnings


def configs_from_dicts(entries: Sequence[Mapping[str, Any]], base_dir: Path) -> tuple[ProcessConfig, ...]:
    """Build configs from JSON-shaped dicts; raise ConfigError listing every problem."""
    configs, problems = parse_processes(list(entries), file="<code>", base_dir=base_dir)
    errors = [str(p) for p in problems if p.severity == "error"]
    if errors:
        raise ConfigError("\n".join(errors))
    return configs
