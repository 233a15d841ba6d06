"""The ``processman`` command. Commands live in their own modules; this one only assembles them.

A command's module is imported when that command runs (or when help lists it): ``processman list``
imports neither the engine, the API server nor the PocketBase support, and starts fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from processman.handover import hand_over_early

# Before anything else is imported: a command that moves a secret out of its environment re-executes
# itself, and what is imported before that is imported twice.
hand_over_early(sys.argv)

import click  # noqa: E402

from processman import __version__  # noqa: E402

# command name -> (module, attribute) of its click command
COMMANDS = {
    "check": ("processman.cli.serve", "check"),
    "describe": ("processman.cli.describe", "describe_command"),
    "export": ("processman.cli.export", "export_command"),
    "list": ("processman.cli.client", "list_command"),
    "logs": ("processman.cli.client", "logs_command"),
    "pocketbase": ("processman.cli.pocketbase", "pocketbase"),
    "reload": ("processman.cli.client", "reload_command"),
    "restart": ("processman.cli.client", "restart_command"),
    "run": ("processman.cli.runs", "run_command"),
    "runs": ("processman.cli.runs", "runs_command"),
    "schema": ("processman.cli.serve", "schema"),
    "serve": ("processman.cli.serve", "serve"),
    "signal": ("processman.cli.client", "signal_command"),
    "start": ("processman.cli.client", "start_command"),
    "startup": ("processman.cli.startup", "startup"),
    "stop": ("processman.cli.client", "stop_command"),
}


UNSUPPORTED = "processman runs on Linux, macOS and other POSIX systems; Windows is not supported (yet)."


class LazyGroup(click.Group):
    """A group whose commands are imported from ``COMMANDS`` when first asked for."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # Before any command imports the POSIX-only modules (resource, fcntl): one sentence, no traceback.
        if os.name == "nt" or sys.platform == "win32":
            raise SystemExit(UNSUPPORTED)
        return super().main(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module}.{attribute} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="processman")
def main() -> None:
    """Supervise sidecar processes: keep them alive, capture their output, control them over HTTP."""
