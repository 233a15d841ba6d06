"""Turn results into text: a console table now, docs/benchmarks.md and its chart later."""

from __future__ import annotations

from pathlib import Path

from bench.peers import Peers
from bench.results import Results, Series, best_peer, by_metric, ratio


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit in ("lines", "processes"):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value else "0"


def table_text(results: Results) -> str:
    rows = []
    for (workload, metric), items in by_metric(results.series).items():
        best = best_peer(items)
        rows.append(f"{workload} {metric} [{items[0].unit}]")
        for item in items:
            r = ratio(item.median, best.median if best else None)
            rows.append(
                f"    {item.label:32} median {fmt(item.median, item.unit):>10}  "
                f"min {fmt(item.low, item.unit):>10}  max {fmt(item.high, item.unit):>10}  "
                f"x best peer {'n/a' if r is None else f'{r:.2f}':>6}  {item.note[:80]}"
            )
    return "\n".join(rows)


def write(results: Results, doc: Path, chart: Path, peers: Peers) -> None:
    raise NotImplementedError


__all__ = ["Series", "table_text", "write"]
