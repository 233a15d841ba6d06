"""A Compose file: a service per entry, in one image that holds the config's folder (built from a
generated Dockerfile unless ``image`` is given), and with ``with_pocketbase`` PocketBase's service with
its ``pb_data`` volume, which the sidecars reach as ``PB_URL``."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from processman.config import LoadedConfig, Probe, ProcessConfig
from processman.export import yamltext
from processman.export.common import (
    SECRETS_FILE,
    Export,
    ExportOptions,
    dns_name,
    go_duration,
    max_retries_default,
    secrets_file,
    split_argv,
    split_environment,
    warn_lacking,
)
from processman.export.common import entries as config_entries
from processman.export.images import (
    DOCKERFILE,
    DOCKERIGNORE,
    PB_DATA,
    PB_PORT,
    build_context,
    container_argv,
    dockerignore,
    in_image,
    pocketbase_dockerfile,
    sidecar_dockerfile,
)

PB_SERVICE = "pocketbase"
MANUAL_PROFILE = "manual"
# `docker compose up` starts no service of a profile it is not given: a job waits there for the host's
# scheduler, which runs it by name (`docker compose run` enables the profile of the service it names).
JOBS_PROFILE = "jobs"

LACKS = {
    "devMode": "Compose does not restart a service when its files change (docker compose watch can, with a "
    "develop section written by hand)",
    "watchPaths": "Compose does not watch files for a service (devMode is lost)",
    "watchDebounce": "Compose does not watch files for a service (devMode is lost)",
    "backoff": "Docker's restart delay is its own (100ms, doubling, reset after 10s of running)",
    "minUptime": "Docker resets its restart delay after 10s of running; the time is not configurable",
    "pidFile": "a container ends when its main process exits: run the program in the foreground",
    "liveness": "Docker does not restart an unhealthy container (Swarm does; or an autoheal container)",
    "readyLogLine": "Compose cannot wait for an output line: dependents wait for its start",
    "keepRuns": "Compose keeps no run history (docker compose logs shows the output)",
    "successExitCodes": "Docker counts only exit code 0 as a success",
    "timeout": "Compose does not limit how long a container runs",
    "watchdogSec": "no sd_notify in Compose: a healthcheck (readiness) is the way to tell it is alive",
    "notify": "Compose sends no notifications: docker events can be watched for die events",
}
MAPPED = frozenset(
    {
        "id", "group", "script", "command", "args", "cwd", "env", "envFile", "interpreter", "maxRetries",
        "stopTimeout", "stopSignal", "maxMemory", "limits", "readiness", "dependsOn", "instances", "restart",
        "autostart", "type", "logMaxSize", "logBackups", "schedule",
    }
)  # fmt: skip
_ULIMITS = {"openFiles": "nofile", "cpuSeconds": "cpu", "coreSize": "core"}


def compose_size(size: int) -> str:
    for suffix, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size % factor == 0:
            return f"{size // factor}{suffix}"
    return f"{size}b"


def _escape(value: str) -> str:
    """A literal value in a Compose file: ``$`` would be interpolated."""
    return value.replace("$", "$$")


def healthcheck(probe: Probe, export: Export, entry: str, key: str) -> dict[str, Any] | None:
    """A Compose healthcheck for a probe, run by the image's Python (or the probe's own command)."""
    if probe.kind == "http":
        code = (
            "import sys, urllib.request; "
            f"response = urllib.request.urlopen({probe.target!r}, timeout={probe.timeout}); "
            f"sys.exit(response.status != {probe.status})"
        )
        test = ["CMD", "python", "-c", code]
    elif probe.kind == "tcp":
        host, _, port = probe.target.rpartition(":")
        code = f"import socket; socket.create_connection(({host!r}, {port}), timeout={probe.timeout}).close()"
        test = ["CMD", "python", "-c", code]
    else:
        test = ["CMD", *probe.command]
    if any(word != export_safe for word, export_safe in zip(test, _masked(test), strict=True)):
        export.warn(entry, key, "the probe holds a secret (a password in its URL or command): not exported")
        return None
    check: dict[str, Any] = {
        "test": [_escape(word) for word in test],
        "interval": go_duration(probe.interval),
        "timeout": go_duration(probe.timeout),
        "retries": probe.failure_threshold,
    }
    if probe.initial_delay:
        check["start_period"] = go_duration(probe.initial_delay)
    return check


def _masked(words: list[str]) -> list[str]:
    from processman.config import mask_command

    return mask_command(words)


def _command(argv: list[str | None], secrets: list[str]) -> tuple[list[str] | None, list[str] | None]:
    """``command`` as a list, or, when secret arguments come from the environment, a shell that puts
    them in: (entrypoint, command)."""
    if not secrets:
        return None, [_escape(word or "") for word in argv]
    names = iter(secrets)
    words = [shlex.quote(word) if word is not None else f'"${next(names)}"' for word in argv]
    return ["/bin/sh", "-c"], [_escape("exec " + " ".join(words))]


def _service(
    config: ProcessConfig,
    root: Path,
    out: Path,
    options: ExportOptions,
    export: Export,
    by_entry: dict[str, ProcessConfig],
    secrets: list[tuple[ProcessConfig, list[str], list[str]]],
) -> dict[str, Any]:
    service: dict[str, Any] = {}
    if options.image:
        service["image"] = options.image
    else:
        # Paths in a Compose file are relative to its folder: the context is the application's folder,
        # the Dockerfile (and its ignore file) is written beside the Compose file.
        service["image"] = f"{dns_name(options.name)}-sidecars"
        service["build"] = {
            "context": os.path.relpath(root, out),
            "dockerfile": os.path.relpath(out / DOCKERFILE, root),
        }
    argv = container_argv(config, root, export)
    split = split_argv(config, argv)
    entrypoint, command = _command(split.words, split.secrets)
    if entrypoint:
        service["entrypoint"] = entrypoint
    service["command"] = command
    service["working_dir"] = in_image(config.cwd, root, export, config.entry, "cwd")
    environment = split_environment(config, export, options.environ, expand_now=False)
    env: dict[str, str] = {"PYTHONUNBUFFERED": "1"}
    if options.with_pocketbase:
        env.update(PB_URL=f"http://{PB_SERVICE}:{PB_PORT}", PB_PORT=str(PB_PORT), PB_DATA_DIR=str(PB_DATA))
        service["volumes"] = [f"pb_data:{PB_DATA}"]
    # Compose expands ${VAR} in the file from its shell and .env, as processman does from its own.
    env.update(environment.plain)
    service["environment"] = env
    env_files = [os.path.relpath(path, out) for path in config.env_file]
    secret_names = [*environment.secret, *split.secrets]
    secrets.append((config, secret_names, argv))
    if secret_names:
        env_files.append(SECRETS_FILE)
    if env_files:
        service["env_file"] = env_files
    restart = {"always": "unless-stopped", "on-failure": "on-failure", "never": "no"}[config.restart]
    if config.is_job:
        restart = "no"
    elif config.retries >= 0 and config.restart != "never":
        if config.restart == "always":
            export.warn(
                config.entry,
                "maxRetries",
                "Docker counts retries for restart on-failure only: restart becomes on-failure "
                f"with {config.retries} retries (an exit 0 is not restarted)",
            )
        restart = f"on-failure:{config.retries}"
    elif not max_retries_default(config) and config.restart == "never":
        export.warn(config.entry, "maxRetries", "restart is never: Docker makes no retries")
    service["restart"] = restart
    if config.type != "simple":
        export.warn(
            config.entry,
            "type",
            "Docker neither reads sd_notify (type notify: give it a readiness probe) nor follows a "
            "daemon (type forking: run the program in the foreground)",
        )
    if config.readiness is not None:
        check = healthcheck(config.readiness, export, config.entry, "readiness")
        if check is not None:
            service["healthcheck"] = check
    depends: dict[str, dict[str, Any]] = {}
    if options.with_pocketbase:
        depends[PB_SERVICE] = {"condition": "service_healthy"}
    for dependency, condition in config.depends_on.items():
        target = by_entry[dependency]
        name = dns_name(dependency)
        if target.is_job and not config.is_job:
            export.warn(
                config.entry,
                f"dependsOn.{dependency}",
                f'{dependency} is a job, in the profile "{JOBS_PROFILE}" that `docker compose up` does not '
                "start: this service starts without waiting for it",
            )
            continue
        if condition == "healthy" and target.readiness is not None:
            depends[name] = {"condition": "service_healthy"}
        elif condition in ("completed", "completedSuccessfully"):
            if condition == "completed":
                export.warn(
                    config.entry,
                    f"dependsOn.{dependency}",
                    "Compose waits for a successful completion (exit 0): a failed run keeps it from starting",
                )
            depends[name] = {"condition": "service_completed_successfully"}
        else:
            if condition != "started":
                export.warn(
                    config.entry,
                    f"dependsOn.{dependency}",
                    f'"{condition}" without a readiness probe on {dependency}: '
                    "Compose waits for its start only",
                )
            depends[name] = {"condition": "service_started"}
    if depends:
        service["depends_on"] = depends
    deploy: dict[str, Any] = {}
    if config.instances is not None:
        deploy["replicas"] = config.instances
        export.warn(
            config.entry,
            "instances",
            "Compose gives its replicas no index: PROCESSMAN_INSTANCE is not set (the hostname differs)",
        )
    if config.max_memory is not None:
        deploy["resources"] = {"limits": {"memory": compose_size(config.max_memory)}}
    if deploy:
        service["deploy"] = deploy
    service["stop_grace_period"] = go_duration(config.stop_timeout)
    service["stop_signal"] = config.stop_signal
    if config.limits:
        ulimits: dict[str, Any] = {}
        for limit, name in _ULIMITS.items():
            if limit in config.limits:
                ulimits[name] = {"soft": config.limits[limit], "hard": config.limits[limit]}
        service["ulimits"] = ulimits
    options_log: dict[str, Any] = {"max-file": str(config.log_backups + 1)}
    if config.log_max_size:
        options_log["max-size"] = compose_size(config.log_max_size)
    service["logging"] = {"driver": "json-file", "options": options_log}
    if config.group:
        service["labels"] = {"processman.group": config.group}
    if config.is_job:
        service["profiles"] = [JOBS_PROFILE]
        export.warn(config.entry, "schedule", _job_advice(config, out))
    elif not config.autostart:
        service["profiles"] = [MANUAL_PROFILE]
    warn_lacking(config, export, LACKS)
    return service


def run_job(config: ProcessConfig, out: Path) -> str:
    """The command the host's scheduler runs for a job; with the stack up, ``--no-deps`` leaves the
    other services as they are (a finished one-shot task would otherwise run again)."""
    return f"cd {shlex.quote(str(out))} && docker compose run --rm --no-deps {dns_name(config.entry)}"


def _when(config: ProcessConfig) -> str:
    schedule = config.schedule
    assert schedule is not None
    if schedule.cron is not None:
        zone = schedule.timezone or "the machine's time zone"
        return f'at "{schedule.cron}" ({zone})'
    assert schedule.every is not None
    return f"every {go_duration(schedule.every)}"


def _job_advice(config: ProcessConfig, out: Path) -> str:
    return (
        f'Compose has no scheduler: the job is in the profile "{JOBS_PROFILE}", which `docker compose up` '
        f"does not start. Run it {_when(config)} from the host's cron or a systemd timer: "
        f"`{run_job(config, out)}` (or export to systemd or kubernetes, which schedule it)"
    )


def export_compose(loaded: LoadedConfig, options: ExportOptions, out: Path) -> Export:
    """``compose.yaml`` (and Dockerfiles) for every entry of ``loaded``, to be written to ``out``."""
    export = Export("compose")
    out = out.absolute()
    configs = config_entries(loaded)
    context = build_context(loaded, configs, export)
    root = context.root
    by_entry = {config.entry: config for config in configs}
    services: dict[str, Any] = {}
    secrets: list[tuple[ProcessConfig, list[str], list[str]]] = []
    if options.with_pocketbase:
        services[PB_SERVICE] = {
            "image": f"{dns_name(options.name)}-pocketbase",
            "build": {"context": ".", "dockerfile": "Dockerfile.pocketbase"},
            "restart": "unless-stopped",
            "ports": [f"127.0.0.1:{PB_PORT}:{PB_PORT}"],
            "volumes": [f"pb_data:{PB_DATA}"],
            "healthcheck": {
                "test": ["CMD", "wget", "-q", "--spider", f"http://127.0.0.1:{PB_PORT}/api/health"],
                "interval": "5s",
                "timeout": "3s",
                "retries": 5,
            },
        }
        export.files["Dockerfile.pocketbase"] = pocketbase_dockerfile()
    for config in configs:
        services[dns_name(config.entry)] = _service(config, root, out, options, export, by_entry, secrets)
    if loaded.notify:
        export.warn("", "notify", LACKS["notify"])
    document: dict[str, Any] = {"name": dns_name(options.name), "services": services}
    if options.with_pocketbase:
        document["volumes"] = {"pb_data": {}}
    if not options.image:
        export.files[DOCKERFILE] = sidecar_dockerfile(configs)
        export.files[DOCKERIGNORE] = dockerignore(context, configs, out)
    header = f"# Generated by processman export compose from {loaded.path}\n"
    export.files["compose.yaml"] = header + yamltext.dump(document)
    secrets_file(export, secrets, options, "docker compose reads it beside compose.yaml (env_file)")
    manual = [name for name, service in services.items() if service.get("profiles") == [MANUAL_PROFILE]]
    jobs = [config for config in configs if config.is_job]
    export.steps = [
        f"cd {out}",
        "docker compose up -d --build",
        "docker compose ps    # docker compose logs -f SERVICE for a process's output",
        *(
            [f"docker compose up -d {' '.join(manual)}   # autostart false: started by name"]
            if manual
            else []
        ),
        *[f"{run_job(config, out)}   # {config.entry}: from cron, {_when(config)}" for config in jobs],
    ]
    return export
