"""The environment a child starts with (SPEC 5): the manager's, then PocketBase's, then the config's
``envFile`` files, then its ``env`` (each wins over the ones before)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

_TEMPLATE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")

# Every descendant of a child carries this variable; it is how a process tree is found again even after
# its members escape the process group (setsid) or outlive the manager.
TAG_VARIABLE = "PROCESSMAN_TAG"
PRIVATE_VARIABLES = frozenset({"PROCESSMAN_TOKEN", "PM_SECRET"})


def expand(value: str, source: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` and ``$VAR`` from ``source`` (undefined: empty); ``$$`` is a literal ``$``.

    >>> expand("http://${HOST}:$PORT/$$x", {"HOST": "h", "PORT": "1"})
    'http://h:1/$x'
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return source.get(match.group(1) or match.group(2), "")

    return _TEMPLATE.sub(replace, value)


@dataclass(frozen=True)
class PocketBaseInfo:
    """Where the PocketBase that the sidecars serve lives."""

    port: int
    url: str
    data_dir: str

    @classmethod
    def from_address(cls, address: str, data_dir: str) -> PocketBaseInfo:
        """From PocketBase's ``--http`` value: ``0.0.0.0`` and empty hosts become 127.0.0.1."""
        host, _, port_text = address.rpartition(":")
        host = host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        port = int(port_text or 8090)
        shown = f"[{host}]" if ":" in host else host
        return cls(port=port, url=f"http://{shown}:{port}", data_dir=data_dir)

    def variables(self) -> dict[str, str]:
        return {"PB_PORT": str(self.port), "PB_URL": self.url, "PB_DATA_DIR": self.data_dir}


_decoded: tuple[dict[bytes, bytes], dict[str, str]] | None = None


def os_environ() -> Mapping[str, str]:
    """``os.environ``, decoded once for as long as it does not change (do not modify the result). Each
    read of ``os.environ`` decodes every name and value anew: 1000 children kept 1000 copies of every
    string of the manager's environment (5 MB); built from this one, their environments share them."""
    global _decoded
    raw = dict(os.environb)  # the bytes os.environ holds, not copies: a cheap way to see a change
    if _decoded is None or _decoded[0] != raw:
        _decoded = (raw, dict(os.environ))
    return _decoded[1]


def child_environment(
    base: Mapping[str, str],
    config_env: Mapping[str, str],
    *,
    pocketbase: PocketBaseInfo | None,
    tag: str,
    file_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    # processman's own credentials are not the sidecars' business.
    env = {name: value for name, value in base.items() if name not in PRIVATE_VARIABLES}
    if pocketbase is not None:
        env.update(pocketbase.variables())
    # ``env`` may quote what an envFile holds: "postgres://app:${DB_PASSWORD}@db/app".
    source = {**base, **file_env} if file_env else base
    if file_env:
        env.update(file_env)
    for name, value in config_env.items():
        env[name] = expand(value, source)
    # Unbuffered Python output reaches the logs as it is written; other programs ignore it.
    env.setdefault("PYTHONUNBUFFERED", "1")
    env[TAG_VARIABLE] = tag
    return env


def activate_venv(env: MutableMapping[str, str], venv: Path, bin_folder: str = "bin") -> None:
    """What ``source <venv>/bin/activate`` does: ``VIRTUAL_ENV`` set, the virtualenv's ``bin`` first on
    ``PATH`` (once), ``PYTHONHOME`` unset. It overrides a virtualenv processman itself runs in."""
    bin_path = str(venv / bin_folder)
    rest = [entry for entry in env.get("PATH", os.defpath).split(os.pathsep) if entry and entry != bin_path]
    env["PATH"] = os.pathsep.join([bin_path, *rest])
    env["VIRTUAL_ENV"] = str(venv)
    env.pop("PYTHONHOME", None)
