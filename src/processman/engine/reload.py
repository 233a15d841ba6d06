"""Applying a changed config: what to add, remove and restart, and what to leave alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from processman.config import ProcessConfig, shown_field

# Changing only the number of instances must not restart the instances that stay; where the config
# came from (its folder, None when built in code) is no change of the process; where a process's
# notifications go is no reason to restart it (the new targets apply at once).
_IGNORED = frozenset({"instances", "root", "notify"})


@dataclass(frozen=True)
class ReloadPlan:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)
    unchanged: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed, "
            f"{len(self.unchanged)} unchanged"
        )


def config_diff(old: ProcessConfig, new: ProcessConfig) -> dict[str, tuple[Any, Any]]:
    """The fields that differ, compared on their values and named and shown as the config file gives
    them (secrets masked)."""
    diff: dict[str, tuple[Any, Any]] = {}
    for attribute in dataclasses.fields(ProcessConfig):
        name = attribute.name
        if name in _IGNORED:
            continue
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            key, shown_before = shown_field(name, before)
            diff[key] = (shown_before, shown_field(name, after)[1])
    return diff


def plan_reload(current: Sequence[ProcessConfig], new: Sequence[ProcessConfig]) -> ReloadPlan:
    old_by_id = {config.id: config for config in current}
    new_ids = {config.id for config in new}
    added, unchanged = [], []
    changed: dict[str, dict[str, tuple[Any, Any]]] = {}
    for config in new:
        previous = old_by_id.get(config.id)
        if previous is None:
            added.append(config.id)
        elif diff := config_diff(previous, config):
            changed[config.id] = diff
        else:
            unchanged.append(config.id)
    removed = [config.id for config in current if config.id not in new_ids]
    return ReloadPlan(tuple(added), tuple(removed), changed, tuple(unchanged))
