"""The server file: ``DATA_DIR/processman/server.json``, where a running ``processman serve`` says where
its API listens, so client commands given the same data folder find it without ``--url``.

``serve`` writes it once the API is up and removes it when it stops (a file left by a server that was
killed names a pid that is gone, and is ignored). It holds no secret: the token stays in its own file,
readable by its owner only. Standard library only: the CLI client reads it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processman.engine.manager import ProcessManager
    from processman.runner import Service

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
    pocketbase: bool = False  # the URL is PocketBase's: the token is a superuser's

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            return True
        return True


def write_server_file(data_dir: Path, url: str, *, pocketbase: bool = False) -> Path:
    path = server_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{SERVER_FILE}.{os.getpid()}")
    record = {"url": url, "pid": os.getpid(), "started": time.time(), "pocketbase": pocketbase}
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
        record = ServerRecord(
            str(data["url"]), int(data["pid"]), float(data.get("started", 0)), data.get("pocketbase") is True
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return record if record.url.startswith(("http://", "https://")) else None


class Announced:
    """A service (the HTTP API) whose address is recorded in DATA_DIR/processman/server.json once it
    is up, and removed when it stops. ``url`` is asked once it is up (a port 0 is chosen by then)."""

    def __init__(
        self, service: Service, data_dir: Path, url: Callable[[], str], *, pocketbase: bool = False
    ) -> None:
        self.service = service
        self.data_dir = data_dir
        self.url = url
        self.pocketbase = pocketbase
        self.name = service.name

    async def run(
        self, manager: ProcessManager, ready: Callable[[], None], request_stop: Callable[[str], None]
    ) -> None:
        def up() -> None:
            try:
                write_server_file(self.data_dir, self.url(), pocketbase=self.pocketbase)
            except OSError as exc:  # the API works without it; clients then need --url
                logging.getLogger("processman").warning(
                    "cannot record the API's address in %s: %s", self.data_dir / "processman", exc
                )
            ready()

        try:
            await self.service.run(manager, up, request_stop)
        finally:
            remove_server_file(self.data_dir)
