"""The server file: ``DATA_DIR/processman/server.json``, where a running ``processman serve`` says where
its API listens, so client commands given the same data folder find it without ``--url``.

``serve`` writes it once the API is up and removes it when it stops (a file left by a server that was
killed names a pid that is gone, and is ignored). It holds no secret: the token stays in its own file,
readable by its owner only. Standard library only: the CLI client reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

SERVER_FILE = "server.json"
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def server_path(data_dir: Path) -> Path:
    return data_dir / "processman" / SERVER_FILE


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for an API bound to ``host``: a wildcard address becomes
    loopback."""
    host = _WILDCARDS.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(frozen=True)
class ServerRecord:
    url: str
    pid: int
    started: float

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            return True
        return True


def write_server_file(data_dir: Path, url: str) -> Path:
    path = server_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{SERVER_FILE}.{os.getpid()}")
    record = {"url": url, "pid": os.getpid(), "started": time.time()}
    temporary.write_text(json.dumps(record) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def remove_server_file(data_dir: Path) -> None:
    """Remove the file if this process wrote it (a newer server on the same folder keeps its own)."""
    path = server_path(data_dir)
    record = read_server_file(path)
    if record is not None and record.pid == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read_server_file(path: Path) -> ServerRecord | None:
    """The record in ``path``, or None when there is no readable one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        record = ServerRecord(str(data["url"]), int(data["pid"]), float(data.get("started", 0)))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return record if record.url.startswith(("http://", "https://")) else None
