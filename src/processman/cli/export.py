"""``processman export``: write the config for systemd, Docker Compose or Kubernetes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click

from processman.cli.serve import config_option, dir_option, resolve_config_path
from processman.config import load_config

_VERSION = re.compile(r"systemd (\d+)")


def detect_systemd_version() -> int | None:
    """The version of this machine's systemd (``systemctl --version``), or None."""
    for program in ("systemctl", "systemd-analyze"):
        try:
            result = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        match = _VERSION.match(result.stdout)
        if match:
            return int(match.group(1))
    return None


@click.command("export")
@click.argument("target", type=click.Choice(["systemd", "compose", "kubernetes"]))
@config_option
@dir_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder to write to. Default: ./deploy/TARGET.",
)
@click.option(
    "--name", default=None, help="Prefix of units and workloads. Default: the config's folder name."
)
@click.option(
    "--with-pocketbase", is_flag=True, help="Also run PocketBase (a unit, a service, a StatefulSet)."
)
@click.option(
    "--image", default=None, help="The sidecars' image (compose, kubernetes). Default: a Dockerfile."
)
@click.option(
    "--include-secrets",
    is_flag=True,
    help="Fill secrets.env with the secrets' values from this environment (else names only).",
)
@click.option(
    "--systemd-version",
    type=click.IntRange(200, None),
    default=None,
    help="The target's systemd (RestartSteps= needs 254). Default: this machine's.",
)
def export_command(
    target: str,
    config_path: Path | None,
    data_dir: Path,
    out: Path | None,
    name: str | None,
    with_pocketbase: bool,
    image: str | None,
    include_secrets: bool,
    systemd_version: int | None,
) -> None:
    """Write the config's processes for TARGET: systemd, compose or kubernetes.

    What the target keeps differently or lacks is printed as a warning; secrets go to secrets.env."""
    from processman.export import ExportOptions, export_config
    from processman.export.common import dns_name

    path = resolve_config_path(config_path, data_dir)
    loaded = load_config(path)
    if not loaded.exists:
        raise click.ClickException(f"{path}: file not found")
    if loaded.errors:
        for problem in loaded.errors:
            click.echo(f"{click.style('error', fg='red')}: {problem}", err=True)
        raise click.ClickException(f"{path} has errors: fix them first (processman check)")
    folder = loaded.path.parent
    default_name = folder.parent.name if folder.name == "pb_data" else folder.name
    if target == "systemd" and systemd_version is None:
        systemd_version = detect_systemd_version()
        if systemd_version is None:
            click.echo("note: no systemd here to ask its version: pass --systemd-version", err=True)
    options = ExportOptions(
        name=dns_name(name or default_name),
        with_pocketbase=with_pocketbase,
        image=image,
        include_secrets=include_secrets,
        systemd_version=systemd_version,
        environ=dict(os.environ),
    )
    out = out if out is not None else Path("deploy") / target
    export = export_config(target, loaded, options, out)
    written = export.write(out)
    for warning in export.warnings:
        click.echo(f"{click.style('warning', fg='yellow')}: {warning}", err=True)
    click.echo(f"{len(written)} files written to {out}:")
    for file in written:
        click.echo(f"  {file.name}")
    click.echo("Next:")
    for step in export.steps:
        click.echo(f"  {step}")
    sys.exit(0)
