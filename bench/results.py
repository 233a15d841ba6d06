"""Measurements and their summary: a series of values per (workload, metric, manager, variant), its
median, min and max, and its ratio to the best peer."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Better = Literal["lower", "higher"]
SUBJECT = "processman"


@dataclass
class Series:
    workload: str  # "W1"
    metric: str  # "start, N=100"
    unit: str  # "s", "ms", "MB", "x", "lines", "processes"
    manager: str
    variant: str
    values: list[float] = field(default_factory=list)
    better: Better = "lower"
    note: str = ""  # what went wrong, or what the number means for this manager
    label: str = ""  # as shown in tables: "supervisord (tuned)", or "pm2" for a one-variant manager

    def __post_init__(self) -> None:
        if not self.label:
            self.label = f"{self.manager} ({self.variant})"

    @property
    def is_peer(self) -> bool:
        # processman-portable is processman too (another backend), never a peer to compare with.
        return not self.manager.startswith(SUBJECT) and not self.manager.startswith("reference")

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def low(self) -> float | None:
        return min(self.values) if self.values else None

    @property
    def high(self) -> float | None:
        return max(self.values) if self.values else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Series:
        return cls(**data)


ORDER = ("reference", SUBJECT, "supervisord", "circus", "pm2", "honcho")


def _rank(manager: str) -> int:
    for index, prefix in enumerate(ORDER):
        if manager.startswith(prefix):
            return index
    return len(ORDER)


def best_peer(series: list[Series]) -> Series | None:
    """The peer series with the best median among those of one metric."""
    peers = [s for s in series if s.is_peer and s.median is not None]
    if not peers:
        return None
    if peers[0].better == "lower":
        return min(peers, key=lambda s: s.median or 0.0)
    return max(peers, key=lambda s: s.median or 0.0)


def ratio(value: float | None, best: float | None) -> float | None:
    """value / best; None when either is missing. Zero against zero is parity (1.0)."""
    if value is None or best is None:
        return None
    if best == 0:
        return 1.0 if value == 0 else float("inf")
    return value / best


def by_metric(series: list[Series]) -> dict[tuple[str, str], list[Series]]:
    grouped: dict[tuple[str, str], list[Series]] = {}
    for item in series:
        grouped.setdefault((item.workload, item.metric), []).append(item)
    return grouped


@dataclass
class Results:
    meta: dict[str, Any] = field(default_factory=dict)
    series: list[Series] = field(default_factory=list)

    def add(self, items: list[Series]) -> None:
        self.series.extend(items)

    def replace_workloads(self, other: Results) -> None:
        """Take ``other``'s series for the workloads and managers it ran; keep ours for the rest."""
        ran = {(s.workload, s.manager) for s in other.series}
        merged = [s for s in self.series if (s.workload, s.manager) not in ran] + other.series
        self.series = sorted(merged, key=lambda s: (s.workload, _rank(s.manager)))
        self.meta.update(other.meta)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"meta": self.meta, "series": [s.to_json() for s in self.series]}
        path.write_text(json.dumps(payload, indent=1))

    @classmethod
    def load(cls, path: Path) -> Results:
        data = json.loads(path.read_text())
        return cls(dict(data["meta"]), [Series.from_json(item) for item in data["series"]])
