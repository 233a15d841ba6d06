"""Notification targets (``notify``): where processman tells someone that a process crashed, gave up,
recovered, restarts in a storm or was restarted for its memory.

The same list is read at the top level of the object form (``{"processes": [...], "notify": [...]}``,
for every process) and in a process's entry (for that process alone)::

    {"webhook": "https://hooks.slack.com/services/...", "format": "slack", "events": ["crashed", "failed"]}
    {"command": ["/usr/local/bin/page-me"]}
    {"email": "ops@example.com"}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from processman.config.fields import (
    Choice,
    Duration,
    Field,
    Kind,
    Problems,
    Strings,
    Whole,
    check_fields,
    read_fields,
)
from processman.config.masking import MASK, mask_command
from processman.errors import ConfigError

# crashed: exited unexpectedly (a restart follows after its backoff); failed: gave up after maxRetries;
# recovered: running again for minUptime after a crash or a give-up; restartStorm: stormRestarts
# unexpected exits within stormWindow; memoryRestart: restarted above maxMemory; runFailed: a run of a
# job failed or timed out (each attempt; a job waiting to retry is not told as crashed).
NOTIFY_EVENTS = ("crashed", "failed", "recovered", "restartStorm", "memoryRestart", "runFailed")
NOTIFY_FORMATS = ("json", "slack", "discord")
NOTIFY_KINDS = ("webhook", "command", "email")
NOTIFY_EXPECTED = 'an object with "webhook" (a URL), "command" (an array of strings) or "email" (an address)'
_EMAIL = re.compile(r"[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+")


class EventNames(Kind):
    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> tuple[str, ...] | None:
        expected = f"an array of event names ({', '.join(NOTIFY_EVENTS)})"
        if not isinstance(raw, list | tuple) or not raw or not all(isinstance(name, str) for name in raw):
            problems.expect(at, expected, raw)
            return None
        unknown = [name for name in raw if name not in NOTIFY_EVENTS]
        if unknown:
            problems.expect(at, expected, unknown[0])
            return None
        return tuple(raw)

    def show(self, value: Any, *, mask: bool) -> Any:
        return list(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "minItems": 1, "items": {"enum": list(NOTIFY_EVENTS)}}


# The fields of a target beside the target itself (one of "webhook", "command", "email").
NOTIFY_FIELDS: tuple[Field, ...] = (
    Field("format", "format", Choice(NOTIFY_FORMATS), "json", "body of a webhook: json, slack or discord"),
    Field("events", "events", EventNames(), NOTIFY_EVENTS, "the events sent to this target"),
    Field(
        "stormRestarts",
        "storm_restarts",
        Whole(2, None, "a whole number, 2 or more"),
        5,
        "unexpected exits within stormWindow that make a restartStorm",
    ),
    Field("stormWindow", "storm_window", Duration(), 300.0, "the window of a restartStorm"),
)
_NOTIFY_DEFAULT = {spec.attr: spec.default for spec in NOTIFY_FIELDS}


@dataclass(frozen=True)
class NotifyTarget:
    """One place notifications go: a webhook POST, a command (the event as JSON on its stdin) or an
    email sent through PocketBase's mail settings (PocketBase mode only)."""

    kind: Literal["webhook", "command", "email"]
    target: str = ""  # the URL (webhook) or the address (email)
    command: tuple[str, ...] = ()
    format: Literal["json", "slack", "discord"] = _NOTIFY_DEFAULT["format"]
    events: tuple[str, ...] = _NOTIFY_DEFAULT["events"]
    storm_restarts: int = _NOTIFY_DEFAULT["storm_restarts"]
    storm_window: float = _NOTIFY_DEFAULT["storm_window"]

    def __post_init__(self) -> None:
        problems = Problems()
        _check_target(self.kind, self.target, self.command, problems)
        check_fields(self, NOTIFY_FIELDS, problems)
        if problems:
            raise ConfigError("invalid notify target: " + "; ".join(problems.lines()))
        object.__setattr__(self, "command", tuple(self.command))
        object.__setattr__(self, "events", tuple(self.events))

    def __repr__(self) -> str:  # a webhook URL holds its credentials
        return f"NotifyTarget({self.kind}={self.describe()!r})"

    def describe(self) -> str:
        """The target as logs and metrics name it, without secrets."""
        if self.kind == "webhook":
            return mask_webhook(self.target)
        if self.kind == "email":
            return self.target
        return " ".join(mask_command(self.command))


def mask_webhook(url: str) -> str:
    """``https://hooks.slack.com/****``: a webhook's path and query are its credentials."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/{MASK}"


def _check_target(kind: Any, target: Any, command: Any, problems: Problems) -> None:
    if kind == "webhook":
        if not isinstance(target, str) or not target.startswith(("http://", "https://")):
            problems.expect("webhook", "a URL starting with http:// or https://", target)
    elif kind == "email":
        if not isinstance(target, str) or not _EMAIL.fullmatch(target):
            problems.expect("email", "an email address", target)
    elif kind == "command":
        Strings().check(command, "command", problems)
        if not problems and not command:
            problems.expect("command", "a non-empty array of strings", command)
    else:
        problems.expect("kind", '"webhook", "command" or "email"', kind)


class NotifyTargets(Kind):
    """A ``notify`` list: targets that are wrong are reported, and the others kept."""

    def read(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> tuple[NotifyTarget, ...] | None:
        if not isinstance(raw, list):
            problems.expect(at, f"an array of targets, each {NOTIFY_EXPECTED}", raw)
            return None
        targets = []
        for index, item in enumerate(raw):
            target = self._read_one(item, f"{at}[{index}]", problems, base_dir)
            if target is not None:
                targets.append(target)
        return tuple(targets)

    def _read_one(self, raw: Any, at: str, problems: Problems, base_dir: Path) -> NotifyTarget | None:
        if not isinstance(raw, Mapping):
            problems.expect(at, NOTIFY_EXPECTED, raw)
            return None
        kinds = [kind for kind in NOTIFY_KINDS if kind in raw]
        if len(kinds) != 1:
            problems.expect(at, NOTIFY_EXPECTED, raw)
            return None
        kind = kinds[0]
        before = len(problems.items)
        value = raw[kind]
        target, command = "", ()
        if kind == "command":
            command = value
        else:
            target = value
        scoped = Problems()
        _check_target(kind, target, command, scoped)
        for where, message in scoped.items:
            problems.error(f"{at}.{where}", message)
        values = read_fields(raw, NOTIFY_FIELDS, problems, base_dir, prefix=f"{at}.")
        known = {kind, *(spec.key for spec in NOTIFY_FIELDS)}
        for key in raw:
            if key not in known:
                problems.error(
                    f"{at}.{key}", f"unknown notify field; expected one of {', '.join(sorted(known))}"
                )
        if kind != "webhook" and "format" in raw:
            problems.error(f"{at}.format", "only a webhook has a format")
        if len(problems.items) > before:
            return None
        try:
            return NotifyTarget(kind=kind, target=target, command=tuple(command), **values)  # type: ignore[arg-type]
        except ConfigError as exc:
            problems.error(at, str(exc))
            return None

    def check(self, value: Any, at: str, problems: Problems) -> None:
        if not isinstance(value, tuple | list) or not all(isinstance(item, NotifyTarget) for item in value):
            problems.expect(at, "a sequence of NotifyTarget", value)

    def show(self, value: Any, *, mask: bool) -> Any:
        return [notify_to_json(target, mask=mask) for target in value]

    def schema(self) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "webhook": {"type": "string", "pattern": "^https?://"},
            "command": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "email": {"type": "string", "pattern": "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$"},
        }
        for spec in NOTIFY_FIELDS:
            properties[spec.key] = {**spec.kind.schema(), "description": spec.description}
            properties[spec.key]["default"] = spec.kind.show(spec.default, mask=False)
        target = {
            "type": "object",
            "additionalProperties": False,
            "oneOf": [{"required": [kind]} for kind in NOTIFY_KINDS],
            "dependentRequired": {"format": ["webhook"]},
            "properties": properties,
        }
        return {"type": "array", "items": target}


def notify_to_json(target: NotifyTarget, *, mask: bool = True) -> dict[str, Any]:
    """A target as the config file gives it; with ``mask``, a webhook's path (its credentials) masked."""
    data: dict[str, Any] = {}
    if target.kind == "webhook":
        data["webhook"] = mask_webhook(target.target) if mask else target.target
        data["format"] = target.format
    elif target.kind == "email":
        data["email"] = target.target
    else:
        data["command"] = mask_command(target.command) if mask else list(target.command)
    for spec in NOTIFY_FIELDS:
        if spec.key != "format":
            data[spec.key] = spec.kind.show(getattr(target, spec.attr), mask=mask)
    return data
