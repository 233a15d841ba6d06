"""Client commands (list, start, stop, restart, logs) that talk to a running server over HTTP."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add the client commands to ``group``."""
