"""``processman serve``, ``check`` and ``schema``: the commands that run or read a config locally."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from processman.config import CONFIG_FILENAME, json_schema, load_config
from processman.errors import AlreadyRunningElsewhere

if TYPE_CHECKING:  # ``processman --help`` imports this module: the engine only comes with ``serve``
    from processman.runner import Service

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=f"Config file. Default: DATA_DIR/{CONFIG_FILENAME}.",
)
dir_option = click.option(
    "--dir",
    "data_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("pb_data"),
    show_default=True,
    help="Data folder: holds the config by default, and processman's logs and state under processman/.",
)


def resolve_config_path(config_path: Path | None, data_dir: Path) -> Path:
    return config_path if config_path is not None else data_dir / CONFIG_FILENAME


def build_services(
    http: str,
    data_dir: Path,
    pocketbase_url: str | None = None,
    token: str | None = None,
    allowed_hosts: tuple[str, ...] = (),
) -> list[Service]:
    """The services that run beside the manager for ``serve --http``: the HTTP API, bound now so that a
    busy port fails before any process starts. Its credential is ``token`` (``PROCESSMAN_TOKEN``; read
    from the environment when not given), or a token kept in DATA_DIR/processman/token (written when
    missing), plus PocketBase superusers with ``--pocketbase-url``."""
    if http.strip().lower() == "off":
        return []
    from processman.api import (
        AdminToken,
        AnyOf,
        ApiService,
        Authenticator,
        PocketBaseSuperuser,
        parse_address,
    )
    from processman.api.token import TOKEN_ENV, ensure_token, token_path

    try:
        address = parse_address(http)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--http") from None
    token = (token if token is not None else os.environ.get(TOKEN_ENV, "")).strip()
    if token:
        hint = f"${TOKEN_ENV}"
    else:
        path = token_path(data_dir)
        try:
            token = ensure_token(path)
        except OSError as exc:
            raise click.ClickException(f"cannot write the API token file {path}: {exc.strerror}") from exc
        hint = str(path)
    authenticator: Authenticator = AdminToken(token)
    if pocketbase_url:
        authenticator = AnyOf(authenticator, PocketBaseSuperuser(pocketbase_url))
    service = ApiService(address, authenticator, token_hint=hint, allowed_hosts=allowed_hosts)
    try:
        service.bind()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    from processman.serverfile import Announced, local_url

    return [Announced(service, data_dir, lambda: local_url(address.host, service.port))]


@click.command()
@config_option
@dir_option
@click.option(
    "--http", default="127.0.0.1:8091", show_default=True, help="Address of the HTTP API; 'off' for none."
)
@click.option(
    "--pocketbase-url",
    default=None,
    metavar="URL",
    help="Also accept superuser tokens of this PocketBase (verified with it), e.g. http://127.0.0.1:8090.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests for this host name (the API refuses other names: DNS rebinding). Repeatable.",
)
@click.option(
    "--watch-config/--no-watch-config",
    default=True,
    show_default=True,
    help="Apply changes to the config file while running (a broken file changes nothing).",
)
@click.option(
    "--echo/--no-echo",
    default=True,
    show_default=True,
    help="Print every process's output here; with --no-echo it goes to its log files only.",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def serve(
    config_path: Path | None,
    data_dir: Path,
    http: str,
    pocketbase_url: str | None,
    allowed_hosts: tuple[str, ...],
    watch_config: bool,
    echo: bool,
    verbose: bool,
) -> None:
    """Run every configured process in the foreground until Ctrl+C or SIGTERM."""
    import asyncio

    if os.getpid() == 1:
        # A container's init: the kernel drops a signal whose handler is the default, so the stop signals
        # are held pending (blocked, even across the handover's re-exec) until the runner handles them.
        signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))

    from processman.handover import HandoverError, take_secrets
    from processman.tokenfile import TOKEN_ENV

    # First of all: a token in the environment is moved out of it (this may re-execute serve), so that
    # no process started later can read it in /proc/<serve's pid>/environ.
    try:
        token = take_secrets([TOKEN_ENV]).get(TOKEN_ENV)
    except HandoverError as exc:
        raise click.ClickException(str(exc)) from exc

    from processman.cli.console import configure_logging
    from processman.engine.backend import BackendError
    from processman.engine.containment import ContainmentError
    from processman.runner import Runner, ServeSettings

    console = configure_logging(verbose)
    data_dir = data_dir.absolute()
    settings = ServeSettings(
        resolve_config_path(config_path, data_dir).absolute(),
        data_dir,
        watch_config=watch_config,
        output_echo=console.echo if echo else None,
        log_drops=lambda: {"console": console.dropped},
    )
    try:
        settings.services.extend(build_services(http, data_dir, pocketbase_url, token, allowed_hosts))
        runner = Runner(settings)
        try:
            code = asyncio.run(runner.run())
        except (AlreadyRunningElsewhere, BackendError, ContainmentError) as exc:
            raise click.ClickException(str(exc)) from exc
    finally:
        console.close()
    sys.exit(code)


@click.command()
@config_option
@dir_option
def check(config_path: Path | None, data_dir: Path) -> None:
    """Validate the config: list every problem and exit 1, or say how many processes are OK."""
    path = resolve_config_path(config_path, data_dir)
    loaded = load_config(path)
    if not loaded.exists:
        click.echo(f"{path}: file not found", err=True)
        sys.exit(1)
    from processman.preflight import check_environment, env_file_warnings, venv_notes

    for problem in loaded.problems:
        label = click.style(problem.severity, fg="red" if problem.severity == "error" else "yellow")
        click.echo(f"{label}: {problem}", err=True)
    # What the config names must exist too: a script, a command, a folder, an envFile.
    missing = check_environment(loaded, os.environ)
    for found in missing:
        click.echo(f"{click.style('error', fg='red')}: {loaded.path}: {found}", err=True)
    skipped = env_file_warnings(loaded)
    for warning in skipped:
        click.echo(f"{click.style('warning', fg='yellow')}: {loaded.path}: {warning}", err=True)
    for note in venv_notes(loaded):
        click.echo(f"{click.style('note', fg='cyan')}: {note}", err=True)
    errors = len(loaded.errors) + len(missing)
    if errors:
        warnings = len(loaded.warnings) + len(skipped)
        click.echo(f"{errors} error(s), {warnings} warning(s) in {path}", err=True)
        sys.exit(1)
    click.echo(f"{len(loaded.processes)} processes OK")


@click.command()
def schema() -> None:
    """Print the JSON Schema of the config file (for editors)."""
    click.echo(json.dumps(json_schema(), indent=2))
