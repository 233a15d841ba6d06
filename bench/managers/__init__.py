"""The managers under test: processman and its peers, each behind the same small interface."""

from __future__ import annotations

from bench.managers.base import Manager, Program
from bench.managers.circus import Circus
from bench.managers.honcho import Honcho
from bench.managers.pm2 import Pm2
from bench.managers.processman import Processman
from bench.managers.supervisord import Supervisord

ALL: tuple[type[Manager], ...] = (Processman, Supervisord, Circus, Pm2, Honcho)


def by_name(name: str) -> type[Manager]:
    for kind in ALL:
        if kind.name == name:
            return kind
    raise ValueError(f"unknown manager {name!r}; expected one of {', '.join(k.name for k in ALL)}")


__all__ = ["ALL", "Circus", "Honcho", "Manager", "Pm2", "Processman", "Program", "Supervisord", "by_name"]
