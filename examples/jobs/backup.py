"""A backup of the data folder through PocketBase's backup API: ``POST /api/backups`` writes
``pb_data/backups/<name>.zip`` (the database and the uploaded files) and answers once it is written;
``GET /api/backups`` must then list it. Exit code 0 only then.

PocketBase lets one backup or restore run at a time, and refuses a name that exists: either is an error
here, with PocketBase's reason on stderr.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pocketbase_api import PocketBase, PocketBaseError, fail


def main() -> None:
    # PocketBase accepts lowercase letters, digits, "_" and "-" before ".zip".
    name = datetime.now(UTC).strftime("backup_%Y%m%d_%H%M%S.zip")
    try:
        pocketbase = PocketBase.from_environment()
        pocketbase.request("POST", "/api/backups", {"name": name})
        backups = pocketbase.request("GET", "/api/backups")
    except PocketBaseError as exc:
        fail(f"backup {name} failed: {exc}")
    listed = [backup for backup in backups if backup.get("key") == name]
    if not listed:
        fail(f"backup {name}: PocketBase answered but does not list it")
    print(f"backup {name} written ({listed[0].get('size', '?')} bytes)")


if __name__ == "__main__":
    main()
