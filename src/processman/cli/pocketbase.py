"""``processman pocketbase ...``: install the hooks into a PocketBase app, remove them, and the hidden
``supervise`` command the hooks start."""

from __future__ import annotations

import sys
from pathlib import Path

import click

EXAMPLE = '[{"id": "agent", "script": "agent.py", "cwd": "../agents"}]'


@click.group()
def pocketbase() -> None:
    """Run the sidecars with `pocketbase serve` (PocketBase >= 0.23, JavaScript hooks)."""


dir_option = click.option(
    "--dir",
    "data_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("pb_data"),
    show_default=True,
    help="PocketBase's data folder (its --dir): holds pb_processes.json.",
)
hooks_option = click.option(
    "--hooks-dir",
    "hooks_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="PocketBase's hooks folder (its --hooksDir). Default: pb_hooks beside the data folder.",
)


@pocketbase.command()
@dir_option
@hooks_option
def install(data_dir: Path, hooks_dir: Path | None) -> None:
    """Write the hook files (again, to upgrade them) and a starter pb_processes.json."""
    from processman.pocketbase.install import install as install_hooks

    try:
        report = install_hooks(data_dir, hooks_dir)
    except OSError as exc:
        raise click.ClickException(f"cannot write the hook files: {exc}") from exc
    if not report.written:
        click.echo(f"hooks in {report.hooks_dir} are up to date")
    for path in report.written:
        click.echo(f"{'upgraded' if path in report.upgraded else 'wrote'} {path}")
    click.echo(f"the hooks start processman with {report.python}")
    if report.config_created:
        click.echo(f"wrote {report.config_path} (no processes yet); add your sidecars, for example:")
        click.echo(f"  {EXAMPLE}")
    else:
        click.echo(f"processes are read from {report.config_path}")
    click.echo(f"check it with: processman check --dir {data_dir}")
    click.echo("then run `pocketbase serve` as usual (with --dir/--hooksDir if you gave them here)")


@pocketbase.command()
@dir_option
@hooks_option
def uninstall(data_dir: Path, hooks_dir: Path | None) -> None:
    """Remove the hook files. pb_processes.json and the logs stay."""
    from processman.pocketbase.install import default_hooks_dir
    from processman.pocketbase.install import uninstall as uninstall_hooks

    report = uninstall_hooks(hooks_dir or default_hooks_dir(data_dir))
    for path in report.removed:
        click.echo(f"removed {path}")
    for path in report.kept:
        click.echo(f"kept {path}: processman did not write it", err=True)
    if not report.removed and not report.kept:
        click.echo(f"no processman hooks in {report.hooks_dir}")


@pocketbase.command(hidden=True)
def supervise() -> None:
    """Run the processes for the PocketBase that started this command (from its hook)."""
    from processman.pocketbase.supervisor import SupervisorSetupError
    from processman.pocketbase.supervisor import supervise as run

    try:
        code = run()
    except SupervisorSetupError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)
