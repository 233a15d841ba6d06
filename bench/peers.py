"""The peers, installed into a scratch folder (``bench/.peers/``, ignored by git), never into the project.

A venv holds supervisor, circus and honcho (and matplotlib for the chart, py-spy and pyinstrument for
profiles); ``npm install --prefix`` holds pm2. Versions are pinned so a run can be repeated. Circus 0.19
works on Python 3.11 with the pyzmq and tornado releases pinned here (checked by ``circusd --version``
and by every workload that runs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PEERS_DIR = BENCH_DIR / ".peers"
VENV_DIR = PEERS_DIR / "venv"
NODE_DIR = PEERS_DIR / "node"
STAMP = PEERS_DIR / "installed.json"

PYTHON_PINS = (
    "supervisor==4.3.0",
    "circus==0.19.0",
    "pyzmq==27.3.0",
    "tornado==6.6.1",
    "psutil==7.2.2",
    "honcho==2.0.0",
    "matplotlib==3.11.2",
    "py-spy==0.4.3",
    "pyinstrument==5.1.3",
)
NODE_PINS = ("pm2@7.0.4",)


class PeerInstallError(RuntimeError):
    """A peer could not be installed; the message names the command that failed."""


@dataclass(frozen=True)
class Peers:
    """Where each installed peer's programs are."""

    venv: Path
    node: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    @property
    def pm2(self) -> Path:
        return self.node / "node_modules" / ".bin" / "pm2"

    @property
    def pm2_module(self) -> Path:
        return self.node / "node_modules" / "pm2"


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise PeerInstallError(f"{' '.join(argv)} failed (exit {done.returncode}):\n" + "\n".join(tail))


def _wanted() -> dict[str, list[str]]:
    return {"python": list(PYTHON_PINS), "node": list(NODE_PINS)}


def ensure_peers(log: bool = True) -> Peers:
    """Install the pinned peers unless the same pins are already installed."""
    peers = Peers(VENV_DIR, NODE_DIR)
    try:
        installed = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        installed = None
    if installed == _wanted() and peers.python.exists() and peers.pm2.exists():
        return peers
    if shutil.which("npm") is None:
        raise PeerInstallError(
            "npm is not on the PATH: it is needed to install pm2 (install Node.js 18 or newer)"
        )
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    if log:
        print(f"installing peers into {PEERS_DIR} ...", flush=True)
    if not peers.python.exists():
        _run([sys.executable, "-m", "venv", str(VENV_DIR)])
    _run([str(peers.python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PYTHON_PINS])
    _run(["npm", "install", "-q", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), *NODE_PINS])
    _run([str(peers.bin("circusd")), "--version"])
    STAMP.write_text(json.dumps(_wanted()))
    return peers


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (
        (done.stdout or done.stderr).strip().splitlines()[-1] if (done.stdout or done.stderr).strip() else "?"
    )


def versions(peers: Peers) -> dict[str, str]:
    """The version each peer reports of itself (and its runtime)."""
    pip_list = subprocess.run(
        [str(peers.python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    )
    packages = {item["name"].lower(): item["version"] for item in json.loads(pip_list.stdout or "[]")}
    pm2_package = json.loads((peers.pm2_module / "package.json").read_text())
    return {
        "supervisor": packages.get("supervisor", "?"),
        "circus": packages.get("circus", "?")
        + f" (pyzmq {packages.get('pyzmq', '?')}, tornado {packages.get('tornado', '?')})",
        "honcho": packages.get("honcho", "?"),
        "pm2": str(pm2_package.get("version", "?")) + f" (Node.js {_output(['node', '--version'])})",
        "peers' Python": _output([str(peers.python), "--version"]),
    }


if __name__ == "__main__":
    found = ensure_peers()
    print(json.dumps(versions(found), indent=2))
