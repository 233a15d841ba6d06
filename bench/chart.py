"""Draw the headline chart: one small horizontal bar panel per headline figure, median bars with min-max
whiskers, processman's bars in a colour of their own.

Runs in the peers' venv, where matplotlib is installed (it is not a dependency of processman):
    bench/.peers/venv/bin/python bench/chart.py PANELS.json OUT.png [bars|curves]
PANELS.json is written by bench/report.py: for bars, [{"title", "unit", "bars": [{"label", "median",
"low", "high", "subject"}]}]; for curves (the cost curve), [{"title", "unit", "log", "lines": [{"label",
"subject", "points": [[N, median], ...]}]}].
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from typing import Any

SUBJECT_COLOUR = "#d9480f"
PEER_COLOUR = "#868e96"
REFERENCE_COLOUR = "#ced4da"


COLUMNS = 3


def _grid(count: int, row_height: float) -> tuple[Any, list[Any]]:
    """A figure of ``count`` panels three to a row (matplotlib without a display), and their axes in
    order."""
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot: Any = importlib.import_module("matplotlib.pyplot")
    rows = math.ceil(count / COLUMNS)
    figure, axes = pyplot.subplots(rows, COLUMNS, figsize=(15, row_height * rows), squeeze=False)
    return figure, [axes[index // COLUMNS][index % COLUMNS] for index in range(rows * COLUMNS)]


def draw(panels: list[dict[str, Any]], target: str) -> None:
    figure, axes = _grid(len(panels), 3.1)
    for panel, axis in zip(panels, axes, strict=False):
        bars = panel["bars"]
        labels = [bar["label"] for bar in bars]
        medians = [bar["median"] for bar in bars]
        below = [bar["median"] - bar["low"] for bar in bars]
        above = [bar["high"] - bar["median"] for bar in bars]
        colours = [
            SUBJECT_COLOUR if bar["subject"] else REFERENCE_COLOUR if bar["reference"] else PEER_COLOUR
            for bar in bars
        ]
        positions = list(range(len(bars)))
        axis.barh(positions, medians, xerr=[below, above], color=colours, capsize=2, error_kw={"lw": 0.8})
        axis.set_yticks(positions, labels, fontsize=8)
        axis.invert_yaxis()
        axis.set_title(panel["title"], fontsize=9, loc="left")
        axis.set_xlabel(panel["unit"] + ("  (log scale)" if panel.get("log") else ""), fontsize=8)
        axis.tick_params(axis="x", labelsize=8)
        if panel.get("log"):
            axis.set_xscale("log")
        top = max([bar["high"] for bar in bars] + [1e-9])
        for position, bar in zip(positions, bars, strict=True):
            axis.text(
                max(bar["high"], 1e-9),  # past the whisker, so the number stays readable
                position,
                " " + bar["text"],
                va="center",
                fontsize=7,
            )
        if not panel.get("log"):
            axis.set_xlim(0, top * 1.3)
        axis.spines[["top", "right"]].set_visible(False)
    for axis in axes[len(panels) :]:
        axis.axis("off")
    figure.suptitle(
        "processman and its peers: medians of one run on one machine; lower is better", fontsize=11
    )
    figure.tight_layout()
    figure.savefig(target, dpi=110)


def draw_curves(panels: list[dict[str, Any]], target: str) -> None:
    figure, axes = _grid(len(panels), 3.8)
    for panel, axis in zip(panels, axes, strict=False):
        for line in panel["lines"]:
            sizes = [point[0] for point in line["points"]]
            values = [max(point[1], 1e-6) for point in line["points"]]
            subject = line["subject"]
            axis.plot(
                sizes,
                values,
                marker="o",
                markersize=3,
                linewidth=2.2 if subject else 1.0,
                label=line["label"],
                zorder=3 if subject else 2,
            )
        axis.set_xscale("log")
        if panel.get("log"):
            axis.set_yscale("log")
        axis.set_title(panel["title"], fontsize=9, loc="left")
        axis.set_xlabel("children (N)", fontsize=8)
        axis.set_ylabel(panel["unit"], fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(True, which="major", linewidth=0.3)
        axis.spines[["top", "right"]].set_visible(False)
        axis.legend(fontsize=6, loc="best")
    for axis in axes[len(panels) :]:
        axis.axis("off")
    figure.suptitle("Cost curve: medians against the number of children; lower is better", fontsize=11)
    figure.tight_layout()
    figure.savefig(target, dpi=110)


if __name__ == "__main__":
    with open(sys.argv[1]) as file:
        data = json.load(file)
    mode = sys.argv[3] if len(sys.argv) > 3 else "bars"
    (draw_curves if mode == "curves" else draw)(data, sys.argv[2])
