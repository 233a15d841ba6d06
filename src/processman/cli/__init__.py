"""The ``processman`` command. Commands live in their own modules; this one only assembles them."""

from __future__ import annotations

import click

from processman import __version__
from processman.cli import client, pocketbase, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="processman")
def main() -> None:
    """Supervise sidecar processes: keep them alive, capture their output, control them over HTTP."""


serve.register(main)
client.register(main)
pocketbase.register(main)
