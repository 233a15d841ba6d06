"""The kinds of value a config field holds, each knowing its rules once: how a JSON value is read (and
what is expected when it does not fit), how a value given in Python is checked, its JSON Schema, and how
it is shown. The field tables of :mod:`processman.config.model` are made of these."""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processman.config.masking import MASK, is_secret_name, mask_env
from processman.durations import DURATION_PATTERN, POSITIVE_DURATION_PATTERN, format_duration, parse_duration
from processman.sizes import SIZE_PATTERN, format_size, parse_size

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
ID_MAX_LENGTH = 64
ID_EXPECTED = f"letters, digits, '.', '_' or '-', starting with a letter or digit, at most {ID_MAX_LENGTH}"
# A group starts with a letter: "group:<name>" then never reads as an instance id "<entry>:<n>".
GROUP_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*$")
GROUP_EXPECTED = f"letters, digits, '.', '_' or '-', starting with a letter, at most {ID_MAX_LENGTH}"
GROUP_PREFIX = "group:"
DURATION_EXPECTED = 'a duration like "500ms", "2s" or "1m"'
POSITIVE_DURATION_EXPECTED = 'a duration above 0 like "500ms", "2s" or "1m"'
SIZE_EXPECTED = 'a size like "512MB" or "1GB"'
RESTART_POLICIES = ("always", "on-failure", "never")
LIMIT_NAMES = ("openFiles", "cpuSeconds", "coreSize")
DEPENDENCY_CONDITIONS = ("started", "healthy", "completed", "completedSuccessfully", "logReady")
# Strings handed to a program (argv, environment) cannot hold a NUL byte.
NO_NUL = "^[^\\u0000]*$"


def describe(value: Any) -> str:
    """A value as a problem shows it: JSON where it is JSON, short for containers."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, str | int | float):
        try:
            return json.dumps(value)
        except ValueError:  # an int beyond Python's digit limit for str()
            return "a number too large to show"
    return repr(value)


class Problems:
    """What is wrong with one entry (or one object built in code), field by field."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []  # (field, message)

    def __bool__(self) -> bool:
        return bool(self.items)

    def error(self, at: str, message: str) -> None:
        self.items.append((at, message))

    def expect(self, at: str, expected: str, value: Any) -> None:
        self.error(at, f"expected {expected}, got {describe(value)}")

    def lines(self) -> list[str]:
        return [f"{at}: {message}" for at, message in self.items]


def whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Kind:
    """One kind of value. ``read`` turns a JSON value into the Python one (None when it does not fit,
    after reporting why); ``check`` reports what is wrong with a value given in Python; ``show`` is the
    JSON form the API reports; ``schema`` the JSON Schema of the JSON form."""

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> Any:
        raise NotImplementedError

    def check(self, value: Any, at: str, problems: Problems) -> None:
        # For most kinds the Python value is the JSON value.
        self.read(value, at, problems, Path("."))

    def absent(self, default: Any, base_dir: Path) -> Any:
        """The value when the field is not in the file."""
        return default

    def show(self, value: Any, *, mask: bool) -> Any:
        return value

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError


class Text(Kind):
    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> str | None:
        if not isinstance(raw, str) or not raw:
            problems.expect(at, "a non-empty string", raw)
            return None
        if "\0" in raw:  # no program can be given a NUL byte
            problems.expect(at, "a string without NUL characters", raw)
            return None
        return raw

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "pattern": NO_NUL}


class Folder(Kind):
    """A working directory: relative to the config file's folder in a file, to the current directory in
    code (where ``ProcessConfig`` makes it absolute)."""

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> Path | None:
        text = Text().read(raw, at, problems, base_dir)
        return None if text is None else base_dir / text

    def absent(self, default: Any, base_dir: Path) -> Any:
        return base_dir / default

    def check(self, value: Any, at: str, problems: Problems) -> None:
        if not isinstance(value, str | os.PathLike):
            problems.expect(at, "a path", value)
        elif "\0" in str(value):
            problems.expect(at, "a string without NUL characters", str(value))

    def show(self, value: Any, *, mask: bool) -> Any:
        return str(value)

    def schema(self) -> dict[str, Any]:
        return Text().schema()


class Files(Kind):
    """One path or an array of paths: relative to the config file's folder in a file, to the current
    directory in code (where ``ProcessConfig`` makes them absolute). Always a tuple in Python."""

    EXPECTED = "a path or an array of paths"

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> tuple[Path, ...] | None:
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple) or not all(isinstance(item, str) and item for item in items):
            problems.expect(at, self.EXPECTED, raw)
            return None
        if any("\0" in item for item in items):
            problems.expect(at, "paths without NUL characters", raw)
            return None
        return tuple(base_dir / item for item in items)

    def check(self, value: Any, at: str, problems: Problems) -> None:
        items = [value] if isinstance(value, str | os.PathLike) else value
        if not isinstance(items, list | tuple) or not all(
            isinstance(item, str | os.PathLike) and str(item) for item in items
        ):
            problems.expect(at, self.EXPECTED, value)
        elif any("\0" in str(item) for item in items):
            problems.expect(at, "paths without NUL characters", [str(item) for item in items])

    def show(self, value: Any, *, mask: bool) -> Any:
        return [str(item) for item in value]

    def schema(self) -> dict[str, Any]:
        text = Text().schema()
        return {"oneOf": [text, {"type": "array", "items": text}]}


class Strings(Kind):
    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> tuple[str, ...] | None:
        if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
            problems.expect(at, "an array of strings", raw)
            return None
        if any("\0" in item for item in raw):
            problems.expect(at, "strings without NUL characters", raw)
            return None
        return tuple(raw)

    def show(self, value: Any, *, mask: bool) -> Any:
        return list(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string", "pattern": NO_NUL}}


@dataclass(frozen=True)
class Whole(Kind):
    """A whole number from ``low`` to ``high`` (None: no upper bound)."""

    low: int
    high: int | None
    expected: str

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> int | None:
        if not whole(raw) or raw < self.low or (self.high is not None and raw > self.high):
            problems.expect(at, self.expected, raw)
            return None
        return int(raw)

    def schema(self) -> dict[str, Any]:
        bounds = {"minimum": self.low} | ({} if self.high is None else {"maximum": self.high})
        return {"type": "integer", **bounds}


class Bool(Kind):
    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> bool | None:
        if not isinstance(raw, bool):
            problems.expect(at, "true or false", raw)
            return None
        return raw

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Choice(Kind):
    values: tuple[str, ...]

    @property
    def expected(self) -> str:
        quoted = [json.dumps(value) for value in self.values]
        return f"{', '.join(quoted[:-1])} or {quoted[-1]}"

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> str | None:
        if not isinstance(raw, str) or raw not in self.values:
            problems.expect(at, self.expected, raw)
            return None
        return raw

    def schema(self) -> dict[str, Any]:
        return {"enum": list(self.values)}


# Signals a process may be stopped with: every one but those that cannot end a process by asking.
STOP_SIGNALS = tuple(
    sig.name
    for sig in sorted(signal.Signals, key=lambda sig: sig.value)
    if sig.name.startswith("SIG") and not sig.name.startswith("SIG_")
    if sig
    not in (signal.SIGSTOP, signal.SIGCONT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD)
)
SIGNAL_EXPECTED = 'a signal name like "SIGTERM", "SIGQUIT" or "INT"'


def signal_name(raw: str) -> str | None:
    """``"QUIT"``, ``"sigquit"``, ``"SIGQUIT"`` -> ``"SIGQUIT"``; None for anything else."""
    name = raw.strip().upper()
    name = name if name.startswith("SIG") else "SIG" + name
    return name if name in STOP_SIGNALS else None


class SignalName(Kind):
    """A stop signal by name, with or without ``SIG``, any case; ``"SIGQUIT"`` in Python."""

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> str | None:
        name = signal_name(raw) if isinstance(raw, str) else None
        if name is None:
            problems.expect(at, SIGNAL_EXPECTED, raw)
        return name

    def check(self, value: Any, at: str, problems: Problems) -> None:
        if not isinstance(value, str) or signal_name(value) is None:
            problems.expect(at, SIGNAL_EXPECTED, value)

    def schema(self) -> dict[str, Any]:
        short = [name[3:] for name in STOP_SIGNALS]
        return {"type": "string", "pattern": "^(?i:(SIG)?(" + "|".join(short) + "))$"}


@dataclass(frozen=True)
class Duration(Kind):
    """``"500ms"``, ``"1m30s"`` in a file; seconds (0 or more) in Python; shown as in a file.
    ``positive``: 0 is refused (a run timeout of 0 would stop every run at once)."""

    positive: bool = False

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> float | None:
        if isinstance(raw, str):
            try:
                seconds = parse_duration(raw)
            except ValueError:
                pass
            else:
                if seconds < float("inf") and (seconds > 0 or not self.positive):  # 400 digits: none
                    return seconds
        problems.expect(at, POSITIVE_DURATION_EXPECTED if self.positive else DURATION_EXPECTED, raw)
        return None

    def check(self, value: Any, at: str, problems: Problems) -> None:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not 0 <= value < float("inf") or (self.positive and value == 0):
            problems.expect(
                at, f"a duration in seconds, {'above 0' if self.positive else '0 or more'}", value
            )

    def show(self, value: Any, *, mask: bool) -> Any:
        return format_duration(value)

    def schema(self) -> dict[str, Any]:
        pattern = POSITIVE_DURATION_PATTERN if self.positive else DURATION_PATTERN
        return {"type": "string", "pattern": pattern, "examples": ["500ms", "2s", "1m"]}


@dataclass(frozen=True)
class Size(Kind):
    """``"512MB"`` or a number of bytes in a file; bytes in Python; shown as ``"512MB"``."""

    smallest: int  # 0 where 0 means "never"

    @property
    def expected(self) -> str:
        return SIZE_EXPECTED + (" (0: never)" if self.smallest == 0 else "")

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> int | None:
        if whole(raw) and raw >= self.smallest:
            return int(raw)
        if isinstance(raw, str):
            try:
                size = parse_size(raw)
            except ValueError:
                pass
            else:
                if size >= self.smallest:
                    return size
        problems.expect(at, self.expected, raw)
        return None

    def check(self, value: Any, at: str, problems: Problems) -> None:
        if not whole(value) or value < self.smallest:
            problems.expect(at, f"a size in bytes, {self.smallest} or more", value)

    def show(self, value: Any, *, mask: bool) -> Any:
        return format_size(value) if value else "0"

    def schema(self) -> dict[str, Any]:
        return {
            "oneOf": [
                {"type": "integer", "minimum": self.smallest},
                {"type": "string", "pattern": SIZE_PATTERN},
            ],
            "examples": ["512MB", "1GB"],
        }


class Environment(Kind):
    """Variable names -> values. Numbers are common in hand-written env blocks ("PORT": 8000): a file
    may give them, read as text; Python must give strings."""

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> dict[str, str] | None:
        if not isinstance(raw, Mapping):
            problems.expect(at, "an object of strings", raw)
            return None
        env: dict[str, str] = {}
        for name, item in raw.items():
            if not isinstance(name, str) or not name or "=" in name or "\0" in name:
                problems.error(at, f"expected variable names without '=' or NUL characters, got {name!r}")
            elif isinstance(item, str) and "\0" in item:
                shown = MASK if is_secret_name(name) else item  # a problem must not print a secret
                problems.expect(f"{at}.{name}", "a string without NUL characters", shown)
            elif isinstance(item, str):
                env[name] = item
            elif isinstance(item, int | float) and not isinstance(item, bool):
                env[name] = json.dumps(item)
            else:
                problems.expect(f"{at}.{name}", "a string", item)
        return env

    def check(self, value: Any, at: str, problems: Problems) -> None:
        self.read(value, at, problems, Path("."))
        if isinstance(value, Mapping):
            for name, item in value.items():
                if isinstance(item, int | float) and not isinstance(item, bool):
                    problems.expect(f"{at}.{name}", "a string", item)

    def show(self, value: Any, *, mask: bool) -> Any:
        return mask_env(value) if mask else dict(value)

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "propertyNames": {"minLength": 1, "pattern": "^[^=\\u0000]*$"},
            "additionalProperties": {"type": ["string", "number"], "pattern": NO_NUL},
        }


class Limits(Kind):
    EXPECTED = "a whole number, 0 or more"

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> dict[str, int] | None:
        if not isinstance(raw, Mapping):
            problems.expect(at, f"an object with {', '.join(LIMIT_NAMES)}", raw)
            return None
        limits: dict[str, int] = {}
        for name, item in raw.items():
            if name not in LIMIT_NAMES:
                problems.error(f"{at}.{name}", f"unknown limit; expected one of {', '.join(LIMIT_NAMES)}")
            elif name == "coreSize" and isinstance(item, str):
                try:
                    limits[name] = parse_size(item)
                except ValueError:
                    problems.expect(f"{at}.{name}", SIZE_EXPECTED, item)
            elif not whole(item) or item < 0:
                problems.expect(f"{at}.{name}", self.EXPECTED, item)
            else:
                limits[name] = item
        return limits

    def check(self, value: Any, at: str, problems: Problems) -> None:
        self.read(value, at, problems, Path("."))
        if isinstance(value, Mapping) and isinstance(value.get("coreSize"), str):
            problems.expect(f"{at}.coreSize", "a size in bytes, 0 or more", value["coreSize"])

    def show(self, value: Any, *, mask: bool) -> Any:
        return dict(value)

    def schema(self) -> dict[str, Any]:
        number = {"type": "integer", "minimum": 0}
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "openFiles": number,
                "cpuSeconds": number,
                "coreSize": {"oneOf": [number, {"type": "string", "pattern": SIZE_PATTERN}]},
            },
        }


class Dependencies(Kind):
    """Other entry ids -> a condition of DEPENDENCY_CONDITIONS; a file may give an array of ids."""

    CONDITION = Choice(DEPENDENCY_CONDITIONS)

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> dict[str, str] | None:
        if isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
            return dict.fromkeys(raw, "started")
        if not isinstance(raw, Mapping):
            problems.expect(at, 'an object like {"db": "healthy"} or an array of ids', raw)
            return None
        depends: dict[str, str] = {}
        for name, condition in raw.items():
            if self.CONDITION.read(condition, f"{at}.{name}", problems, base_dir) is not None:
                depends[name] = condition
        return depends

    def check(self, value: Any, at: str, problems: Problems) -> None:
        if not isinstance(value, Mapping):
            problems.expect(at, 'an object like {"db": "healthy"}', value)
        else:
            self.read(value, at, problems, Path("."))

    def show(self, value: Any, *, mask: bool) -> Any:
        return dict(value)

    def schema(self) -> dict[str, Any]:
        return {
            "oneOf": [
                {"type": "object", "additionalProperties": self.CONDITION.schema()},
                {"type": "array", "items": {"type": "string"}},
            ]
        }


class ExitCodes(Kind):
    """Exit codes (0 to 255), at least one; a tuple in Python."""

    EXPECTED = "an array of exit codes from 0 to 255, at least one"

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> tuple[int, ...] | None:
        if (
            not isinstance(raw, list | tuple)
            or not raw
            or not all(whole(code) and 0 <= code <= 255 for code in raw)
        ):
            problems.expect(at, self.EXPECTED, raw)
            return None
        return tuple(sorted(set(raw)))

    def show(self, value: Any, *, mask: bool) -> Any:
        return list(value)

    def schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "minItems": 1,
            "items": {"type": "integer", "minimum": 0, "maximum": 255},
        }


class Pattern(Kind):
    """A regular expression (Python's ``re``), matched anywhere in a line."""

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> str | None:
        text = Text().read(raw, at, problems, base_dir)
        if text is None:
            return None
        try:
            re.compile(text)
        except re.error as exc:
            problems.error(at, f"expected a regular expression, got {describe(raw)} ({exc})")
            return None
        return text

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "format": "regex"}


def valid_id(value: str) -> bool:
    # fullmatch: "$" alone would accept a trailing newline ("web\n").
    return len(value) <= ID_MAX_LENGTH and ID_PATTERN.fullmatch(value) is not None


class Identifier(Kind):
    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> str | None:
        if not isinstance(raw, str) or not valid_id(raw):
            problems.expect(at, ID_EXPECTED, raw)
            return None
        return raw

    def check(self, value: Any, at: str, problems: Problems) -> None:
        # Built in code, an id may be an instance's: "<entry>:<n>".
        base, _, instance = value.partition(":") if isinstance(value, str) else ("", "", "")
        if not valid_id(base) or (instance and not instance.isdigit()):
            problems.expect(at, ID_EXPECTED, value)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": ID_PATTERN.pattern, "maxLength": ID_MAX_LENGTH}


def valid_group(value: str) -> bool:
    return len(value) <= ID_MAX_LENGTH and GROUP_PATTERN.fullmatch(value) is not None


class GroupName(Kind):
    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> str | None:
        if not isinstance(raw, str) or not valid_group(raw):
            problems.expect(at, GROUP_EXPECTED, raw)
            return None
        return raw

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": GROUP_PATTERN.pattern, "maxLength": ID_MAX_LENGTH}


@dataclass(frozen=True)
class Field:
    """One field of a config: its JSON name, Python attribute, kind, default and description."""

    key: str
    attr: str
    kind: Kind
    default: Any = None
    description: str = ""
    required: bool = False
    # Not shown when empty (an empty ``limits`` says nothing); None values are never shown.
    omit_empty: bool = False

    def shown(self, value: Any, *, mask: bool) -> Any:
        return None if value is None else self.kind.show(value, mask=mask)


def check_fields(obj: object, fields: Sequence[Field], problems: Problems) -> None:
    """Report every field of ``obj`` (built in code) that breaks its kind's rules."""
    for spec in fields:
        value = getattr(obj, spec.attr)
        if value is None and spec.default is None and not spec.required:
            continue  # an optional field left out
        spec.kind.check(value, spec.key, problems)


def read_fields(
    raw: Mapping[str, Any], fields: Sequence[Field], problems: Problems, base_dir: Path, prefix: str = ""
) -> dict[str, Any]:
    """Python values by attribute for every field of a JSON object (defaults for those left out)."""
    values: dict[str, Any] = {}
    for spec in fields:
        if spec.key in raw:
            values[spec.attr] = spec.kind.read(raw[spec.key], prefix + spec.key, problems, base_dir)
        elif spec.required:
            problems.error(prefix + spec.key, "required field is missing")
        else:
            values[spec.attr] = spec.kind.absent(spec.default, base_dir)
    return values
