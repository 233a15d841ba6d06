"""Run the ``processman`` command in a fresh Python and report which modules it imported."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass

# What the server side brings: a client command that imports any of it starts several times slower.
SERVER_MODULES = (
    "asyncio",
    "httpcore",
    "httpx",
    "processman.api",
    "processman.engine",
    "processman.pocketbase",
    "processman.runner",
    "psutil",
    "starlette",
    "uvicorn",
)

_PROBE = """
import json, sys
from processman.cli import main
report, *args = sys.argv[1:]
code = None
try:
    main(args, prog_name="processman")
except SystemExit as exc:
    code = exc.code
with open(report, "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


@dataclass
class Run:
    code: int | str | None
    stdout: str
    stderr: str
    modules: set[str]

    def loaded(self, packages: Iterable[str]) -> list[str]:
        """The modules of ``packages`` (a package and its submodules) that were imported."""
        return sorted(
            name
            for name in self.modules
            for package in packages
            if name == package or name.startswith(package + ".")
        )


def run_command(*args: str, report: str, env: dict[str, str] | None = None) -> Run:
    """``processman ARGS`` in a new interpreter; ``report`` is a file path for the module list."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, report, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    with open(report) as file:
        answer = json.load(file)
    return Run(answer["code"], result.stdout, result.stderr, set(answer["modules"]))
