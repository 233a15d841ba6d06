"""Progress bars: a line redrawn with carriage returns (tqdm, pip, curl) is shown live as it changes, at
a bounded rate, and ends as one clean line; the log files keep every byte as written."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from processman import ProcessManager
from processman.api import AdminToken
from processman.api.wire import lines_event_to_json
from processman.cli.client import FollowPrinter
from processman.cli.console import Console, ConsoleFormatter
from processman.engine.events import LogLines
from processman.logs import MAX_LINE, SPLIT_MARKER, LineSplitter
from processman.pocketbase.mirror import LogMirror
from tests.api.conftest import TOKEN, EventReader, serving
from tests.conftest import config, wait_for

Factory = Callable[..., ProcessManager]

TQDM_LOOP = """
import sys, time
from tqdm import tqdm
for _ in tqdm(range(150), mininterval=0, miniters=1, file=sys.stderr, ascii=True, desc="work"):
    time.sleep(0.01)
print("done", flush=True)
time.sleep(3600)
"""

# Redraws the line, then stays quiet: the latest state must still be shown.
STALLED = """
import sys, time
for step in range(1, 31):
    sys.stdout.write(f"\\rstep {step}/30")
    sys.stdout.flush()
time.sleep(3600)
"""


def test_a_redrawn_line_is_a_partial_state_then_one_clean_line() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"\r 10%|#") == []
    assert splitter.partial == " 10%|#"
    assert splitter.feed(b"   |\r 20%|##  |\r") == []
    assert splitter.partial == " 20%|##  |"
    assert splitter.feed(b" 30%|### |\nnext") == [" 30%|### |"]
    assert splitter.partial is None, "a plain unfinished line is not a redraw"
    assert splitter.feed(b"\n") == ["next"]


def test_windows_line_ends_are_not_redraws() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"one\r\ntwo\r") == ["one"]
    assert splitter.partial is None, "a \\r at the end of a chunk may be half of \\r\\n"
    assert splitter.feed(b"\nthree\r\n\r\n") == ["two", "three", ""]
    assert splitter.flush() == []


def test_a_long_redraw_never_piles_up_into_a_split_line() -> None:
    splitter = LineSplitter()
    lines: list[str] = []
    for step in range(5000):  # 5000 redraws of 60 bytes: far more than MAX_LINE without a newline
        lines += splitter.feed(f"\rprogress {step:05d} ".encode() + b"#" * 40)
    assert lines == []
    assert splitter.partial == "progress 04999 " + "#" * 40
    assert splitter.feed(b"\n") == ["progress 04999 " + "#" * 40]
    assert not any(SPLIT_MARKER in line for line in lines)
    # A single line longer than MAX_LINE is still split as before.
    assert splitter.feed(b"\r" + b"y" * (MAX_LINE + 5) + b"\n")[0].endswith(SPLIT_MARKER)


async def test_a_real_tqdm_loop_shows_live_and_ends_as_one_line(
    manager_factory: Factory, tmp_path: Path
) -> None:
    manager = manager_factory(config("bar", TQDM_LOOP), state_dir=tmp_path / "state")
    partials: list[LogLines] = []
    finals: list[LogLines] = []
    with manager.subscribe(maxsize=100_000, process_id="bar") as events:
        await manager.start()
        started = time.monotonic()
        async with asyncio.timeout(60):
            async for event in events:
                if isinstance(event, LogLines):
                    (partials if event.partial else finals).append(event)
                    if any("done" in line for e in finals for line in e.lines):
                        break
        elapsed = time.monotonic() - started
    stderr = [line for event in finals if event.stream == "stderr" for line in event.lines]
    assert len(stderr) == 1 and "100%" in stderr[0] and "150/150" in stderr[0], stderr
    assert partials, "nothing was shown while the bar moved"
    assert all(len(event.lines) == 1 and "\r" not in event.lines[0] for event in partials)
    assert any("work:" in event.lines[0] and "%" in event.lines[0] for event in partials)
    # Bounded: at most about five redraws a second, far fewer than the 150 the bar made.
    assert len(partials) <= elapsed * 5 + 2, (len(partials), elapsed)
    # The ring holds the final line only, and the log file every byte as written.
    assert [line.content for line in manager.logs("bar", 10) if line.stream == "stderr"] == stderr
    raw = (tmp_path / "state" / "logs" / "bar.err.log").read_bytes()
    assert raw.count(b"\r") >= 150 and b"150/150" in raw


async def test_a_stalled_redraw_still_shows_its_latest_state(manager_factory: Factory) -> None:
    manager = manager_factory(config("stall", STALLED))
    seen: list[str] = []
    with manager.subscribe(maxsize=100_000, process_id="stall") as events:
        await manager.start()
        async with asyncio.timeout(20):
            async for event in events:
                if isinstance(event, LogLines) and event.partial:
                    seen.append(event.lines[0])
                    if event.lines[0] == "step 30/30":
                        break
    assert seen[-1] == "step 30/30"
    assert not manager.logs("stall", 10), "an unfinished line is not a line of the log yet"


async def test_the_log_stream_sends_partial_events_beside_log_events(manager_factory: Factory) -> None:
    manager = manager_factory(config("stall", STALLED))
    await manager.start()
    async with (
        serving(manager, AdminToken(TOKEN)) as service,
        httpx.AsyncClient(base_url=service.url, headers={"Authorization": TOKEN}) as client,
        client.stream("GET", "/api/pm/stall/logs", params={"follow": "1"}) as response,
    ):
        reader = EventReader(response)
        event = await reader.until(lambda e: e.event == "partial" and "30/30" in e.data, timeout=20)
        line = json.loads(event.data)
        assert line["content"] == "step 30/30" and line["stream"] == "stdout" and line["partial"] is True
        assert event.id is None or event.id == "", "a partial line is not a resumable position"


def test_wire_marks_partial_lines() -> None:
    final = lines_event_to_json(LogLines("w", "stdout", 3, 0.0, ("a",)))
    partial = lines_event_to_json(LogLines("w", "stdout", 4, 0.0, ("b",), partial=True))
    assert "partial" not in final[0]
    assert partial[0]["partial"] is True and partial[0]["content"] == "b"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_console_redraws_a_partial_line_on_a_terminal_and_skips_it_elsewhere() -> None:
    formatter = ConsoleFormatter(colour=False)
    terminal = _Terminal()
    console = Console(terminal, formatter)
    console.echo(LogLines("w", "stderr", 1, 0.0, (" 10%|#",), partial=True))
    wait_for(lambda: "10%" in terminal.getvalue(), 10, "the bar drawn")
    console.echo(LogLines("w", "stderr", 1, 0.0, (" 20%|##",), partial=True))
    wait_for(lambda: "20%" in terminal.getvalue(), 10, "the bar redrawn")
    console.echo(LogLines("w", "stderr", 1, 0.0, ("100%|####",)))
    console.close()
    shown = terminal.getvalue()
    assert shown.count("\r\x1b[K") >= 2 and " 20%|##" in shown
    assert shown.endswith("w          ! 100%|####\n")
    assert shown.split("\r\x1b[K")[-1].count("\n") == 1, "the final line replaced the partial one"

    pipe = io.StringIO()
    console = Console(pipe, formatter)
    console.echo(LogLines("w", "stderr", 1, 0.0, (" 10%|#",), partial=True))
    console.echo(LogLines("w", "stderr", 1, 0.0, ("100%|####",)))
    console.close()
    assert pipe.getvalue().endswith("w          ! 100%|####\n") and "10%" not in pipe.getvalue()


def test_pocketbases_logs_get_final_lines_and_realtime_the_latest_partial() -> None:
    mirror = LogMirror()
    mirror.add_output(LogLines("w", "stderr", 1, 0.0, (" 10%",), partial=True))
    mirror.add_output(LogLines("w", "stderr", 1, 0.0, (" 20%",), partial=True))
    batch = mirror.take_batch()
    assert [(line["message"], line.get("partial")) for line in batch] == [(" 20%", True)]
    mirror.add_output(LogLines("w", "stderr", 1, 0.0, (" 30%",), partial=True))
    mirror.add_output(LogLines("w", "stderr", 1, 0.0, ("100%",)))
    batch = mirror.take_batch()
    assert [(line["message"], line.get("partial")) for line in batch] == [("100%", None)], (
        "a partial state older than the final line is not sent"
    )
    assert mirror.stats()["mirrored"] == 1


def test_logs_follow_redraws_on_a_terminal_and_prints_finished_lines_only_elsewhere(
    capsys: pytest.CaptureFixture[str],
) -> None:
    partial = {"timestamp": "2026-01-01T00:00:00.000Z", "processId": "w", "stream": "stderr"}
    show = FollowPrinter(terminal=True)
    show({**partial, "content": " 10%", "partial": True})
    show({**partial, "content": "100%"})
    out = capsys.readouterr().out
    assert out.count("\r\x1b[K") == 2 and out.endswith("w ! 100%\n") and " 10%" in out
    show = FollowPrinter(terminal=False)
    show({**partial, "content": " 10%", "partial": True})
    show({**partial, "content": "100%"})
    out = capsys.readouterr().out
    assert " 10%" not in out and out.endswith("w ! 100%\n")
