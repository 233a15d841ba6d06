"""``processman pocketbase ...``: install the hooks into a PocketBase app."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add the pocketbase commands to ``group``."""
