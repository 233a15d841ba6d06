"""The managers under test: processman and its peers, each behind the same small interface."""

from __future__ import annotations

from bench.managers.base import Manager, Program
from bench.managers.circus import Circus
from bench.managers.honcho import Honcho
from bench.managers.pm2 import Pm2
from bench.managers.processman import Processman, ProcessmanPortable
from bench.managers.supervisord import Supervisord

ALL: tuple[type[Manager], ...] = (Processman, Supervisord, Circus, Pm2, Honcho)
# Run only when named with --managers: variants of processman itself.
EXTRA: tuple[type[Manager], ...] = (ProcessmanPortable,)


def by_name(name: str) -> type[Manager]:
    for kind in ALL + EXTRA:
        if kind.name == name:
            return kind
    names = ", ".join(k.name for k in ALL + EXTRA)
    raise ValueError(f"unknown manager {name!r}; expected one of {names}")


__all__ = [
    "ALL",
    "EXTRA",
    "Circus",
    "Honcho",
    "Manager",
    "Pm2",
    "Processman",
    "ProcessmanPortable",
    "Program",
    "Supervisord",
    "by_name",
]
