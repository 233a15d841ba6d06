"""Seed User Story 7 and SPEC 6: capture never blocks, nothing is silently lost, hostile output is safe."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from processman import ProcessManager, Status
from processman.api.wire import line_to_json
from processman.engine.events import EventBus
from processman.logs import MAX_LINE, SPLIT_MARKER, LineSplitter, ProcessOutput, RotatingFile
from tests.conftest import config, wait_until

Factory = Callable[..., ProcessManager]


def test_splitter_handles_partial_lines_crlf_and_bad_utf8() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"hel") == []
    assert splitter.feed(b"lo\r\nwor") == ["hello"]
    assert splitter.feed(b"ld\n\xff\xfe ok\n") == ["world", "\ufffd\ufffd ok"]
    assert splitter.feed(b"tail") == []
    assert splitter.flush() == ["tail"]


def test_splitter_splits_a_huge_line_with_a_marker() -> None:
    splitter = LineSplitter()
    pieces = splitter.feed(b"x" * (MAX_LINE * 2 + 10))  # no newline yet: still never buffered whole
    assert pieces == ["x" * MAX_LINE + SPLIT_MARKER] * 2
    assert splitter.feed(b"\n") == ["x" * 10]


def test_rotating_file_rotates_by_size(tmp_path: Path) -> None:
    log = RotatingFile(tmp_path / "a.log", max_bytes=100, backups=2)
    for index in range(10):
        log.write(f"line {index:02d} ".encode() * 5 + b"\n")  # 46 bytes each
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["a.log", "a.log.1", "a.log.2"]
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())
    assert (tmp_path / "a.log").read_text().startswith("line 08")


def test_rotating_file_that_cannot_be_written_drops_and_counts(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # a file where the log folder should be: fails even for root
    log = RotatingFile(blocker / "a.log", max_bytes=0, backups=0)
    log.write(b"12345\n")
    log.write(b"678\n")
    assert log.dropped_bytes == 10


def test_ring_answers_tail_and_since_like_a_list_of_the_last_lines_across_batches() -> None:
    # Batches of every size around the capacity, on both streams and the system one: the ring must
    # answer as the last ``capacity`` lines would, wherever a batch begins or was cut.
    output = ProcessOutput("p", EventBus(), capacity=7)
    written: list[tuple[int, str, str]] = []
    sizes = [1, 3, 7, 8, 2, 15, 1, 6, 9, 4, 7, 1, 1, 13]
    for batch, size in enumerate(sizes):
        stream = ("stdout", "stderr", "system")[batch % 3]
        lines = [f"b{batch}-{n}" for n in range(size)]
        if stream == "system":
            for line in lines:
                output.note(line)
        else:
            output.feed(stream, "".join(line + "\n" for line in lines).encode())
        written += [(len(written) + 1 + n, stream, line) for n, line in enumerate(lines)]
        kept = written[-7:]
        assert output.last_seq == len(written)
        for wanted in (0, 1, 3, 7, 20):
            tail = [(line.seq, line.stream, line.content) for line in output.tail(wanted)]
            assert tail == (kept[-wanted:] if wanted else [])
        for seq in range(len(written) - 9, len(written) + 2):
            since = [(line.seq, line.stream, line.content) for line in output.since(seq)]
            assert since == [entry for entry in kept if entry[0] > seq]


async def test_ring_keeps_the_last_1000_lines_oldest_first(manager_factory: Factory) -> None:
    manager = manager_factory(config("count", "for i in range(1500): print(i)\nimport time\ntime.sleep(30)"))
    await manager.start()
    await wait_until(manager, lambda: manager.last_log_seq("count") >= 1500, what="1500 lines")
    lines = manager.logs("count", 5000)
    assert len(lines) == 1000
    assert [line.content for line in lines[:2]] == ["500", "501"] and lines[-1].content == "1499"
    assert [line.content for line in manager.logs("count", 3)] == ["1497", "1498", "1499"]
    assert [line.content for line in manager.logs_since("count", 1498)] == ["1498", "1499"]
    first = line_to_json(lines[0])
    assert (
        set(first) == {"timestamp", "processId", "stream", "content", "level"}
        and first["processId"] == "count"
    )


async def test_stdout_is_info_and_stderr_is_error_in_python_logging(
    manager_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    code = "import sys\nprint('to out')\nprint('to err', file=sys.stderr)\nimport time\ntime.sleep(30)"
    manager = manager_factory(config("speaker", code), log_output=True)
    with caplog.at_level(logging.INFO, logger="processman.output"):
        await manager.start()
        await wait_until(manager, lambda: len(manager.logs("speaker")) >= 2, what="two lines")
        deadline = time.monotonic() + 5
        while len([r for r in caplog.records if r.name == "processman.output"]) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    records = {r.getMessage(): r for r in caplog.records if r.name == "processman.output"}
    assert records["to out"].levelno == logging.INFO and records["to err"].levelno == logging.ERROR
    assert records["to out"].__dict__["process_id"] == "speaker"
    assert records["to err"].__dict__["stream"] == "stderr"


async def test_last_lines_before_exit_are_captured_before_the_exit_is_reported(
    manager_factory: Factory,
) -> None:
    code = "import sys\nfor i in range(2000): print('line', i)\n"
    code += "print('last words', file=sys.stderr)\nsys.exit(2)"
    manager = manager_factory(config("dying", code, backoff=10.0))
    seen_at_exit: list[int] = []
    manager.add_listener(
        lambda e: (
            seen_at_exit.append(manager.last_log_seq("dying"))
            if type(e).__name__ == "ProcessExited"
            else None
        )
    )
    await manager.start()
    await wait_until(manager, lambda: bool(seen_at_exit), what="the exit")
    assert seen_at_exit[0] == 2001
    assert manager.state("dying").last_error == "exited with code 2: last words"


async def test_a_flood_never_blocks_the_child_or_the_manager(
    manager_factory: Factory, tmp_path: Path
) -> None:
    flood = "import sys\nw = sys.stdout.write\n"
    flood += "for i in range(1_000_000): w('%d flood line\\n' % i)\nsys.stdout.flush()"
    hugeline = (
        "import sys, time\nsys.stdout.write('y' * 1_000_000 + '\\n')\nsys.stdout.flush()\ntime.sleep(30)"
    )
    binary = "import os, sys, time\nsys.stdout.buffer.write(os.urandom(200_000) + b'\\nend\\n')\n"
    binary += "sys.stdout.flush()\ntime.sleep(30)"
    manager = manager_factory(
        config("flood", flood, backoff=30.0),
        config("huge", hugeline),
        config("binary", binary),
        config("calm", "import time\nwhile True: time.sleep(1)"),
        log_output=True,  # the slow consumer: it drops, the child does not wait
    )
    await manager.start()
    # While the flood runs, the manager still answers and can restart another process.
    await manager.restart_process("calm")
    assert manager.state("calm").status is Status.RUNNING
    await wait_until(
        manager, lambda: manager.state("flood").status is Status.CRASHED, timeout=30, what="flood done"
    )
    assert manager.last_log_seq("flood") == 1_000_000  # every line was read; the ring keeps the last 1000
    assert manager.logs("flood", 1)[0].content == "999999 flood line"
    await wait_until(manager, lambda: manager.last_log_seq("huge") >= 16, what="huge line")
    huge = manager.logs("huge", 100)
    assert len(huge) == 16 and huge[0].content.endswith(SPLIT_MARKER)
    assert sum(len(line.content.removesuffix(SPLIT_MARKER)) for line in huge) == 1_000_000
    await wait_until(manager, lambda: any(x.content == "end" for x in manager.logs("binary")), what="binary")
    # The files are the complete record: every byte, across rotations.
    written = sum(len(b"%d flood line\n" % i) for i in range(1_000_000))
    files = (tmp_path / "state" / "logs").glob("flood.out.log*")
    assert sum(path.stat().st_size for path in files) == written


async def test_log_files_rotate_as_configured(manager_factory: Factory, tmp_path: Path) -> None:
    code = "import sys\nfor i in range(3000):\n    print(f'{i:09d}', 'x' * 89)\nsys.stdout.flush()"
    manager = manager_factory(config("roller", code, restart="never", log_max_size=64 * 1024, log_backups=2))
    async with manager:
        await wait_until(manager, lambda: manager.state("roller").status is Status.COMPLETED, what="the exit")
    folder = tmp_path / "state" / "logs"
    files = sorted(folder.glob("roller.out.log*"))
    assert [path.name for path in files] == ["roller.out.log", "roller.out.log.1", "roller.out.log.2"]
    assert all(path.stat().st_size <= 64 * 1024 for path in files)
    # The newest lines are kept whole; the oldest were rotated away.
    assert (folder / "roller.out.log").read_text().endswith(f"{2999:09d} {'x' * 89}\n")
    assert not any(f"{0:09d} " in path.read_text() for path in files)
