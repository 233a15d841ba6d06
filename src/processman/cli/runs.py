"""``processman run ID`` (one run now of a job or one-shot task) and ``processman runs ID`` (its run
history), against ``processman serve`` or PocketBase, as the other client commands."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from processman.cli.client import (
    ACTION_TIMEOUT,
    GROUP_PREFIX,
    ClientError,
    connect,
    connection_options,
    process_path,
    unknown_id,
)
from processman.cli.console import terminal_safe

# How each outcome is shown; a run still in progress has none.
_OUTCOME_STYLE: dict[str, dict[str, Any]] = {
    "succeeded": {"fg": "green"},
    "failed": {"fg": "red", "bold": True},
    "timed out": {"fg": "red"},
    "skipped": {"dim": True},
    "stopped": {"fg": "yellow"},
    "running": {"fg": "cyan"},
}


def describe_run(answer: dict[str, Any]) -> tuple[str, bool]:
    """What ``run`` prints for one answer of ``POST /run``, and whether it is a failure."""
    process_id = terminal_safe(str(answer.get("id", "?")))
    if answer.get("queued"):
        after = "after the run in progress, or once its dependencies are met"
        return f"queued: a run of {process_id} begins {after}", False
    number, outcome = answer.get("number", "?"), answer.get("outcome")
    reason = " ".join(terminal_safe(str(answer.get("reason") or "")).split())
    if outcome == "skipped":
        reason = reason if reason.startswith("skipped") else f"skipped: {reason}"
        return f"{reason} (run {number} of {process_id} recorded as skipped)", False
    if outcome in ("failed", "timed out"):
        return f"run {number} of {process_id} {outcome}: {reason}", True
    return f"run {number} of {process_id} started ({answer.get('trigger', '?')})", False


@click.command("run")
@click.argument("process_id", metavar="ID|group:NAME")
@connection_options
def run_command(process_id: str, url: str | None, token: str | None, data_dir: Path | None) -> None:
    """Run a job or one-shot task once now (trigger manual), following its overlap policy: a run due
    while one still runs is skipped (or queued, with overlap "queue"). Also starts a task with
    autostart false. A service kept alive has no single run: use start or restart."""
    connection = connect(url, token, data_dir)
    try:
        answer = connection.request("POST", process_path(process_id, "run"), timeout=ACTION_TIMEOUT)
    except ClientError as exc:
        raise (unknown_id(process_id) if exc.status == 404 else exc) from None
    failures = 0
    for service in answer.get("passedOver") or ():
        click.echo(f"{terminal_safe(str(service))}: a service kept alive has no single run; passed over")
    for one in answer["runs"] if isinstance(answer.get("runs"), list) else [answer]:
        text, failed = describe_run(one)
        failures += failed
        click.echo(text, err=failed)
    if failures:
        raise ClientError(f"{failures} run(s) could not be started")


def _when(timestamp: Any) -> str:
    """Local date and time of an API timestamp."""
    try:
        return datetime.fromisoformat(str(timestamp)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return "-"


def _exit(run: dict[str, Any]) -> str:
    if run.get("signal"):
        return str(run["signal"])
    return "-" if run.get("exitCode") is None else str(run["exitCode"])


def format_runs(runs: list[dict[str, Any]], width: int, *, with_id: bool = False) -> list[str]:
    """The rows of ``processman runs``: number, trigger, start, duration, outcome, exit, and why it
    ended, cut to fit."""
    headers: tuple[str, ...] = ("RUN", "TRIGGER", "STARTED", "DURATION", "OUTCOME", "EXIT", "REASON")
    rows: list[tuple[str, ...]] = [
        (
            str(run.get("number", "?")),
            terminal_safe(str(run.get("trigger", "?"))),
            _when(run.get("started")),
            str(run.get("duration") or "-"),
            str(run.get("outcome") or "running"),
            _exit(run),
            " ".join(terminal_safe(str(run.get("reason") or "")).split()),
        )
        for run in runs
    ]
    if with_id:
        headers = ("ID", *headers)
        rows = [(terminal_safe(str(run.get("id", "?"))), *row) for run, row in zip(runs, rows, strict=True)]
    columns = len(headers) - 1
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(columns)]
    room = max(width - sum(widths) - 2 * columns, 20)
    outcome_column = headers.index("OUTCOME")
    lines = []
    for index, row in enumerate([headers, *rows]):
        cells = [row[i].ljust(widths[i]) for i in range(columns)]
        reason = row[-1] if len(row[-1]) <= room else row[-1][: room - 3] + "..."
        if index == 0:
            cells = [click.style(cell, bold=True) for cell in cells]
            reason = click.style(reason, bold=True)
        else:
            style = _OUTCOME_STYLE.get(row[outcome_column], {})
            cells[outcome_column] = click.style(cells[outcome_column], **style)
        lines.append("  ".join([*cells, reason]).rstrip())
    return lines


@click.command("runs")
@click.argument("process_id", metavar="ID|group:NAME")
@click.option(
    "-n", "--limit", type=click.IntRange(1, 100_000), default=None, help="How many runs [default: 20]."
)
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON as is.")
@connection_options
def runs_command(
    process_id: str,
    limit: int | None,
    as_json: bool,
    url: str | None,
    token: str | None,
    data_dir: Path | None,
) -> None:
    """A process's runs, newest first: every start to its exit (services too), with what triggered it
    and how it ended. Kept across restarts, keepRuns per process."""
    connection = connect(url, token, data_dir)
    params: dict[str, str | int] | None = {"limit": limit} if limit is not None else None
    try:
        runs = connection.request("GET", process_path(process_id, "runs"), params=params)
    except ClientError as exc:
        raise (unknown_id(process_id) if exc.status == 404 else exc) from None
    if as_json:
        click.echo(json.dumps(runs, indent=2))
        return
    if not runs:
        click.echo(f"no runs of {terminal_safe(process_id)} yet")
        return
    width = shutil.get_terminal_size((120, 24)).columns
    for line in format_runs(runs, width, with_id=process_id.startswith(GROUP_PREFIX)):
        click.echo(line)
