"""W4 log throughput: a child writes 500,000 lines of 100 bytes as fast as it can. How much slower does
it run under the manager than when writing to /dev/null, and how many lines did the manager keep?

The burst is measured twice: from the child's first instant, while the manager is still starting (its
start-up work and the burst share the CPUs), and 2 s after the manager started it (log throughput
alone).

Lines kept are counted in the manager's own record of the output: its log files, rotated ones included
(honcho has none: its stdout is its record). processman by default also prints every line to its
stdout, which goes to /dev/null here, so only its files count; tuned, it runs with ``--no-echo``. Two
references frame the numbers: the child writing into a pipe that ``cat`` copies to a file (the floor
for any manager that reads a pipe), and writing straight to a file."""

from __future__ import annotations

import functools
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import procs
from bench.managers.base import Manager, Program
from bench.results import Series
from bench.workloads.context import Context, Subject

WRITER = Path(__file__).resolve().parent.parent / "children" / "writer.py"


def run(ctx: Context, *, lines: int | None = None) -> list[Series]:
    count = lines if lines is not None else (100_000 if ctx.quick else 500_000)
    repeats = ctx.repeats(5)
    baseline = statistics.median(_direct(ctx, count, "/dev/null") for _ in range(max(3, repeats)))
    ctx.log(f"  W4 baseline: {count} lines to /dev/null in {baseline:.3f}s")
    metric = f"child slowdown, {count:,} lines"
    out = _references(ctx, count, baseline, metric, repeats)
    for subject in ctx.subjects("W4"):
        slowdown = ctx.series("W4", metric, "x", subject)
        lost = ctx.series("W4", f"lines lost of {count:,}", "lines", subject)
        later = ctx.series("W4", f"{metric}, {AFTER:g} s after start", "x", subject)
        out += [slowdown, lost, later]
        for rep in range(repeats):
            once = functools.partial(measure, ctx, subject, count, baseline, slowdown, lost)
            ctx.guarded(f"W4 {slowdown.label} #{rep + 1}", [slowdown, lost], once)
        for rep in range(repeats):
            once = functools.partial(measure, ctx, subject, count, baseline, later, None, after=AFTER)
            ctx.guarded(f"W4 {later.label}, {AFTER:g} s after start #{rep + 1}", [later], once)
    return out


# The second burst starts this long after the manager started the writer.
AFTER = 2.0


def _writer_argv(count: int, report: Path, token: str, *extra: str) -> tuple[str, ...]:
    return (sys.executable, str(WRITER), str(count), str(report), token, *extra)


def _direct(ctx: Context, count: int, target: str) -> float:
    report = ctx.scratch / f"direct-{ctx.token()}.time"
    with open(target, "wb") as sink:
        subprocess.run(_writer_argv(count, report, "000000000", "--exit"), stdout=sink, check=True)
    return float(report.read_text())


def _through_cat(ctx: Context, count: int) -> float:
    report = ctx.scratch / f"cat-{ctx.token()}.time"
    target = ctx.scratch / "cat.out"
    with open(target, "wb") as sink:
        cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=sink)
        subprocess.run(_writer_argv(count, report, "000000000", "--exit"), stdout=cat.stdin, check=True)
        assert cat.stdin is not None
        cat.stdin.close()
        cat.wait()
    target.unlink()
    return float(report.read_text())


def _references(ctx: Context, count: int, baseline: float, metric: str, repeats: int) -> list[Series]:
    pipe = Series("W4", metric, "x", "reference: pipe to cat", "defaults", label="reference: pipe to cat")
    pipe.values = [_through_cat(ctx, count) / baseline for _ in range(max(3, repeats))]
    to_file = Series("W4", metric, "x", "reference: to a file", "defaults", label="reference: to a file")
    target = str(ctx.scratch / "direct.out")
    to_file.values = [_direct(ctx, count, target) / baseline for _ in range(max(3, repeats))]
    Path(target).unlink()
    return [pipe, to_file]


def measure(
    ctx: Context,
    subject: Subject,
    count: int,
    baseline: float,
    slowdown: Series,
    lost: Series | None,
    *,
    after: float = 0.0,
) -> None:
    with ctx.manager(*subject) as manager:
        report = manager.workdir / "writer.time"
        extra = ("--after", str(after)) if after else ()
        program = Program("w4", _writer_argv(count, report, manager.token, *extra))
        # processman echoes every line on its stdout (not tuned: --no-echo): that goes to /dev/null,
        # its files are the record.
        manager.launch([program], stdout_to_null=manager.name.startswith("processman"))
        procs.wait_for(report.exists, 600, "the writer to finish", 0.05)
        slowdown.values.append(float(report.read_text()) / baseline)
        if lost is not None:  # the lines kept are counted once the manager has written them all
            _wait_until_still(manager, program)
        manager.stop()
        manager.wait_exit(60)
        if lost is None:
            return
        kept = count_lines(manager.log_files(program), manager.token)
        lost.values.append(count - kept)
        if kept < count:
            files = ", ".join(
                f"{path.name} {path.stat().st_size / 1e6:.1f}MB" for path in manager.log_files(program)
            )
            lost.note = f"files: {files}"


def _wait_until_still(manager: Manager, program: Program, quiet: float = 1.0, timeout: float = 300) -> None:
    """Wait until the log files stop growing: the manager has written what it is going to write."""
    deadline = time.monotonic() + timeout
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = sum(path.stat().st_size for path in manager.log_files(program) if path.exists())
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)


def count_lines(files: list[Path], token: str) -> int:
    """Distinct line numbers of the writer found in ``files`` (a line written twice counts once)."""
    pattern = re.compile(re.escape(token.encode()) + rb" (\d{9}) x")
    seen: set[bytes] = set()
    for path in files:
        try:
            seen.update(pattern.findall(path.read_bytes()))
        except OSError:
            continue
    return len(seen)
