"""Keeps the benchmark harness from rotting: its modules import, and one real measurement (W3, restart
after SIGKILL, processman only) runs end to end and leaves no process behind. No timing is asserted."""

from __future__ import annotations

from pathlib import Path

from bench.managers import ALL, Processman
from bench.peers import NODE_DIR, VENV_DIR, Peers
from bench.results import Results, Series
from bench.workloads import w3_restart
from bench.workloads.context import Context

from bench import procs, report, run


def test_every_workload_is_registered() -> None:
    assert list(run.WORKLOADS) == ["W1", "W2", "W3", "W4", "W5", "W6", "W7"]
    assert {kind.name for kind in ALL} == {"processman", "supervisord", "circus", "pm2", "honcho"}


def test_w3_restart_for_processman_runs_and_cleans_up(tmp_path: Path) -> None:
    # Peers are not needed (nor installed) for processman itself.
    ctx = Context(Peers(VENV_DIR, NODE_DIR), tmp_path, managers=(Processman,))
    latency = ctx.series("W3", "restart after SIGKILL", "ms", (Processman, "tuned"))
    try:
        w3_restart.measure(ctx, (Processman, "tuned"), 1, latency)
    finally:
        ctx.release_all()
    assert len(latency.values) == 1
    assert latency.values[0] > 0
    assert ctx.sweep() == 0, "the run left processes behind"
    assert all(not procs.with_token(token) for token in ctx.tokens)

    results = Results(series=[latency])
    text = report.markdown(results, "chart.png")
    assert "processman (tuned)" in text
    assert "restart after SIGKILL" in report.table_text(results)


def test_count_lines_counts_each_line_number_once(tmp_path: Path) -> None:
    from bench.workloads.w4_logs import count_lines

    log = tmp_path / "out.log"
    rotated = tmp_path / "out.log.1"
    log.write_bytes(b"123 000000001 xx\n123 000000002 xx\nnoise\n")
    rotated.write_bytes(b"123 000000000 xx\n123 000000001 xx\n999 000000005 xx\n")
    assert count_lines([rotated, log, tmp_path / "missing.log"], "123") == 3


def test_ratios_are_against_the_best_peer() -> None:
    series = [
        Series("W3", "m", "ms", "processman", "defaults", [10.0, 12.0, 11.0]),
        Series("W3", "m", "ms", "pm2", "defaults", [20.0]),
        Series("W3", "m", "ms", "circus", "tuned", [40.0, 50.0]),
    ]
    verdicts = report.verdicts(Results(series=series))
    assert len(verdicts) == 1
    assert verdicts[0].met
    assert "x0.55" in verdicts[0].detail


def test_a_partial_run_replaces_only_what_it_measured() -> None:
    saved = Results(
        series=[
            Series("W7", "m", "ms", "pm2", "defaults", [1.0]),
            Series("W7", "m", "ms", "processman", "defaults", [9.0]),
            Series("W3", "m", "ms", "processman", "defaults", [5.0]),
        ]
    )
    saved.replace_workloads(Results(series=[Series("W7", "m", "ms", "processman", "defaults", [2.0])]))
    assert [(s.workload, s.manager, s.values) for s in saved.series] == [
        ("W3", "processman", [5.0]),
        ("W7", "processman", [2.0]),
        ("W7", "pm2", [1.0]),
    ]


def test_w5_hidden_descendants_for_processman_are_counted_and_cleaned_up(tmp_path: Path) -> None:
    # The escape case end to end for processman alone: 40 hidden processes per variant, and none left.
    from bench.workloads import w5_tree

    ctx = Context(Peers(VENV_DIR, NODE_DIR), tmp_path, managers=(Processman,))
    table = {}
    for subject in ctx.subjects("W5"):
        item = ctx.series("W5", "hidden survivors after a normal stop", "processes", subject)
        table[item.label] = item
    try:
        w5_tree.measure(ctx, "escape-stop", 1.0, table)
    finally:
        ctx.release_all()
    # The tag fallback cannot find a descendant that left its session and lost its environment.
    assert {label: item.values for label, item in table.items()} == {
        "processman (defaults)": [0],
        "processman (tuned)": [0],
        "processman (tags)": [40],
    }
    assert ctx.sweep() == 0, "the run left processes behind"
