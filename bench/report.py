"""Turn results into text: a console table, docs/benchmarks.md, and the data of its chart.

The document is generated; the analysis that needs a person (why processman falls short where it does,
the profiles, the peers' defects found on the way) lives in bench/findings.md and is included as is.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.peers import BENCH_DIR, Peers
from bench.results import SUBJECT, Results, Series, best_peer, by_metric, ratio

FINDINGS = BENCH_DIR / "findings.md"
SCHEDULE = BENCH_DIR / "results" / "schedule.json"
RUNSTORE = BENCH_DIR / "results" / "runstore.json"
CHART_SCRIPT = BENCH_DIR / "chart.py"

TITLES = {
    "W1": "W1 fleet start and stop",
    "W2": "W2 idle cost",
    "W3": "W3 restart latency",
    "W4": "W4 log throughput",
    "W5": "W5 tree cleanup",
    "W6": "W6 control latency",
    "W7": "W7 reload latency",
}

SETTINGS = [
    (
        "processman",
        "`serve --http 127.0.0.1:PORT`, one entry per child with `command`/`args` (`devMode: true` for W7)",
        '`serve --no-echo` (the log files are the record); `minUptime: "1s"`, `backoff: "100ms"`, '
        '`stopTimeout: "5s"`; `watchDebounce: "50ms"` for W7. *tags* (W1 and W5): the defaults with '
        "`PROCESSMAN_CONTAINMENT=tags`, the fallback to the cgroup containment the defaults get as root",
    ),
    (
        "supervisord",
        "`-n`, `[inet_http_server]` on loopback, `numprocs`, everything else default",
        "`stopasgroup=true`, `killasgroup=true`, `stopwaitsecs=5`",
    ),
    (
        "circus",
        "`numprocesses`, stdout/stderr `FileStream` (without a stream circus discards output)",
        "`check_delay = 0.1`, `stop_children = true`, `graceful_timeout = 5`",
    ),
    (
        "pm2",
        "ecosystem file, one app per child, `interpreter: none`; `watch: true` for W7",
        "(defaults are its advice)",
    ),
    ("honcho", "Procfile with `-c name=N`", "(no settings apply)"),
]

HEADLINES = [
    ("W1", "start, N=100", False),
    ("W1", "stop until the manager has exited, N=100", True),
    ("W2", "memory (PSS)", False),
    ("W2", "CPU over", False),
    ("W3", "restart after SIGKILL", True),
    ("W4", "child slowdown", False),
    ("W4", "lines lost", False),
    ("W5", "survivors after a normal stop", False),
    ("W5", "survivors after SIGKILL", False),
    ("W6", "status via CLI", False),
    ("W6", "status via API", True),
    ("W7", "reload after a save", False),
]


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if value == float("inf"):
        return "inf"
    if unit in ("lines", "processes"):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value else "0"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == float("inf"):
        return "inf"
    return f"{value:.2f}"


def table_text(results: Results) -> str:
    rows = []
    for (workload, metric), items in by_metric(results.series).items():
        best = best_peer(items)
        rows.append(f"{workload} {metric} [{items[0].unit}]")
        for item in items:
            r = ratio(item.median, best.median if best else None)
            rows.append(
                f"    {item.label:26} median {fmt(item.median, item.unit):>9}  "
                f"min {fmt(item.low, item.unit):>9}  max {fmt(item.high, item.unit):>9}  "
                f"x best peer {fmt_ratio(r):>6}  {item.note[:70]}"
            )
    return "\n".join(rows)


@dataclass
class Verdict:
    target: str
    met: bool
    detail: str


def _subject_best(items: list[Series]) -> Series | None:
    # The tags variant measures what containment costs; the targets are about defaults and tuned.
    ours = [s for s in items if s.manager == SUBJECT and s.variant != "tags" and s.median is not None]
    if not ours:
        return None
    if ours[0].better == "lower":
        return min(ours, key=lambda s: s.median or 0.0)
    return max(ours, key=lambda s: s.median or 0.0)


def verdicts(results: Results) -> list[Verdict]:
    """The issue's targets, checked against the medians."""
    found = []
    for (workload, metric), items in by_metric(results.series).items():
        best, ours = best_peer(items), _subject_best(items)
        if ours is None or best is None or ours.median is None or best.median is None:
            continue
        met = ours.median <= best.median if ours.better == "lower" else ours.median >= best.median
        detail = (
            f"{ours.label} {fmt(ours.median, ours.unit)} {ours.unit} against {best.label} "
            f"{fmt(best.median, best.unit)} {best.unit} (x{fmt_ratio(ratio(ours.median, best.median))})"
        )
        found.append(Verdict(f"{workload} {metric}: at least matches the best peer", met, detail))
    for item in results.series:
        if item.manager != SUBJECT or item.median is None:
            continue
        if item.workload == "W4" and item.unit == "x":
            met = (item.high or 0) <= 1.2
            found.append(Verdict(f"W4 {item.label}: child slowdown at most 1.2x", met, _spread(item)))
        if item.workload == "W4" and item.unit == "lines":
            met = (item.high or 0) == 0
            found.append(Verdict(f"W4 {item.label}: zero lines lost", met, _spread(item)))
        if item.workload == "W5" and item.variant != "tags":
            met = (item.high or 0) == 0
            found.append(Verdict(f"W5 {item.label}: zero survivors ({item.metric})", met, _spread(item)))
    return found + scale_verdicts(results) + containment_verdicts(results)


# The cost curve's targets for processman (defaults) at N=1000: (workload, metric, bound, unit).
SCALE_TARGETS = [
    ("W1", "start, N=1000", 2.0, "s"),
    ("W1", "stop, N=1000", 1.0, "s"),
    ("W1", "stop until the manager has exited, N=1000", 1.0, "s"),
    ("W2", "memory (PSS), N=1000", 40.0, "MB"),
]


def _find(results: Results, workload: str, metric: str, variant: str = "defaults") -> Series | None:
    for item in results.series:
        if (item.workload, item.metric, item.manager, item.variant) == (workload, metric, SUBJECT, variant):
            return item if item.median is not None else None
    return None


def scale_verdicts(results: Results) -> list[Verdict]:
    """processman (defaults) with 1000 children: start, stop and memory under fixed bounds, idle CPU at
    most twice its figure with 100."""
    found = []
    for workload, metric, bound, unit in SCALE_TARGETS:
        item = _find(results, workload, metric)
        if item is not None and item.median is not None:
            found.append(
                Verdict(
                    f"{workload} {metric}, processman (defaults): under {fmt(bound, unit)} {unit}",
                    item.median < bound,
                    _spread(item),
                )
            )
    idle = [s for s in results.series if s.workload == "W2" and s.metric.startswith("CPU over")]
    big = next((s for s in idle if s.metric.endswith("N=1000")), None)
    hundred = next((s for s in idle if s.metric.endswith("N=100")), None)
    if big is not None and hundred is not None:
        mine = _find(results, "W2", big.metric)
        base = _find(results, "W2", hundred.metric)
        if mine is not None and base is not None and mine.median is not None and base.median is not None:
            found.append(
                Verdict(
                    f"W2 {big.metric}, processman (defaults): at most twice its figure at N=100",
                    mine.median <= 2 * base.median,
                    f"{fmt(mine.median, 's')} s against {fmt(base.median, 's')} s at N=100 "
                    f"(x{fmt_ratio(ratio(mine.median, base.median))})",
                )
            )
    return found


def containment_verdicts(results: Results) -> list[Verdict]:
    """The cgroup containment (processman defaults, as root) against the tag fallback (the tags
    variant) on W1: at most 10 % slower."""
    found = []
    for item in results.series:
        if item.workload != "W1" or item.manager != SUBJECT or item.variant != "tags":
            continue
        cgroup = _find(results, "W1", item.metric)
        if cgroup is None or cgroup.median is None or item.median is None:
            continue
        found.append(
            Verdict(
                f"W1 {item.metric}: cgroups at most 10 % slower than tags",
                cgroup.median <= 1.10 * item.median,
                f"cgroup {fmt(cgroup.median, 's')} s against tags {fmt(item.median, 's')} s "
                f"(x{fmt_ratio(ratio(cgroup.median, item.median))})",
            )
        )
    return found


def _spread(item: Series) -> str:
    return f"median {fmt(item.median, item.unit)}, max {fmt(item.high, item.unit)} {item.unit}"


def markdown(results: Results, chart_name: str) -> str:
    meta = results.meta
    machine = meta.get("machine", {})
    lines = [
        "# Benchmarks: processman against PM2, supervisord, Circus and honcho",
        "",
        "Every manager runs the same workloads on the same machine in one run of `bench/run.py`; each "
        "figure is the median of its repetitions, with min and max, and its ratio to the best peer "
        "(*x best peer*: below 1 is better than every peer, for figures where lower is better). "
        "This file is generated by `bench/run.py` (the findings come from `bench/findings.md`).",
        "",
        "## Reproduce",
        "",
        "```sh",
        "python bench/run.py               # full run: rewrites this file, benchmarks.png and -curve.png",
        "python bench/run.py --quick       # smoke run (~3 min): bench/results/latest-quick.json only",
        "python bench/run.py --only W3,W4  # some workloads, merged into bench/results/latest.json",
        "python bench/profile.py logs      # py-spy profile of serve in W4 (or: stop, list, idle, memory)",
        "python bench/serve_cpu.py idle    # serve's own CPU per thread (schedstat), idle or on a burst",
        "python bench/schedule_precision.py  # 100 jobs due at the same second (bench/results/schedule.json)",
        "python bench/runstore_storm.py      # the run history under a restart storm (runstore.json)",
        "```",
        "",
        "The first run installs the peers into `bench/.peers/` (a venv from PyPI and "
        "`npm install --prefix`); nothing is added to processman's dependencies. Every manager and "
        "child is killed after each run.",
        "",
        "## Machine and versions",
        "",
        f"Measured {meta.get('date', '?')}{' (quick mode)' if meta.get('quick') else ''}, "
        f"run took {meta.get('duration_s', '?')} s"
        + (
            f"; processman's checkout was at {meta['commit_at_end']} at the end (the table: at the start)."
            if meta.get("commit_at_end")
            and meta["commit_at_end"] not in str(meta.get("versions", {}).get("processman"))
            else "."
        ),
        "",
        _load_line(meta.get("load", {}), machine.get("cores", "?")),
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores |",
        f"| memory | {machine.get('memory_gib', '?')} GiB |",
        f"| kernel | {machine.get('system', '?')} {machine.get('kernel', '?')} |",
    ]
    for name, version in meta.get("versions", {}).items():
        lines.append(f"| {name} | {version} |")
    lines += [
        "",
        "## How each manager runs",
        "",
        "*defaults* sets only what the job needs; *tuned* adds what the manager's documentation recommends "
        "for the job. A normal stop is SIGTERM to the manager (what systemd or `docker stop` sends).",
        "",
        "| manager | defaults | tuned |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {defaults} | {tuned} |" for name, defaults, tuned in SETTINGS]
    lines += ["", "## Headline figures", "", f"![headline figures]({chart_name})", ""]
    lines += [
        "## Cost curve",
        "",
        "How start time, stop time, memory, idle CPU and API latency grow with the number of children "
        "(W1, W2 and W6 at N = 10, 100 and 1000; both axes logarithmic). PM2 and honcho run up to 100: PM2 "
        "stops its apps one after another (500 took a minute, the harness's limit), and honcho runs one "
        "Python process per child.",
        "",
        f"![cost curve]({curve_name(chart_name)})",
        "",
        "## Targets",
        "",
    ]
    lines += ["| target | met | measured |", "|---|---|---|"]
    for verdict in verdicts(results):
        lines.append(f"| {verdict.target} | {'yes' if verdict.met else '**no**'} | {verdict.detail} |")
    lines += ["", "## Results", ""]
    grouped = by_metric(results.series)
    for workload in TITLES:
        metrics = [(metric, items) for (w, metric), items in grouped.items() if w == workload]
        if not metrics:
            continue
        lines += [f"### {TITLES[workload]}", ""]
        for metric, items in metrics:
            best = best_peer(items)
            unit = items[0].unit
            lines += [
                f"**{metric}** ({unit}, {'lower' if items[0].better == 'lower' else 'higher'} is better)",
                "",
            ]
            lines += [
                "| manager | median | min | max | x best peer | runs | note |",
                "|---|---:|---:|---:|---:|---:|---|",
            ]
            for item in items:
                name = f"**{item.label}**" if item.manager == SUBJECT else item.label
                r = ratio(item.median, best.median if best else None)
                lines.append(
                    f"| {name} | {fmt(item.median, unit)} | {fmt(item.low, unit)} | {fmt(item.high, unit)} "
                    f"| {fmt_ratio(r)} | {len(item.values)} | {item.note.replace('|', '/')} |"
                )
            lines.append("")
    lines += schedule_section()
    lines += runstore_section()
    if FINDINGS.exists():
        lines += [FINDINGS.read_text().rstrip(), ""]
    return "\n".join(lines)


def schedule_section() -> list[str]:
    """Schedule precision, from bench/schedule_precision.py's last result (processman only: of the
    peers, only PM2's cron_restart runs anything at a time, and it restarts an app rather than run a
    job)."""
    if not SCHEDULE.exists():
        return []
    result = json.loads(SCHEDULE.read_text())
    return [
        "### Schedule precision",
        "",
        f'{result["jobs"]} jobs with `"schedule": "* * * * *"` (running `true`) due at the same second, '
        f"for {result['minutes']} minutes ({result['runs']} runs, containment {result['containment']}, "
        f"measured {result['date']}; `python bench/schedule_precision.py`). Lateness is when a run's child "
        "was spawned minus the minute it was due at: the timer's wake-up, the owner's turn on the event "
        "loop and the spawn, for every job of the minute in turn.",
        "",
        "| first | median | p95 | worst |",
        "|---:|---:|---:|---:|",
        "| "
        + " | ".join(f"{result[key]} ms" for key in ("first_ms", "median_ms", "p95_ms", "worst_ms"))
        + " |",
        "",
    ]


def runstore_section() -> list[str]:
    """The run history under a restart storm, from bench/runstore_storm.py's last result."""
    if not RUNSTORE.exists():
        return []
    result = json.loads(RUNSTORE.read_text())
    rows = []
    for key, name in (("with_store", "with the run history database"), ("without_store", "without it")):
        item = result[key]
        rows.append(
            f"| {name} | {item['restarts_per_s']} | {item['median_ms']} ms | {item['p95_ms']} ms "
            f"| {item['database_bytes']:,} | {item['most_rows_per_process']} |"
        )
    return [
        "### Run history under a restart storm",
        "",
        f"{result['processes']} processes running `true` with `minUptime: 0` (each exit is restarted at "
        f"once) and `keepRuns: {result['keep_runs']}`, {result['seconds']:g} s with the database and "
        f"{result['seconds']:g} s without it, alternately, {result['repeats']} times (medians; measured "
        f"{result['date']}; `python bench/runstore_storm.py`). Restart latency is when a run's child was "
        "spawned minus when the run before it ended.",
        "",
        "| | restarts per second | restart latency, median | p95 | database bytes | most rows per process |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def _load_line(load: dict[str, list[float]], cores: object) -> str:
    if not load:
        return ""
    shown = ", ".join(f"{name} {start:.1f} to {end:.1f}" for name, (start, end) in load.items())
    return (
        f"Load average (1 min) at the start and end of each workload: {shown}. The machine has "
        f"{cores} cores; a load well above that means other work ran beside the benchmark and the timings of "
        "that workload are less exact (counts and memory are not affected)."
    )


def panels(results: Results) -> list[dict[str, Any]]:
    grouped = by_metric(results.series)
    found = []
    for workload, prefix, log in HEADLINES:
        matches = [
            (metric, items)
            for (w, metric), items in grouped.items()
            if w == workload and metric.startswith(prefix)
        ]
        # "start, N=100" names one metric, not "start, N=1000" as well.
        matches.sort(key=lambda match: match[0] != prefix and not match[0].startswith(prefix + " "))
        if not matches:
            continue
        metric, items = matches[0]
        bars = [
            {
                "label": item.label,
                "median": item.median,
                "low": item.low,
                "high": item.high,
                "subject": item.manager == SUBJECT,
                "reference": item.manager.startswith("reference"),
                "text": fmt(item.median, item.unit),
            }
            for item in items
            if item.median is not None
        ]
        if bars:
            found.append({"title": f"{workload} {metric}", "unit": items[0].unit, "log": log, "bars": bars})
    return found


# The cost curve's panels: (workload, metric before ", N=", title, log scale).
CURVES = [
    ("W1", "start", "W1 start", True),
    ("W1", "stop until the manager has exited", "W1 stop until the manager has exited", True),
    ("W2", "memory (PSS)", "W2 memory (PSS)", True),
    ("W2", "CPU over 30s idle", "W2 CPU over 30 s idle", True),
    ("W6", "status via API", "W6 status via API", True),
]


def curve_name(chart_name: str) -> str:
    return chart_name.replace(".png", "-curve.png")


def curves(results: Results) -> list[dict[str, Any]]:
    """One panel per figure of the cost curve: a line per manager, median against N."""
    found = []
    for workload, stem, title, log in CURVES:
        lines: dict[str, dict[str, Any]] = {}
        unit = ""
        for item in results.series:
            if item.workload != workload or item.median is None or not item.metric.startswith(stem + ", N="):
                continue
            size = int(item.metric.rsplit("N=", 1)[1])
            line = lines.setdefault(
                item.label, {"label": item.label, "subject": item.manager == SUBJECT, "points": []}
            )
            line["points"].append([size, item.median])
            unit = item.unit
        for line in lines.values():
            line["points"].sort()
        if lines:
            found.append({"title": title, "unit": unit, "log": log, "lines": list(lines.values())})
    return found


def write(results: Results, doc: Path, chart: Path, peers: Peers) -> None:
    for data, target, mode in ((panels(results), chart, "bars"), (curves(results), None, "curves")):
        out = target or chart.with_name(curve_name(chart.name))
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
            json.dump(data, file)
        subprocess.run([str(peers.python), str(CHART_SCRIPT), file.name, str(out), mode], check=True)
        Path(file.name).unlink()
    doc.write_text(markdown(results, chart.name))
