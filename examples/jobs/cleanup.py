"""Deletes the events older than ``CLEANUP_MAX_AGE_DAYS`` days (default 30) through PocketBase's records
API, a page at a time, and says how many it deleted."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from pocketbase_api import PocketBase, PocketBaseError, fail

COLLECTION = "events"
PAGE = 200


def main() -> None:
    try:
        days = float(os.environ.get("CLEANUP_MAX_AGE_DAYS", "30"))
    except ValueError:
        fail(f"CLEANUP_MAX_AGE_DAYS must be a number of days, got {os.environ['CLEANUP_MAX_AGE_DAYS']!r}")
    cutoff = datetime.now(UTC) - timedelta(days=days)
    # PocketBase's date format; the value is ours, not user input, so it is safe to put in the filter.
    query = {
        "filter": f'at < "{cutoff:%Y-%m-%d %H:%M:%S}.000Z"',
        "fields": "id",
        "perPage": str(PAGE),
        "skipTotal": "1",
    }
    deleted = 0
    try:
        pocketbase = PocketBase.from_environment()
        while True:
            page = pocketbase.request("GET", f"/api/collections/{COLLECTION}/records", query=query)
            for record in page["items"]:
                pocketbase.request("DELETE", f"/api/collections/{COLLECTION}/records/{record['id']}")
                deleted += 1
            if len(page["items"]) < PAGE:
                break
    except PocketBaseError as exc:
        fail(f"cleanup stopped after {deleted} deletion(s): {exc}")
    print(f"deleted {deleted} event(s) older than {days:g} days (before {cutoff:%Y-%m-%d %H:%M} UTC)")


if __name__ == "__main__":
    main()
