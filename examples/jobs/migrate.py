"""A one-shot migration: creates the ``events`` collection the worker writes to and the cleanup prunes,
unless it exists. Run again, it changes nothing. Exit code 0 on success: with ``restart: "never"``
processman shows it ``completed``, and what ``dependsOn`` it as ``completedSuccessfully`` starts then.
"""

from __future__ import annotations

from pocketbase_api import PocketBase, PocketBaseError, fail

COLLECTION = "events"
EVENTS = {
    "name": COLLECTION,
    "type": "base",
    # Superusers only: no list, view, create, update or delete rule.
    "fields": [
        {"name": "kind", "type": "text", "required": True},
        {"name": "at", "type": "date", "required": True},  # when it happened
        {"name": "created", "type": "autodate", "onCreate": True},
    ],
    "indexes": [f"CREATE INDEX idx_{COLLECTION}_at ON {COLLECTION} (at)"],  # the cleanup's filter
}


def main() -> None:
    try:
        pocketbase = PocketBase.from_environment()
        try:
            pocketbase.request("GET", f"/api/collections/{COLLECTION}")
        except PocketBaseError as exc:
            if exc.status != 404:
                raise
        else:
            print(f"collection {COLLECTION!r} exists: nothing to do")
            return
        pocketbase.request("POST", "/api/collections", EVENTS)
    except PocketBaseError as exc:
        fail(f"migration failed: {exc}")
    print(f"collection {COLLECTION!r} created")


if __name__ == "__main__":
    main()
