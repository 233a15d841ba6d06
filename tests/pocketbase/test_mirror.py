"""The log mirror: what it sends to PocketBase, in what order, and what it drops and counts."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

from processman.engine.events import LogLines
from processman.logs import LogLine
from processman.pocketbase.mirror import MAX_MESSAGE, LogMirror, MirrorHandler, MirrorLimits


def output(process_id: str, stream: str, *lines: str, first_seq: int = 1) -> LogLines:
    return LogLines(process_id, stream, first_seq, 1_700_000_000.25, lines)


def record(level: int, message: str, name: str = "processman") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_lines_carry_level_and_attributes() -> None:
    mirror = LogMirror()
    mirror.add_output(output("web", "stdout", "up"))
    mirror.add_output(output("web", "stderr", "boom"))
    batch = mirror.take_batch()
    assert batch == [
        {
            "level": "info",
            "message": "up",
            "attrs": {"process": "web", "stream": "stdout", "time": "2023-11-14T22:13:20.250Z"},
        },
        {
            "level": "error",
            "message": "boom",
            "attrs": {"process": "web", "stream": "stderr", "time": "2023-11-14T22:13:20.250Z"},
        },
    ]
    assert mirror.stats() == {"mirrored": 2, "notMirrored": 0, "waiting": 0}


def test_batches_are_bounded_and_the_supervisors_records_go_first() -> None:
    mirror = LogMirror(MirrorLimits(batch_lines=3))
    mirror.add_output(output("web", "stdout", "a", "b", "c", "d"))
    mirror.add_record(record(logging.WARNING, "web: exited with code 1"))
    first = mirror.take_batch()
    assert [line["message"] for line in first] == ["processman: web: exited with code 1", "a", "b"]
    assert first[0]["level"] == "warn" and first[0]["attrs"]["source"] == "processman"
    assert [line["message"] for line in mirror.take_batch()] == ["c", "d"]
    assert mirror.take_batch() == []


def test_a_full_buffer_drops_the_oldest_lines_counts_them_and_says_so(tmp_path: Path) -> None:
    mirror = LogMirror(MirrorLimits(batch_lines=10, buffer_lines=5, report_every=60), log_dir=tmp_path)
    mirror.add_output(output("web", "stdout", *(f"line {i}" for i in range(12))))
    batch = mirror.take_batch()
    warning, *lines = batch
    assert [line["message"] for line in lines] == [f"line {i}" for i in range(7, 12)]  # the newest
    assert warning["level"] == "warn"
    assert warning["attrs"]["notMirrored"] == 7 and warning["attrs"]["notMirroredTotal"] == 7
    assert "7 lines of sidecar output were not copied" in warning["message"]
    assert "limit 50 lines/s" in warning["message"] and str(tmp_path) in warning["message"]
    # More drops within report_every: counted, reported later, not at once.
    mirror.add_output(output("web", "stdout", *(f"more {i}" for i in range(8))))
    assert all("notMirrored" not in line["attrs"] for line in mirror.take_batch())
    assert mirror.stats() == {"mirrored": 10, "notMirrored": 10, "waiting": 0}


def test_undelivered_batches_are_counted_as_not_mirrored() -> None:
    mirror = LogMirror()
    mirror.add_output(output("web", "stdout", "a", "b"))
    mirror.lost(mirror.take_batch())
    assert mirror.stats() == {"mirrored": 0, "notMirrored": 2, "waiting": 0}


def test_long_lines_are_truncated_to_what_pocketbase_keeps() -> None:
    mirror = LogMirror()
    mirror.add_output(output("web", "stdout", "x" * 70_000))
    (line,) = mirror.take_batch()
    assert len(line["message"]) == MAX_MESSAGE
    assert line["message"].endswith("the full line is in processman's log file]")


async def test_next_batch_waits_for_lines_from_any_thread() -> None:
    mirror = LogMirror()
    mirror.bind(asyncio.get_running_loop())
    waiting = asyncio.create_task(mirror.next_batch())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    handler = MirrorHandler(mirror)
    started = time.monotonic()
    threading.Thread(target=handler.emit, args=(record(logging.INFO, "from a thread"),)).start()
    batch = await asyncio.wait_for(waiting, 2)
    assert [line["message"] for line in batch] == ["processman: from a thread"]
    assert time.monotonic() - started < 1


def test_the_handler_skips_sidecar_output_and_quiet_foreign_records() -> None:
    mirror = LogMirror()
    handler = MirrorHandler(mirror)
    handler.handle(record(logging.ERROR, "a sidecar line", name="processman.output"))
    handler.handle(record(logging.INFO, "debug noise", name="httpx"))
    handler.handle(record(logging.ERROR, "uvicorn failed", name="uvicorn.error"))
    assert [line["message"] for line in mirror.take_batch()] == ["processman: uvicorn failed"]


def test_history_lines_keep_their_own_time_and_stream() -> None:
    mirror = LogMirror()
    history = [
        LogLine(1, 1_700_000_000.0, "web", "stdout", "first"),
        LogLine(2, 1_700_000_001.5, "web", "stderr", "x"),
    ]
    mirror.add_history(history)
    assert [(line["level"], line["message"], line["attrs"]["time"]) for line in mirror.take_batch()] == [
        ("info", "first", "2023-11-14T22:13:20.000Z"),
        ("error", "x", "2023-11-14T22:13:21.500Z"),
    ]


def test_processmans_notes_about_a_sidecar_are_info_not_errors() -> None:
    mirror = LogMirror()
    mirror.add_output(output("web", "system", "restarting: restart requested"))
    mirror.add_output(output("web", "stderr", "Traceback"))
    notes, errors = mirror.take_batch()
    assert (notes["level"], notes["attrs"]["stream"]) == ("info", "system")
    assert notes["message"] == "restarting: restart requested"
    assert errors["level"] == "error"
