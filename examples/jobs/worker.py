"""A long-running worker that needs the migration: it records an event when it starts and a heartbeat
every ``WORKER_INTERVAL`` seconds (default 60) in the ``events`` collection. Without the collection it
exits 1 at once, which is why its config waits for ``migrate`` (``completedSuccessfully``)."""

from __future__ import annotations

import os
import signal
import threading
from datetime import UTC, datetime

from pocketbase_api import PocketBase, PocketBaseError, fail

COLLECTION = "events"


def record(pocketbase: PocketBase, kind: str) -> None:
    at = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S.%f}"[:-3] + "Z"
    pocketbase.request("POST", f"/api/collections/{COLLECTION}/records", {"kind": kind, "at": at})


def main() -> None:
    interval = float(os.environ.get("WORKER_INTERVAL", "60"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())  # processman's stop: end cleanly
    try:
        pocketbase = PocketBase.from_environment()
        pocketbase.request("GET", f"/api/collections/{COLLECTION}")
        record(pocketbase, "worker started")
    except PocketBaseError as exc:
        if exc.status == 404:
            fail(f"cannot start: the {COLLECTION!r} collection is missing: run migrate.py first")
        fail(f"cannot start: {exc}")
    print(f"worker started; a heartbeat every {interval:g}s", flush=True)
    while not stop.wait(interval):
        try:
            record(pocketbase, "heartbeat")
        except PocketBaseError as exc:  # PocketBase restarting: try again next time
            print(f"heartbeat not recorded: {exc}", flush=True)
    print("worker stopped")


if __name__ == "__main__":
    main()
