"""Children that misbehave: restart storms, deaf and forking trees, daemons, closed pipes, floods,
huge lines, binary garbage, and children gone before their first line is read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from click.testing import CliRunner

from processman import ProcessAlreadyRunning, ProcessManager, Status
from processman.api.wire import line_to_json
from processman.cli import main
from processman.engine.events import LogLines, ProcessExited
from processman.logs import MAX_LINE, SPLIT_MARKER
from tests.conftest import alive, config, tagged_processes, wait_for_path, wait_gone, wait_until
from tests.hardening.conftest import TOKEN, Record, Scale, Serve, child, wait_for

Factory = Callable[..., ProcessManager]
SLEEPER = "import time\nwhile True: time.sleep(1)"


# ---- restart storm ---------------------------------------------------------------------------------


def test_restart_storm_backoff_holds_and_the_manager_stays_flat(
    serve_factory: Callable[..., Serve], scale: Scale, figures: Record
) -> None:
    """Children that exit at once, for a long time. ``storm*`` run under minUptime 0 (every run counts as
    healthy, so each restart is immediate: the tightest loop a config can ask for); ``crasher`` has the
    default minUptime, so its backoff must grow 1 ms, 2 ms, 4 ms ... whatever the storm does around it.
    The manager's memory after 100 restarts is compared with its memory at the end (thousands, or
    10,000 with --soak), and its CPU cost per restart early with late."""
    duration = scale.pick(20.0, 180.0)
    min_restarts = scale.pick(0, 10_000)
    storm = [{"id": f"storm{i}", "command": "true", "backoff": "1ms", "minUptime": "0s"} for i in range(4)]
    processes = [
        *storm,
        {"id": "crasher", "command": "false", "backoff": "1ms"},
        {"id": "steady", "command": "sleep", "args": ["3600"]},
    ]
    serve = serve_factory(processes)
    steady_pid = serve.states()["steady"]["pid"]
    samples: list[tuple[float, int, float, int, int]] = []  # time, restarts, cpu, rss, fds
    at_100: int | None = None
    started = time.monotonic()
    with serve.client() as client:
        while True:
            elapsed = time.monotonic() - started
            response = client.get("/api/pm/list")
            assert response.status_code == 200, "the API stopped answering during the storm"
            states = {state["id"]: state for state in response.json()}
            restarts = sum(states[p["id"]]["restartCount"] for p in storm)
            usage = serve.usage()
            samples.append((elapsed, restarts, usage.cpu, usage.rss, usage.fds))
            if at_100 is None and restarts >= 100:
                at_100 = usage.rss
            if elapsed >= duration and restarts >= min_restarts:
                break
            time.sleep(0.5)
    crasher = states["crasher"]
    assert states["steady"]["pid"] == steady_pid and states["steady"]["status"] == "running"
    assert at_100 is not None, "the storm never reached 100 restarts"

    # Backoff holds: n failures need 1 ms * (2^n - 1) in total, capped at 30 s a wait.
    elapsed = samples[-1][0]
    ceiling = math.log2(elapsed / 0.001 + 1) + 2
    assert crasher["restartCount"] <= ceiling, crasher
    assert crasher["restartCount"] >= min(10, ceiling - 4), crasher

    # Flat: memory at the end against after 100 restarts; CPU per restart late against early.
    total = samples[-1][1]
    final_rss = samples[-1][3]
    assert final_rss <= at_100 * 1.2, f"RSS grew from {at_100} to {final_rss} over {total} restarts"
    third = len(samples) // 3
    early, late = samples[third], samples[-1]
    first_cost = (early[2] - samples[0][2]) / max(early[1] - samples[0][1], 1)
    late_cost = (late[2] - early[2]) / max(late[1] - early[1], 1)
    assert late_cost <= first_cost * 3, (first_cost, late_cost)  # 3: other load on the machine
    assert samples[-1][4] <= samples[third][4] + 10, "file descriptors leak"
    rate = total / elapsed
    figures("restart storm: duration", f"{elapsed:.0f} s, 4 children in minUptime-0 loops + 1 crasher")
    figures("restart storm: restarts", f"{total} ({rate:.0f}/s)")
    figures(
        "restart storm: manager RSS after 100 restarts -> end",
        f"{at_100 / 2**20:.1f} MB -> {final_rss / 2**20:.1f} MB ({final_rss / at_100 - 1:+.1%})",
    )
    figures(
        "restart storm: manager CPU per restart, early -> late",
        f"{first_cost * 1000:.2f} ms -> {late_cost * 1000:.2f} ms",
    )
    figures("restart storm: crasher restarts (backoff 1ms)", f"{crasher['restartCount']} in {elapsed:.0f} s")


# ---- trees -----------------------------------------------------------------------------------------


async def test_a_tree_deaf_to_sigterm_is_killed_after_stop_timeout(
    manager_factory: Factory, figures: Record
) -> None:
    code = """
    import os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for _ in range(3):
        if os.fork() == 0:
            time.sleep(3600)
            os._exit(0)
    print("deaf", flush=True)
    time.sleep(3600)
    """
    manager = manager_factory(config("deaf", code, stop_timeout=0.3))
    await manager.start()
    await wait_until(manager, lambda: any(x.content == "deaf" for x in manager.logs("deaf")), what="ready")
    tree = tagged_processes(f"{manager.run_id}:deaf")
    assert len(tree) == 4
    began = time.monotonic()
    await manager.stop_process("deaf")
    took = time.monotonic() - began
    assert took >= 0.3  # SIGTERM was given its grace
    assert await wait_gone(tree, timeout=0.5) == []
    assert manager.state("deaf").status is Status.STOPPED
    notes = [line.content for line in manager.logs("deaf") if "sending SIGKILL" in line.content]
    assert notes and "4 process(es) still running 300ms after SIGTERM" in notes[0]
    figures("SIGTERM-deaf tree of 4 (stopTimeout 300ms): stop took", f"{took * 1000:.0f} ms")


FORK_200 = """
import os, sys, time
first = not os.path.exists({marker!r})
open({marker!r}, "a").write("x")
for _ in range(200):
    if os.fork() == 0:
        time.sleep(3600)
        os._exit(0)
print("forked", flush=True)
if first:
    sys.exit(1)  # crash, leaving 200 grandchildren behind
time.sleep(3600)
"""


async def test_200_grandchildren_never_pile_up_and_all_go_on_stop(
    manager_factory: Factory, tmp_path: Path, figures: Record
) -> None:
    marker = tmp_path / "runs"
    manager = manager_factory(config("forker", FORK_200.format(marker=str(marker)), backoff=0.05))
    await manager.start()
    await wait_until(manager, lambda: marker.exists() and marker.read_text() == "xx", what="second run")
    await wait_until(
        manager, lambda: sum(x.content == "forked" for x in manager.logs("forker")) == 2, what="forked"
    )
    # The first run's 200 were removed before the second run started: 200 + the child, not 400.
    tree = tagged_processes(f"{manager.run_id}:forker")
    assert len(tree) == 201
    began = time.monotonic()
    await manager.stop_process("forker")
    took = time.monotonic() - began
    assert await wait_gone(tree, timeout=0.5) == []
    figures("201-process tree: stop took", f"{took * 1000:.0f} ms")


DAEMONISE = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open({out!r}, "a") as f:
            f.write(str(os.getpid()) + "\\n")
        time.sleep(3600)
    os._exit(0)
print("daemonised", flush=True)
"""


async def test_a_child_that_daemonises_and_exits_leaves_one_daemon_at_most(
    manager_factory: Factory, tmp_path: Path
) -> None:
    """A program that double-forks, calls setsid and exits (a daemon without a 'foreground' flag):
    every exit counts as a crash, and each daemon goes before the next run starts, so they never pile
    up; the subreaper reaps them, so no zombies pile up either."""
    out = tmp_path / "daemons"
    code = DAEMONISE.format(out=str(out))
    manager = manager_factory(config("daemon", code, backoff=0.01), adopt_orphans=True)
    await manager.start()
    most = 0

    def count_tree() -> bool:
        nonlocal most
        most = max(most, len(tagged_processes(f"{manager.run_id}:daemon")))
        return manager.state("daemon").restart_count >= 5

    await wait_until(manager, count_tree, what="5 restarts")
    # The child, its half-way fork and one daemon at most: never the daemons of earlier runs.
    assert most <= 3, most
    await wait_until(manager, lambda: out.exists() and len(out.read_text().split()) >= 5, what="daemons")
    await manager.stop_process("daemon")
    daemons = [int(pid) for pid in out.read_text().split()]
    assert len(set(daemons)) == len(daemons) >= 5
    assert await wait_gone(daemons, timeout=1.0) == []
    zombies = [p for p in psutil.Process().children() if p.status() == psutil.STATUS_ZOMBIE]
    assert zombies == []


async def test_a_child_that_closes_stdout_and_stderr_keeps_running(
    manager_factory: Factory, tmp_path: Path
) -> None:
    beat = tmp_path / "beat"
    code = f"""
    import os, time
    print("closing", flush=True)
    os.close(1)
    os.close(2)
    for i in range(3600):
        with open({str(beat)!r}, "w") as f:
            f.write(str(i))
        time.sleep(0.02)
    """
    manager = manager_factory(config("closer", code))
    await manager.start()
    pid = manager.state("closer").pid
    await wait_for_path(beat)
    # Well after both pipes reached end of file, the child still runs and is still reported running.
    await wait_until(manager, lambda: int(beat.read_text() or 0) >= 25, what="beats after closing")
    state = manager.state("closer")
    assert state.status is Status.RUNNING and state.pid == pid and state.restart_count == 0
    assert [x.content for x in manager.logs("closer")] == ["closing"]
    await manager.restart_process("closer")
    await wait_until(
        manager, lambda: [x.content for x in manager.logs("closer")].count("closing") == 2, what="output"
    )
    assert not alive(pid)


# ---- output --------------------------------------------------------------------------------------

FLOOD = """
import sys, time
block = b"".join(b"%099d\\n" % i for i in range(10_000))  # 1,000,000 bytes, 10,000 lines
out = sys.stdout.buffer
began = time.monotonic()
for _ in range({megabytes}):
    out.write(block)
out.flush()
print(f"done in {{time.monotonic() - began:.3f}}s", flush=True)
time.sleep(3600)
"""


def test_a_flood_of_output_is_drained_counted_and_bounded(
    serve_factory: Callable[..., Serve], scale: Scale, figures: Record
) -> None:
    megabytes = scale.pick(200, 1000)
    # Small log files, so that even the default run rotates many times and the bound is exercised.
    entry = child("flood", FLOOD.format(megabytes=megabytes), logMaxSize="10MB", logBackups=3)
    serve = serve_factory([entry])
    before = serve.usage()
    peak = before.rss
    began = time.monotonic()
    with serve.client() as client:
        while True:
            peak = max(peak, serve.usage().rss)
            lines = client.get("/api/pm/flood/logs", params={"lines": 1}).json()
            if lines and lines[-1]["content"].startswith("done in"):
                break
            assert time.monotonic() - began < 600, "the flood never ended"
            time.sleep(0.1)
        # Every line was counted: the last line's sequence number is the number of lines written.
        with client.stream("GET", "/api/pm/flood/logs", params={"follow": 1, "lines": 1}) as stream:
            last_id = next(line for line in stream.iter_lines() if line.startswith("id: "))
    after = serve.usage()
    assert int(last_id.removeprefix("id: ")) == megabytes * 10_000 + 1
    child_took = float(lines[-1]["content"].split()[2].removesuffix("s"))
    assert peak <= before.rss * 1.5, f"RSS went from {before.rss} to {peak} during the flood"
    logs = serve.data_dir / "processman" / "logs"
    on_disk = sum(path.stat().st_size for path in logs.glob("flood.out.log*"))
    assert on_disk <= 4 * 10 * 1024 * 1024  # current file + 3 rotated, at most 10 MB each
    assert len(list(logs.glob("flood.out.log*"))) == 4
    assert (
        (logs / "flood.out.log")
        .read_bytes()
        .endswith(b"done in " + lines[-1]["content"][8:].encode() + b"\n")
    )
    # The console (a slow consumer) dropped most lines, and said how many: shown + told = written.
    assert serve.stop() == 143
    output = serve.output()
    shown = len(re.findall(r"^\d\d:\d\d:\d\d flood +\| ", output, re.M))
    told = [int(count) for count in re.findall(r"flood: (\d+) lines were not passed to the log", output)]
    assert shown + sum(told) == megabytes * 10_000 + 1, (shown, sum(told))
    assert len(told) <= child_took + 3, "the drop warning repeats more than once a second"
    figures(f"flood of {megabytes} MB (100-byte lines): throughput", f"{megabytes / child_took:.0f} MB/s")
    figures(
        f"flood of {megabytes} MB: manager RSS before -> peak",
        f"{before.rss_mb:.1f} MB -> {peak / 2**20:.1f} MB",
    )
    figures(
        f"flood of {megabytes} MB: manager CPU",
        f"{after.cpu - before.cpu:.1f} s ({(after.cpu - before.cpu) / megabytes * 1000:.1f} s per GB)",
    )
    figures(f"flood of {megabytes} MB: log files on disk", f"{on_disk / 2**20:.1f} MB (rotated, 3 kept)")
    figures(
        f"flood of {megabytes} MB: console output",
        f"{shown} lines shown, {sum(told)} dropped and counted in {len(told)} warnings",
    )


async def test_a_10_mb_line_is_split_with_markers_and_nothing_is_lost(manager_factory: Factory) -> None:
    # "€" is three bytes: 64 KiB pieces fall in the middle of characters unless the split respects them.
    code = """
    import sys
    sys.stdout.write("€" * 3_500_000 + "\\n")
    sys.stdout.write("after\\n")
    sys.stdout.flush()
    import time; time.sleep(3600)
    """
    manager = manager_factory(config("long", code))
    await manager.start()
    await wait_until(manager, lambda: any(x.content == "after" for x in manager.logs("long")), what="after")
    lines = [x.content for x in manager.logs("long", 1000)]
    assert lines[-1] == "after"
    pieces = lines[:-1]
    assert all(len(piece.encode()) <= MAX_LINE + len(SPLIT_MARKER) for piece in pieces)
    assert all(piece.endswith(SPLIT_MARKER) for piece in pieces[:-1])
    whole = "".join(piece.removesuffix(SPLIT_MARKER) for piece in pieces)
    assert "\ufffd" not in whole, "a split cut a character in two"
    assert whole == "€" * 3_500_000


async def test_invalid_utf8_and_escape_sequences_are_kept_as_text(manager_factory: Factory) -> None:
    code = r"""
    import sys
    out = sys.stdout.buffer
    out.write(b"bad \xff\xfe bytes \xc3\x28 end\n")
    out.write(b"\x1b[31mred\x1b[0m\n")
    out.write(b"\x1b]0;owned title\x07title\n")
    out.write(b"\x1b[2J\x1b[Hclear\n")
    out.write(b"nul\x00byte\n")
    out.write(b"progress 1\rprogress 2\r\n")
    out.write(b"\xe2\x82")  # half a character, then end of file
    out.flush()
    """
    manager = manager_factory(config("binary", code, backoff=10.0))
    with manager.subscribe(process_id="binary") as events:
        await manager.start()
        async with asyncio.timeout(10):
            async for event in events:
                if isinstance(event, ProcessExited):
                    break
    lines = [x.content for x in manager.logs("binary")]
    assert lines[:7] == [
        "bad \ufffd\ufffd bytes \ufffd( end",
        "\x1b[31mred\x1b[0m",
        "\x1b]0;owned title\x07title",
        "\x1b[2J\x1b[Hclear",
        "nul\x00byte",
        "progress 2",  # a carriage return redraws the line: its final state is kept (the file has both)
        "\ufffd",
    ]
    # JSON escapes every control character, so the API's answer is plain text.
    encoded = json.dumps([line_to_json(x) for x in manager.logs("binary")])
    assert "\x1b" not in encoded and "\x00" not in encoded


async def test_output_written_just_before_exit_is_captured_before_the_exit(
    manager_factory: Factory,
) -> None:
    """Each run writes more than a pipe holds (64 KiB) and exits at once; one leaves a grandchild that
    keeps the pipe open. Every line of a run is published before that run's exit."""
    code = """
    import os, subprocess, sys
    for i in range(3000):
        print(f"line {i:05d} " + "x" * 40)
    print("last", file=sys.stderr)
    if os.environ.get("PROCESSMAN_TAG"):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    """
    manager = manager_factory(config("quick", code, backoff=0.01, min_uptime=0))
    runs: list[list[str]] = [[]]
    with manager.subscribe(process_id="quick", maxsize=100_000) as events:
        await manager.start()
        async with asyncio.timeout(30):
            async for event in events:
                if isinstance(event, LogLines) and event.stream != "system":
                    runs[-1].extend(event.lines)
                elif isinstance(event, ProcessExited):
                    if len(runs) == 5:
                        break
                    runs.append([])
    await manager.stop_process("quick")
    for lines in runs:
        output = lines
        assert len(output) == 3001, len(output)
        assert output[0].startswith("line 00000") and "last" in output
    assert tagged_processes(f"{manager.run_id}:quick") == []


async def test_stop_and_restart_requests_in_a_storm_of_exits(manager_factory: Factory) -> None:
    """User operations racing the supervise loop: whatever the order, the final state is the asked one
    and exactly one child runs."""
    manager = manager_factory(config("racer", "pass", backoff=0.001, min_uptime=0))
    await manager.start()
    for round_ in range(30):
        operation = (manager.restart_process, manager.stop_process, manager.start_process)[round_ % 3]
        with contextlib.suppress(ProcessAlreadyRunning):  # start while running is refused
            await operation("racer")
    await manager.stop_process("racer")
    assert manager.state("racer").status is Status.STOPPED
    await manager.start_process("racer")
    await wait_until(manager, lambda: manager.state("racer").restart_count >= 40, what="restarts")
    assert len(tagged_processes(f"{manager.run_id}:racer")) <= 1


def test_escape_sequences_never_reach_a_terminal_raw(serve_factory: Callable[..., Serve]) -> None:
    """What ``serve`` prints and what ``processman logs`` prints: colours pass, anything else that could
    retitle, clear or repaint a terminal (or write its clipboard) is shown escaped."""
    code = r"""
    import sys, time
    out = sys.stdout.buffer
    out.write(b"\x1b[32mgreen\x1b[0m\n")
    out.write(b"\x1b]0;owned title\x07\x1b]52;c;cHduZWQ=\x07\x1b[2J\x1b[Hclear\n")
    out.write(b"hidden\r12:00:00 other      | forged line\n")
    out.flush()
    time.sleep(3600)
    """
    serve = serve_factory([child("painter", code)])
    wait_for(lambda: "forged line" in serve.output(), 10, "the output")
    runner = CliRunner()
    env = {"PROCESSMAN_URL": serve.url, "PROCESSMAN_TOKEN": TOKEN}
    logs = runner.invoke(main, ["logs", "painter"], env=env).output
    assert "painter    | \x1b[32mgreen\x1b[0m" in serve.output()
    assert "painter | green" in logs  # click drops colours when its output is not a terminal
    for shown in (serve.output(), logs):
        assert "\\x1b]0;owned title\\x07\\x1b]52;c;cHduZWQ=\\x07\\x1b[2J\\x1b[Hclear" in shown
        # A carriage return redraws the line: its final state is shown, after the real prefix.
        assert re.search(r"painter +\| 12:00:00 other +\| forged line", shown)
        assert "hidden" not in shown
        assert "\x07" not in shown and "\r" not in shown and "\x1b]" not in shown and "\x1b[2J" not in shown
    # The API and the log files keep the output exactly as written.
    with serve.client() as client:
        contents = [line["content"] for line in client.get("/api/pm/painter/logs").json()]
    assert contents[1] == "\x1b]0;owned title\x07\x1b]52;c;cHduZWQ=\x07\x1b[2J\x1b[Hclear"
