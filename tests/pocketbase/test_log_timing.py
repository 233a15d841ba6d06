"""PocketBase writes its log in batches: 200 entries, or 3 s after the last one (every new entry pushes
that back). A sidecar that prints a line every half second would show nothing in PocketBase's Logs for
100 s; the hooks flush what they ingest, so a line is there within seconds."""

from __future__ import annotations

import time
from typing import Any

import pytest
from tests.pocketbase.conftest import PocketBase, sidecar, wait_for

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
