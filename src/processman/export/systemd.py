"""systemd units: a service per entry (a template ``name@.service`` for ``instances``), a timer per
job, a target per group, one target for the whole app, and with ``with_pocketbase`` PocketBase's unit
as its production guide writes it."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from processman.config import LoadedConfig, ProcessConfig
from processman.engine.policy import BACKOFF_CAP, backoff_delay
from processman.export.common import (
    SECRETS_FILE,
    Export,
    ExportOptions,
    max_retries_default,
    secrets_file,
    split_argv,
    split_environment,
    systemd_span,
    warn_lacking,
)
from processman.export.common import entries as config_entries
from processman.export.cron import CronUnsupported, systemd_calendar
from processman.interpreter import VENV_BIN, command_line, find_venv, resolve_interpreter

# RestartSteps= and RestartMaxDelaySec= (exponential restart delays) came with systemd 254.
STEPS_VERSION = 254
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PB_PORT = 8090

LACKS = {
    "devMode": "systemd does not restart a service when its files change (a .path unit can, by hand)",
    "watchPaths": "systemd does not watch files for a service (devMode is lost)",
    "watchDebounce": "systemd does not watch files for a service (devMode is lost)",
    "minUptime": "systemd has no minimum uptime: StartLimitIntervalSec= counts starts in a window instead",
    "readiness": "systemd has no readiness probe: dependents start once it has started (type notify says "
    "READY=1 itself)",
    "liveness": "systemd has no liveness probe: a watchdog (watchdogSec, WATCHDOG=1) restarts a hung service",
    "readyLogLine": "systemd cannot wait for an output line: dependents wait for its start only",
    "keepRuns": "systemd keeps no run history beyond the journal (journalctl -u UNIT)",
    "logMaxSize": "output goes to the journal, whose size journald.conf sets (SystemMaxUse=)",
    "logBackups": "output goes to the journal, whose size journald.conf sets (SystemMaxUse=)",
    "notify": "systemd sends no notifications: OnFailure= can start a unit that does",
}
MAPPED = frozenset(
    {
        "id", "group", "script", "command", "args", "cwd", "env", "envFile", "interpreter", "maxRetries",
        "backoff", "stopTimeout", "stopSignal", "pidFile", "maxMemory", "limits", "dependsOn", "instances",
        "restart", "successExitCodes", "autostart", "schedule", "timeout", "type", "watchdogSec",
    }
)  # fmt: skip
_LIMITS = {"openFiles": "LimitNOFILE", "cpuSeconds": "LimitCPU", "coreSize": "LimitCORE"}


def quote_word(word: str) -> str:
    """One word of ``ExecStart=``: ``$`` and ``%`` kept literal, quoted when it holds spaces."""
    text = word.replace("%", "%%").replace("$", "$$")
    if text and not any(char in text for char in " \t\n\"'\\;"):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def quote_assignment(name: str, value: str) -> str:
    """One ``Environment=`` assignment."""
    text = f"{name}={value}".replace("%", "%%")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


class Unit:
    """The sections of a unit file, in order, each a list of (key, value)."""

    def __init__(self) -> None:
        self.sections: dict[str, list[tuple[str, str]]] = {}

    def add(self, section: str, key: str, value: str | int) -> None:
        self.sections.setdefault(section, []).append((key, str(value)))

    def text(self, comment: str = "") -> str:
        lines = [f"# {line}" if line else "#" for line in comment.splitlines()] if comment else []
        for section, items in self.sections.items():
            if lines:
                lines.append("")
            lines.append(f"[{section}]")
            lines.extend(f"{key}={value}" for key, value in items)
        return "\n".join(lines) + "\n"


class _Names:
    def __init__(self, options: ExportOptions, configs: list[ProcessConfig]) -> None:
        self.app = options.name
        self.by_entry = {config.entry: config for config in configs}

    def base(self, entry: str) -> str:
        return f"{self.app}-{entry}"

    def units(self, entry: str) -> list[str]:
        """The unit (or every instance unit) of an entry's service."""
        config = self.by_entry[entry]
        base = self.base(entry)
        if config.instances is None:
            return [f"{base}.service"]
        return [f"{base}@{n}.service" for n in range(config.instances)]

    def file(self, entry: str) -> str:
        config = self.by_entry[entry]
        return f"{self.base(entry)}{'@' if config.instances is not None else ''}.service"

    @property
    def target(self) -> str:
        return f"{self.app}.target"

    @property
    def pocketbase(self) -> str:
        return f"{self.app}-pocketbase.service"

    def group(self, group: str) -> str:
        return f"{self.app}-{group}.target"


def _executable(argv: list[str], config: ProcessConfig, path: str, export: Export) -> str:
    """An absolute path for the first word: systemd runs no shell and searches a fixed PATH only."""
    program = argv[0]
    if os.path.isabs(program):
        return program
    found = shutil.which(program, path=path)
    if found is None:
        export.warn(config.entry, "command", f"{program!r} is not on the PATH here: write its absolute path")
        return program
    return os.path.abspath(found)


def _restart_delays(config: ProcessConfig, unit: Unit, export: Export, version: int | None) -> None:
    unit.add("Service", "RestartSec", systemd_span(config.backoff))
    if config.backoff <= 0 or config.backoff >= BACKOFF_CAP:
        return
    steps = math.ceil(math.log2(BACKOFF_CAP / config.backoff))
    if version is not None and version < STEPS_VERSION:
        export.warn(
            config.entry,
            "backoff",
            f"systemd {version} has no RestartSteps= (systemd {STEPS_VERSION}): every restart waits "
            f"{systemd_span(config.backoff)} instead of doubling up to {systemd_span(BACKOFF_CAP)}",
        )
        return
    unit.add("Service", "RestartSteps", steps)
    unit.add("Service", "RestartMaxDelaySec", systemd_span(BACKOFF_CAP))


def _start_limit(config: ProcessConfig, unit: Unit) -> None:
    retries = config.retries
    if retries < 0:
        unit.add("Unit", "StartLimitIntervalSec", 0)  # never gives up
        return
    # processman gives up after maxRetries failures in a row; systemd after Burst starts in a window:
    # the window is as long as those failures take (their delays and a minUptime each).
    window = sum(backoff_delay(config.backoff, n) for n in range(1, retries + 1)) + (retries + 1) * (
        config.min_uptime
    )
    unit.add("Unit", "StartLimitIntervalSec", systemd_span(math.ceil(window)))
    unit.add("Unit", "StartLimitBurst", retries + 1)


def _timer(config: ProcessConfig, unit_name: str, export: Export) -> Unit:
    schedule = config.schedule
    assert schedule is not None
    timer = Unit()
    timer.add("Unit", "Description", f"Schedule of {config.entry}")
    timer.add("Timer", "Unit", unit_name)
    timer.add("Timer", "AccuracySec", "1s")  # the default, one minute, would run jobs late
    if schedule.cron is not None:
        try:
            events = systemd_calendar(schedule.cron, schedule.timezone)
        except CronUnsupported as exc:
            export.warn(config.entry, "schedule.cron", f"{exc}: write OnCalendar= by hand")
            events = []
        for event in events:
            timer.add("Timer", "OnCalendar", event)
        if schedule.catch_up:
            timer.add("Timer", "Persistent", "true")
        if schedule.run_on_start:
            timer.add("Timer", "OnActiveSec", 0)
    else:
        assert schedule.every is not None
        every = systemd_span(schedule.every)
        timer.add("Timer", "OnActiveSec", 0 if schedule.run_on_start else every)
        timer.add("Timer", "OnUnitActiveSec", every)
        if schedule.catch_up:
            export.warn(
                config.entry,
                "schedule.catchUp",
                "systemd's Persistent= keeps calendar timers only: a missed interval run is not caught up",
            )
    if schedule.overlap == "queue":
        export.warn(
            config.entry,
            "schedule.overlap",
            "systemd never queues a run: a time due while the job runs is skipped",
        )
    elif schedule.overlap == "allow":
        export.warn(
            config.entry,
            "schedule.overlap",
            "systemd runs one copy of a unit at a time: a time due while the job runs is skipped",
        )
    return timer


def _service(
    config: ProcessConfig,
    names: _Names,
    options: ExportOptions,
    export: Export,
    oneshot: bool,
    secrets: list[tuple[ProcessConfig, list[str], list[str]]],
) -> Unit:
    unit = Unit()
    unit.add("Unit", "Description", f"{config.entry} ({names.app})")
    requires: list[str] = []
    for dependency, condition in config.depends_on.items():
        requires.extend(names.units(dependency))
        if condition == "logReady":
            export.warn(config.entry, f"dependsOn.{dependency}", LACKS["readyLogLine"])
    if requires:
        unit.add("Unit", "After", " ".join(requires))
        unit.add("Unit", "Requires", " ".join(requires))
    unit.add("Unit", "PartOf", names.target)
    if config.group:
        unit.add("Unit", "PartOf", names.group(config.group))
    if options.with_pocketbase:
        unit.add("Unit", "After", names.pocketbase)
        unit.add("Unit", "PartOf", names.pocketbase)

    venv = find_venv(config)
    path = options.environ.get("PATH", DEFAULT_PATH)
    env_path = path
    if venv.venv is not None:
        env_path = f"{venv.venv / VENV_BIN}:{DEFAULT_PATH}"
        path = f"{venv.venv / VENV_BIN}:{path}"
    argv = command_line(config, resolve_interpreter(config, venv))
    argv[0] = _executable(argv, config, path, export)
    split = split_argv(config, argv)
    environment = split_environment(config, export, options.environ, expand_now=True)
    secret_names = [*environment.secret, *split.secrets]
    secrets.append((config, secret_names, argv))
    secret_words = iter(split.secrets)

    service = "Service"
    if config.is_job or oneshot:
        unit.add(service, "Type", "oneshot")
        if oneshot and not config.is_job:
            unit.add(service, "RemainAfterExit", "yes")  # "completed" stays met for its dependents
    else:
        unit.add(service, "Type", config.type)
    if config.type == "forking" and config.pid_file:
        unit.add(service, "PIDFile", str(config.cwd / config.pid_file))
    if config.type == "notify" or config.watchdog_sec is not None:
        unit.add(service, "NotifyAccess", "all")  # processman hears every process of the tree
    if (config.is_job or oneshot) and config.type != "simple":
        export.warn(config.entry, "type", "a run to completion is Type=oneshot in systemd: type is dropped")
    words = [
        quote_word(word) if word is not None else "${" + next(secret_words) + "}" for word in split.words
    ]
    unit.add(service, "ExecStart", " ".join(words))
    unit.add(service, "WorkingDirectory", str(config.cwd))
    unit.add(service, "SyslogIdentifier", config.entry)
    unit.add(service, "Environment", quote_assignment("PYTHONUNBUFFERED", "1"))
    if venv.venv is not None:
        unit.add(service, "Environment", quote_assignment("VIRTUAL_ENV", str(venv.venv)))
        unit.add(service, "Environment", quote_assignment("PATH", env_path))
    if config.instances is not None:
        unit.add(service, "Environment", '"PROCESSMAN_INSTANCE=%i"')  # %i: the instance's number
    if options.with_pocketbase:
        unit.add(service, "Environment", quote_assignment("PB_URL", f"http://127.0.0.1:{PB_PORT}"))
        unit.add(service, "Environment", quote_assignment("PB_PORT", str(PB_PORT)))
    for env_file in config.env_file:
        unit.add(service, "EnvironmentFile", str(env_file))
    for name, value in environment.plain.items():
        unit.add(service, "Environment", quote_assignment(name, value))
    if secret_names:
        unit.add(service, "EnvironmentFile", f"/etc/{names.app}/{SECRETS_FILE}")

    if config.is_job or oneshot:
        restart = "on-failure" if config.retries > 0 or (oneshot and config.restart == "on-failure") else "no"
        timeout = "infinity" if config.timeout is None else systemd_span(config.timeout)
        unit.add(service, "TimeoutStartSec", timeout)  # a oneshot's whole run is its start
    else:
        restart = {"always": "always", "on-failure": "on-failure", "never": "no"}[config.restart]
        if config.timeout is not None:
            unit.add(service, "RuntimeMaxSec", systemd_span(config.timeout))
    unit.add(service, "Restart", restart)
    if restart != "no":
        _restart_delays(config, unit, export, options.systemd_version)
        _start_limit(config, unit)
    elif not max_retries_default(config):
        export.warn(config.entry, "maxRetries", "restart is never: systemd makes no retries")
    codes = [str(code) for code in config.success_exit_codes if code != 0]
    if codes:
        unit.add(service, "SuccessExitStatus", " ".join(codes))
    if 0 not in config.success_exit_codes:
        export.warn(config.entry, "successExitCodes", "systemd always counts exit code 0 as a success")
    unit.add(service, "KillMode", "control-group")
    unit.add(service, "KillSignal", config.stop_signal)
    unit.add(service, "TimeoutStopSec", systemd_span(config.stop_timeout))
    if config.watchdog_sec is not None:
        unit.add(service, "WatchdogSec", systemd_span(config.watchdog_sec))
    if config.max_memory is not None:
        unit.add(service, "MemoryMax", config.max_memory)
    for limit, directive in _LIMITS.items():
        if limit in config.limits:
            unit.add(service, directive, config.limits[limit])
    if os.geteuid() != 0:  # a system unit runs as root unless told: as the user who runs processman
        unit.add(service, "User", _user())
    warn_lacking(config, export, LACKS)
    return unit


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _pocketbase_binary(app_dir: Path, options: ExportOptions, export: Export) -> str:
    """The app's own ./pocketbase (beside pb_data, as processman startup prefers it), else the one on
    the PATH; when neither is here, the app's, with a warning that it is missing."""
    own = app_dir / "pocketbase"
    if own.is_file() and os.access(own, os.X_OK):
        return str(own)
    on_path = shutil.which("pocketbase", path=options.environ.get("PATH", DEFAULT_PATH))
    if on_path is not None:
        return os.path.abspath(on_path)
    export.warn(
        "",
        "pocketbase",
        f"{own} does not exist and no pocketbase is on the PATH here: the unit runs {own}, "
        "put PocketBase's executable there before starting it",
    )
    return str(own)


def _pocketbase_unit(loaded: LoadedConfig, names: _Names, options: ExportOptions, export: Export) -> Unit:
    root = Path(os.path.abspath(loaded.path.parent))
    data_dir = root if root.name == "pb_data" else root / "pb_data"
    app_dir = data_dir.parent
    binary = _pocketbase_binary(app_dir, options, export)
    unit = Unit()
    unit.add("Unit", "Description", f"PocketBase ({names.app})")
    unit.add("Unit", "After", "network.target")
    unit.add("Unit", "PartOf", names.target)
    unit.add("Service", "Type", "simple")
    unit.add("Service", "LimitNOFILE", 4096)
    unit.add("Service", "Restart", "always")
    unit.add("Service", "RestartSec", "5s")
    unit.add("Service", "WorkingDirectory", str(app_dir))
    unit.add(
        "Service",
        "ExecStart",
        f"{quote_word(os.path.abspath(binary))} serve --http=127.0.0.1:{PB_PORT} "
        f"{quote_word('--dir=' + str(data_dir))}",
    )
    if os.geteuid() != 0:
        unit.add("Service", "User", _user())
    return unit


def export_systemd(loaded: LoadedConfig, options: ExportOptions) -> Export:
    """Units for every entry of ``loaded``."""
    export = Export("systemd")
    configs = config_entries(loaded)
    names = _Names(options, configs)
    waited_to_end = {
        dependency
        for config in configs
        for dependency, condition in config.depends_on.items()
        if condition in ("completed", "completedSuccessfully")
    }
    wanted: list[str] = []
    groups: dict[str, list[str]] = {}
    secrets: list[tuple[ProcessConfig, list[str], list[str]]] = []
    header = "Generated by processman export systemd from {path}"
    for config in configs:
        oneshot = config.entry in waited_to_end and config.restart != "always" and config.type == "simple"
        if config.entry in waited_to_end and not oneshot:
            export.warn(
                config.entry,
                "restart",
                "others wait for it to complete, but it is kept alive: they wait for its start only",
            )
        unit = _service(config, names, options, export, oneshot, secrets)
        file = names.file(config.entry)
        export.files[file] = unit.text(header.format(path=loaded.path))
        units = names.units(config.entry)
        if config.is_job:
            timer_file = file.removesuffix(".service") + ".timer"
            timer_units = [name.removesuffix(".service") + ".timer" for name in units]
            export.files[timer_file] = _timer(config, file.replace("@.", "@%i."), export).text(
                header.format(path=loaded.path)
            )
            units = timer_units
        if config.autostart:
            wanted.extend(units)
        if config.group:
            groups.setdefault(config.group, []).extend(units)
    if loaded.notify:
        export.warn("", "notify", LACKS["notify"])
    if options.with_pocketbase:
        export.files[names.pocketbase] = _pocketbase_unit(loaded, names, options, export).text(
            "PocketBase as its production guide runs it (pocketbase.io/docs/going-to-production).\n"
            "Do not also install processman's hooks in this PocketBase: systemd supervises the sidecars."
        )
        wanted.insert(0, names.pocketbase)
    for group, members in groups.items():
        target = Unit()
        target.add(
            "Unit", "Description", f"Group {group} of {names.app}: systemctl restart {names.group(group)}"
        )
        target.add("Unit", "Wants", " ".join(members))
        export.files[names.group(group)] = target.text()
    target = Unit()
    target.add("Unit", "Description", f"{names.app}: every process of {loaded.path.name}")
    if wanted:
        target.add("Unit", "Wants", " ".join(wanted))
    target.add("Install", "WantedBy", "multi-user.target")
    export.files[names.target] = target.text(header.format(path=loaded.path))
    how = (
        f"systemd reads it as /etc/{names.app}/{SECRETS_FILE}: "
        f"sudo install -D -m 600 {SECRETS_FILE} /etc/{names.app}/{SECRETS_FILE}"
    )
    secrets_file(export, secrets, options, how)
    unit_files = " ".join(sorted(name for name in export.files if name != SECRETS_FILE))
    export.steps = [
        f"sudo install -m 644 {unit_files} /etc/systemd/system/",
        *(
            [f"sudo install -D -m 600 {SECRETS_FILE} /etc/{names.app}/{SECRETS_FILE}"]
            if SECRETS_FILE in export.files
            else []
        ),
        "sudo systemctl daemon-reload",
        f"sudo systemctl enable --now {names.target}",
        f"systemctl list-units '{names.app}-*'   # journalctl -u {names.app}-ID -f for a process's output",
    ]
    return export
