"""The admin token file: ``DATA_DIR/processman/token``, readable by its owner only.

``processman serve`` writes it when ``PROCESSMAN_TOKEN`` is not set, so the CLI on the same machine
(same user, same data folder) finds the token without being told. It lives outside ``processman.api``
so that the CLI client reads the token without importing the server.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

TOKEN_ENV = "PROCESSMAN_TOKEN"
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{32,}")


def token_path(data_dir: Path) -> Path:
    return data_dir / "processman" / "token"


def read_token(path: Path) -> str | None:
    """The token in ``path``, or None when there is no usable one."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def ensure_token(path: Path) -> str:
    """The token in ``path``, created if missing. An existing token is kept (so a dashboard or a shell
    that holds it keeps working across restarts) unless others than the owner could read it."""
    import secrets  # here: the CLI client, which only reads the token, starts faster without it

    try:
        info = path.stat()
    except FileNotFoundError:
        pass
    else:
        existing = read_token(path)
        private = stat.S_IMODE(info.st_mode) & 0o077 == 0 and info.st_uid == os.getuid()
        if existing is not None and private and _TOKEN_SHAPE.fullmatch(existing):
            return existing
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (token + "\n").encode("ascii"))
    finally:
        os.close(fd)
    os.replace(temporary, path)
    return token
