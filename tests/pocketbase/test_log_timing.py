"""PocketBase writes its log in batches: 200 entries, or 3 s after the last one (every new entry pushes
that back). A sidecar that prints a line every half second would show nothing in PocketBase's Logs for
100 s; the hooks flush what they ingest, so a line is there within seconds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.pocketbase.conftest import PocketBase, Realtime, sidecar, wait_for

pytestmark = pytest.mark.pocketbase

STEADY = """
import time
print("steady: first line", flush=True)
n = 0
while True:
    n += 1
    time.sleep(0.5)
    print(f"steady: tick {n}", flush=True)
"""


def test_a_line_from_a_steady_sidecar_is_in_pocketbases_logs_within_seconds(pocketbase: PocketBase) -> None:
    pocketbase.install([sidecar("steady", STEADY)])
    pocketbase.start()
    pocketbase.wait_running("steady")
    started = time.monotonic()

    def first_line() -> list[dict[str, Any]]:
        return pocketbase.logs("data.process='steady' && message='steady: first line'")

    # Well under the 100 s PocketBase's batching alone would take at two lines a second.
    wait_for(first_line, 10, "the sidecar's first line in PocketBase's logs", interval=0.25)
    print(f"first line visible after {time.monotonic() - started:.1f}s")


# When told (a file appears), redraws a bar on stderr with carriage returns and stays at 30/30; when told
# again, finishes the line.
BAR = """
import pathlib, sys, time
def wait(name):
    while not pathlib.Path(sys.argv[1] + name).exists():
        time.sleep(0.05)
wait(".draw")
for step in range(1, 31):
    sys.stderr.write(f"\\rstep {step}/30")
    sys.stderr.flush()
wait(".finish")
sys.stderr.write(" done\\n")
sys.stderr.flush()
time.sleep(3600)
"""


def test_a_progress_bar_is_live_on_realtime_and_final_in_the_logs(pocketbase: PocketBase) -> None:
    trigger = str(pocketbase.root / "bar")
    entry = sidecar("bar", BAR)
    entry["args"] = [*entry["args"], trigger]
    pocketbase.install([entry])
    pocketbase.start()
    pocketbase.wait_running("bar")
    realtime = Realtime(pocketbase, pocketbase.superuser_token())
    try:
        realtime.subscribe("pm/logs/bar")
        Path(trigger + ".draw").write_text("")
        _, lines = realtime.wait_event(
            lambda name, data: (
                name == "pm/logs/bar" and any(line["content"] == "step 30/30" for line in data)
            ),
            "the bar's latest state on pm/logs/bar",
        )
        assert all(line.get("partial") is True for line in lines)
        Path(trigger + ".finish").write_text("")
        _, lines = realtime.wait_event(
            lambda name, data: name == "pm/logs/bar" and any("done" in line["content"] for line in data),
            "the finished line on pm/logs/bar",
        )
        final = next(line for line in lines if "done" in line["content"])
        assert final["content"] == "step 30/30 done" and "partial" not in final
        assert final["level"] == "error"
    finally:
        realtime.close()

    def stored() -> list[dict[str, Any]]:
        return pocketbase.logs("data.process='bar'")

    items = wait_for(stored, 10, "the bar's line in PocketBase's logs", interval=0.25)
    assert [item["message"] for item in items] == ["step 30/30 done"], "one line, its final state"
