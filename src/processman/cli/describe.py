"""``processman describe ID``: everything about one process on one screen (its state, config,
environment, resources, recent exits and last lines), from a running ``processman serve``.

Secrets arrive masked: the server never sends them. Whatever the server reports that this command does
not know yet is still shown, under "More".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from processman.cli.client import (
    GROUP_PREFIX,
    ClientError,
    Connection,
    connect,
    connection_options,
    format_line,
    local_time,
    members,
    next_run_text,
    process_path,
    unknown_id,
)
from processman.cli.console import terminal_safe

LAST_LINES = 10
EXITS_SHOWN = 5
# State keys shown in their own place; any other is listed under "More".
_SHOWN = {
    "id",
    "pid",
    "status",
    "ready",
    "startTime",
    "uptime",
    "restartCount",
    "lastError",
    "desired",
    "recentExits",
    "cpu",
    "memory",
    "logError",
    "logDroppedBytes",
    "virtualenv",
    "virtualenvLookedIn",
    "envFromFiles",
    "config",
    "nextRun",
}
# Config keys shown in their own place.
_CONFIG_SHOWN = {"id", "script", "command", "args", "cwd", "interpreter", "group", "env", "envFile"}


def _memory(size: Any) -> str:
    if not isinstance(size, int | float):
        return "-"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return terminal_safe(text)


def _section(title: str) -> str:
    return click.style(title, bold=True)


def _rows(pairs: list[tuple[str, Any]]) -> list[str]:
    width = max((len(name) for name, _ in pairs), default=0)
    return [f"  {name.ljust(width)}  {value}" for name, value in pairs]


def describe_lines(state: dict[str, Any], last_lines: list[dict[str, Any]]) -> list[str]:
    """The screen for one process state (as ``/api/pm/list`` gives it) and its last log lines."""
    config: dict[str, Any] = state.get("config") or {}
    status = str(state.get("status", "?"))
    lines = [f"{click.style(terminal_safe(str(state.get('id'))), bold=True)}  {status}"]

    run = [
        ("status", f"{status} (desired: {state.get('desired', '?')})"),
        ("pid", state.get("pid") or "-"),
        ("started", local_time(str(state["startTime"])) if state.get("startTime") else "-"),
        ("uptime", state.get("uptime") if state.get("pid") else "-"),
        ("ready", "yes" if state.get("ready") else "no"),
        ("restarts", state.get("restartCount", 0)),
        ("last error", _value(state.get("lastError") or "-")),
    ]
    if config.get("schedule") is not None:  # a job: when it runs next
        run.append(
            ("next run", next_run_text(state.get("nextRun")).removeprefix("next run ") or "- (not armed)")
        )
    lines += ["", _section("State"), *_rows(run)]

    program = config.get("script") or config.get("command")
    setup = [
        ("script" if "script" in config else "command", _value(program)),
        ("args", _value(" ".join(config.get("args") or [])) or "-"),
        ("interpreter", _value(config.get("interpreter") or "-")),
        ("cwd", _value(config.get("cwd", "-"))),
        ("group", _value(config.get("group") or "-")),
    ]
    venv = state.get("virtualenv")
    looked = state.get("virtualenvLookedIn") or []
    if venv:
        setup.append(("virtualenv", _value(venv)))
    elif looked:
        setup.append(("virtualenv", f"none (looked for .venv and venv in {_value(', '.join(looked))})"))
    others = [(key, _value(value)) for key, value in config.items() if key not in _CONFIG_SHOWN]
    lines += ["", _section("Config"), *_rows(setup + others)]

    env = config.get("env") or {}
    from_files = state.get("envFromFiles") or {}
    lines += ["", _section("Environment") + " (secrets masked)"]
    lines += _rows([(name, _value(value)) for name, value in env.items()]) or ["  env: -"]
    if config.get("envFile"):
        lines.append(f"  envFile: {_value(', '.join(config['envFile']))}")
        lines += _rows([(name, _value(value)) for name, value in from_files.items()])

    usage = [
        ("cpu", f"{state['cpu']:.1f}%" if isinstance(state.get("cpu"), int | float) else "-"),
        ("memory", _memory(state.get("memory"))),
        ("log files", _value(state.get("logError") or "written")),
        ("dropped output", f"{state.get('logDroppedBytes', 0)} bytes"),
    ]
    lines += ["", _section("Resources") + " (the whole process tree)", *_rows(usage)]

    more = [(key, _value(value)) for key, value in state.items() if key not in _SHOWN]
    if more:
        lines += ["", _section("More"), *_rows(more)]

    recorded = state.get("recentExits") or []
    exits = recorded[-EXITS_SHOWN:]
    more_exits = f" (the last {EXITS_SHOWN} of {len(recorded)})" if len(recorded) > EXITS_SHOWN else ""
    lines += ["", _section("Recent exits") + more_exits]
    for record in exits:
        code = f"signal {record['signal']}" if record.get("signal") else f"code {record.get('exitCode')}"
        when = local_time(str(record.get("time", "")))
        lines.append(f"  {when}  {code}  after {record.get('uptime')}  {_value(record.get('reason', ''))}")
    if not exits:
        lines.append("  none")

    lines += ["", _section(f"Last {LAST_LINES} lines")]
    lines += [f"  {format_line(line)}" for line in last_lines] or ["  none"]
    return lines


def _describe_one(connection: Connection, state: dict[str, Any]) -> None:
    path = process_path(str(state["id"]), "logs")
    last = connection.request("GET", path, params={"lines": LAST_LINES})
    for line in describe_lines(state, last):
        click.echo(line)


@click.command("describe")
@click.argument("process_id", metavar="ID|group:NAME")
@connection_options
def describe_command(process_id: str, url: str | None, token: str | None, data_dir: Path | None) -> None:
    """Everything about one process (or each of a group's): state, config, environment, resources,
    recent exits and last lines."""
    connection = connect(url, token, data_dir)
    states = connection.request("GET", "/api/pm/list")
    wanted = members(connection, process_id) if process_id.startswith(GROUP_PREFIX) else [process_id]
    found = [state for state in states if state.get("id") in wanted]
    if not found:
        raise unknown_id(process_id)
    try:
        for index, state in enumerate(found):
            if index:
                click.echo("")
            _describe_one(connection, state)
    except ClientError as exc:
        raise (unknown_id(process_id) if exc.status == 404 else exc) from None
