"""Kubernetes manifests: PocketBase as a one-replica StatefulSet with its ``pb_data`` claim and a
Service; the sidecars that serve it on its machine as native sidecars in its pod (init containers with
``restartPolicy: Always``, so ``PB_URL=http://127.0.0.1:8090`` still reaches it); entries with
``instances`` as Deployments that reach PocketBase through its Service; one-shot tasks as Jobs and
schedules as CronJobs. Secrets are referenced, never written."""

from __future__ import annotations

import os
import shlex
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cronsim import CronSim

from processman.config import LoadedConfig, Probe, ProcessConfig, mask_command
from processman.export import yamltext
from processman.export.common import (
    SECRETS_FILE,
    Export,
    ExportOptions,
    dns_name,
    max_retries_default,
    seconds,
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

LACKS = {
    "devMode": "Kubernetes does not restart a container when files change (the image is fixed)",
    "watchPaths": "Kubernetes does not watch files (devMode is lost)",
    "watchDebounce": "Kubernetes does not watch files (devMode is lost)",
    "backoff": "the kubelet's restart delay is its own (10s, doubling up to 5 minutes)",
    "minUptime": "the kubelet resets its restart delay after 10 minutes of running",
    "pidFile": "a container ends when its main process exits: run the program in the foreground",
    "limits": "Kubernetes sets no per-container ulimits: the node's container runtime does",
    "readyLogLine": "Kubernetes cannot wait for an output line",
    "keepRuns": "Kubernetes keeps Jobs by successfulJobsHistoryLimit/failedJobsHistoryLimit (3 and 1)",
    "logMaxSize": "the kubelet rotates container logs (containerLogMaxSize, 10Mi by default)",
    "logBackups": "the kubelet rotates container logs (containerLogMaxFiles, 5 by default)",
    "successExitCodes": "Kubernetes counts only exit code 0 as a success",
    "watchdogSec": "no sd_notify in Kubernetes: a liveness probe restarts a hung container",
    "notify": "Kubernetes sends no notifications: alert on pod restarts (kube-state-metrics) instead",
}
MAPPED = frozenset(
    {
        "id", "group", "script", "command", "args", "cwd", "env", "envFile", "interpreter", "maxRetries",
        "stopTimeout", "stopSignal", "maxMemory", "readiness", "liveness", "dependsOn", "instances",
        "restart", "autostart", "schedule", "timeout", "type",
    }
)  # fmt: skip
# A Job's backoffLimit where processman would retry without end: Kubernetes' own default.
_UNBOUNDED_RETRIES = 6
_OVERLAP = {"skip": "Forbid", "queue": "Forbid", "allow": "Allow"}
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class _Context:
    def __init__(self, loaded: LoadedConfig, options: ExportOptions, export: Export) -> None:
        self.build = build_context(loaded, config_entries(loaded), export)
        self.root = self.build.root
        self.options = options
        self.export = export
        self.app = dns_name(options.name)
        self.image = options.image or f"{self.app}-sidecars:latest"
        self.secret = f"{self.app}-secrets"
        self.pocketbase = f"{self.app}-pocketbase"
        self.secrets: list[tuple[ProcessConfig, list[str], list[str]]] = []
        self.env_secrets: dict[str, Path] = {}

    def env_secret(self, path: Path) -> str:
        """The Secret of an env file, one per file, shared by every process that reads it: named after
        the file's path in the application's folder (``APP-env-jobs-env`` for jobs/.env)."""
        for name, known in self.env_secrets.items():
            if known == path:
                return name
        relative = os.path.relpath(path, self.root)
        base = dns_name(self.app, "env", path.name if relative.startswith("..") else relative)
        name = base
        while name in self.env_secrets:
            name = f"{base[:58]}-{len(self.env_secrets)}"
        self.env_secrets[name] = path
        return name

    def labels(self, component: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": self.app, "app.kubernetes.io/component": component}


def probe(spec: Probe, export: Export, entry: str, key: str) -> dict[str, Any] | None:
    """A probe as Kubernetes writes it; None (with a warning) for one that holds a secret."""
    result: dict[str, Any] = {}
    if spec.kind == "http":
        url = urlsplit(spec.target)
        if url.password is not None:
            export.warn(entry, key, "the probe's URL holds a password: not exported")
            return None
        get: dict[str, Any] = {
            "path": (url.path or "/") + (f"?{url.query}" if url.query else ""),
            "port": url.port or (443 if url.scheme == "https" else 80),
            "scheme": url.scheme.upper(),
        }
        if url.hostname and url.hostname not in _LOOPBACK:
            get["host"] = url.hostname
        else:
            export.warn(
                entry, key, "the kubelet probes the pod's address: the process must listen on 0.0.0.0"
            )
        result["httpGet"] = get
    elif spec.kind == "tcp":
        host, _, port = spec.target.rpartition(":")
        socket: dict[str, Any] = {"port": int(port)}
        if host and host not in _LOOPBACK:
            socket["host"] = host
        result["tcpSocket"] = socket
    else:
        if mask_command(spec.command) != list(spec.command):
            export.warn(entry, key, "the probe's command holds a secret: not exported")
            return None
        result["exec"] = {"command": list(spec.command)}
    result.update(
        periodSeconds=seconds(spec.interval),
        timeoutSeconds=seconds(spec.timeout),
        failureThreshold=spec.failure_threshold,
    )
    if spec.initial_delay:
        result["initialDelaySeconds"] = int(spec.initial_delay)
    return result


def _container(config: ProcessConfig, ctx: _Context, *, pb_url: str | None, local: bool) -> dict[str, Any]:
    export = ctx.export
    argv = container_argv(config, ctx.root, export)
    split = split_argv(config, argv)
    names = iter(split.secrets)
    # Kubernetes expands $(VAR) in a command from the container's environment: a literal "$(" is "$$(".
    command = [word.replace("$(", "$$(") if word is not None else f"$({next(names)})" for word in split.words]
    environment = split_environment(config, export, ctx.options.environ, expand_now=True)
    ctx.secrets.append((config, [*environment.secret, *split.secrets], argv))
    env: list[dict[str, Any]] = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    if pb_url:
        env += [{"name": "PB_URL", "value": pb_url}, {"name": "PB_PORT", "value": str(PB_PORT)}]
    if local:
        env.append({"name": "PB_DATA_DIR", "value": str(PB_DATA)})
    for name in [*environment.secret, *split.secrets]:
        env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": ctx.secret, "key": name}}})
    env += [{"name": name, "value": value} for name, value in environment.plain.items()]
    container: dict[str, Any] = {
        "name": dns_name(config.entry),
        "image": ctx.image,
        "command": command,
        "workingDir": in_image(config.cwd, ctx.root, export, config.entry, "cwd"),
        "env": env,
    }
    if config.env_file:
        container["envFrom"] = [{"secretRef": {"name": ctx.env_secret(path)}} for path in config.env_file]
    if config.max_memory is not None:
        container["resources"] = {"limits": {"memory": str(config.max_memory)}}
    if config.readiness is not None and not config.is_task:
        readiness = probe(config.readiness, export, config.entry, "readiness")
        if readiness:
            container["readinessProbe"] = readiness
    if config.liveness is not None:
        liveness = probe(config.liveness, export, config.entry, "liveness")
        if liveness:
            container["livenessProbe"] = liveness
    if local:
        container["volumeMounts"] = [{"name": "pb-data", "mountPath": str(PB_DATA)}]
    if config.stop_signal != "SIGTERM":
        export.warn(
            config.entry,
            "stopSignal",
            f"Kubernetes stops a container with the image's STOPSIGNAL: add STOPSIGNAL {config.stop_signal} "
            "to the Dockerfile",
        )
    if config.type != "simple":
        export.warn(
            config.entry,
            "type",
            "Kubernetes neither reads sd_notify (type notify: give it a readiness probe) nor follows a "
            "daemon (type forking: run the program in the foreground)",
        )
    if config.instances is not None:
        export.warn(
            config.entry, "instances", "a Deployment's pods have no index: PROCESSMAN_INSTANCE is not set"
        )
    if not config.is_task:
        if config.timeout is not None:
            export.warn(config.entry, "timeout", "a kept-alive container runs without a time limit")
        if not max_retries_default(config):
            export.warn(config.entry, "maxRetries", "Kubernetes never gives up restarting a container")
    warn_lacking(config, export, LACKS)
    return container


def _metadata(name: str, ctx: _Context, config: ProcessConfig | None) -> dict[str, Any]:
    labels = ctx.labels(config.entry if config else "pocketbase")
    if config is not None and config.group:
        labels["processman.io/group"] = dns_name(config.group)
    return {"name": name, "labels": labels}


def _pod_spec(containers: list[dict[str, Any]], config: ProcessConfig, restart: str) -> dict[str, Any]:
    return {
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": seconds(config.stop_timeout),
        "containers": containers,
    }


def _period(config: ProcessConfig) -> int:
    schedule = config.schedule
    assert schedule is not None
    if schedule.every is not None:
        return seconds(schedule.every)
    runs = CronSim(str(schedule.cron), datetime(2030, 1, 1))
    first = next(runs)
    return seconds((next(runs) - first).total_seconds())


def _cron(config: ProcessConfig, export: Export) -> str:
    schedule = config.schedule
    assert schedule is not None
    if schedule.cron is not None:
        if any(mark in schedule.cron.upper() for mark in ("L", "W", "#")):
            export.warn(
                config.entry, "schedule.cron", "Kubernetes' cron has no L, W or #: rewrite the schedule"
            )
        return schedule.cron
    assert schedule.every is not None
    minutes = max(1, round(schedule.every / 60))
    if minutes < 60:
        every = min((m for m in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) if m >= minutes), default=30)
        text = "* * * * *" if every == 1 else f"*/{every} * * * *"
    else:
        hours = min((h for h in (1, 2, 3, 4, 6, 8, 12, 24) if h * 60 >= minutes), default=24)
        every = hours * 60
        text = "0 0 * * *" if hours == 24 else f"0 */{hours} * * *"
    if every * 60 != schedule.every:
        export.warn(
            config.entry, "schedule.every", f"a CronJob runs on the clock: every {every} min ({text})"
        )
    return text


def _backoff_limit(config: ProcessConfig, export: Export) -> int:
    """How many times the Job runs the pod again after a failure: processman's retries (none for
    restart "never", none for a job unless maxRetries); Kubernetes has no "without end"."""
    if config.restart == "never":
        if not max_retries_default(config):
            export.warn(config.entry, "maxRetries", 'restart is "never": the Job runs it once, no retries')
        return 0
    if config.retries >= 0:
        return config.retries
    export.warn(
        config.entry,
        "maxRetries",
        f"processman retries it without end, a Job only a set number of times: "
        f"{_UNBOUNDED_RETRIES} (backoffLimit), change it in the manifest if it needs more",
    )
    return _UNBOUNDED_RETRIES


def _job_spec(config: ProcessConfig, ctx: _Context, pb_url: str | None) -> dict[str, Any]:
    container = _container(config, ctx, pb_url=pb_url, local=False)
    spec: dict[str, Any] = {
        "backoffLimit": _backoff_limit(config, ctx.export),
        "template": {
            "metadata": {"labels": ctx.labels(config.entry)},
            "spec": _pod_spec([container], config, "Never"),
        },
    }
    if config.timeout is not None:
        spec["activeDeadlineSeconds"] = seconds(config.timeout)
    return spec


def _cronjob(config: ProcessConfig, ctx: _Context, pb_url: str | None) -> dict[str, Any]:
    schedule = config.schedule
    assert schedule is not None
    export = ctx.export
    spec: dict[str, Any] = {
        "schedule": _cron(config, export),
        "concurrencyPolicy": _OVERLAP[schedule.overlap],
        # A run that could not start in time is skipped, as processman skips missed runs, unless catchUp.
        "startingDeadlineSeconds": _period(config) if schedule.catch_up else 60,
        "jobTemplate": {"spec": _job_spec(config, ctx, pb_url)},
    }
    if schedule.timezone:
        spec["timeZone"] = schedule.timezone
    elif schedule.cron is not None:
        export.warn(
            config.entry, "schedule.timezone", "none set: the CronJob runs in the controller's zone (UTC)"
        )
    if schedule.overlap == "queue":
        export.warn(config.entry, "schedule.overlap", "a CronJob cannot queue a run: Forbid skips it instead")
    if schedule.run_on_start:
        name = dns_name(ctx.app, config.entry)
        export.warn(
            config.entry,
            "schedule.runOnStart",
            f"a CronJob does not run at once: kubectl create job --from=cronjob/{name} {name}-first",
        )
    if not config.autostart:
        spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(dns_name(ctx.app, config.entry), ctx, config),
        "spec": spec,
    }


def _job(config: ProcessConfig, ctx: _Context, pb_url: str | None) -> dict[str, Any]:
    spec = _job_spec(config, ctx, pb_url)
    if not config.autostart:
        spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(dns_name(ctx.app, config.entry), ctx, config),
        "spec": spec,
    }


def _deployment(config: ProcessConfig, ctx: _Context, pb_url: str | None) -> dict[str, Any]:
    container = _container(config, ctx, pb_url=pb_url, local=False)
    name = dns_name(ctx.app, config.entry)
    labels = ctx.labels(config.entry)
    replicas = config.instances if config.instances is not None else 1
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, ctx, config),
        "spec": {
            "replicas": replicas if config.autostart else 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": _pod_spec([container], config, "Always")},
        },
    }


def _ordered(configs: list[ProcessConfig]) -> list[ProcessConfig]:
    """Dependencies first: native sidecars start in the order they are listed."""
    done: dict[str, ProcessConfig] = {}
    by_entry = {config.entry: config for config in configs}

    def visit(config: ProcessConfig) -> None:
        if config.entry in done:
            return
        for dependency in config.depends_on:
            if dependency in by_entry:
                visit(by_entry[dependency])
        done[config.entry] = config

    for config in configs:
        visit(config)
    return list(done.values())


def _pocketbase(sidecars: list[ProcessConfig], ctx: _Context) -> list[dict[str, Any]]:
    labels = ctx.labels("pocketbase")
    init: list[dict[str, Any]] = []
    waited_healthy = {dep for c in sidecars for dep, cond in c.depends_on.items() if cond == "healthy"}
    for config in _ordered(sidecars):
        container = _container(config, ctx, pb_url=f"http://127.0.0.1:{PB_PORT}", local=True)
        container["restartPolicy"] = "Always"  # a native sidecar: started before PocketBase, kept alive
        if config.entry in waited_healthy and "readinessProbe" in container:
            # The kubelet starts the next init container once this one's startup probe passes.
            container["startupProbe"] = container["readinessProbe"]
        init.append(container)
    grace = max([seconds(config.stop_timeout) for config in sidecars] + [10])
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace,
        "containers": [
            {
                "name": "pocketbase",
                "image": f"{ctx.app}-pocketbase:latest",
                "args": ["/pb/pocketbase", "serve", f"--http=0.0.0.0:{PB_PORT}", f"--dir={PB_DATA}"],
                "ports": [{"name": "http", "containerPort": PB_PORT}],
                "readinessProbe": {"httpGet": {"path": "/api/health", "port": PB_PORT}, "periodSeconds": 5},
                "livenessProbe": {
                    "httpGet": {"path": "/api/health", "port": PB_PORT},
                    "periodSeconds": 10,
                    "failureThreshold": 6,
                },
                "volumeMounts": [{"name": "pb-data", "mountPath": str(PB_DATA)}],
            }
        ],
    }
    if init:
        pod["initContainers"] = init
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": ctx.pocketbase, "labels": labels},
        "spec": {
            "replicas": 1,  # PocketBase's SQLite has one writer: never more than one
            "serviceName": ctx.pocketbase,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "pb-data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": ctx.pocketbase, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": PB_PORT, "targetPort": PB_PORT}]},
    }
    return [statefulset, service]


def export_kubernetes(loaded: LoadedConfig, options: ExportOptions, out: Path) -> Export:
    """Manifests for every entry of ``loaded``, to be written to ``out``."""
    export = Export("kubernetes")
    ctx = _Context(loaded, options, export)
    configs = config_entries(loaded)
    pb_service_url = f"http://{ctx.pocketbase}:{PB_PORT}" if options.with_pocketbase else None
    sidecars = [
        config
        for config in configs
        if options.with_pocketbase and config.instances is None and not config.is_task and config.autostart
    ]
    sidecar_entries = {config.entry for config in sidecars}
    header = f"# Generated by processman export kubernetes from {loaded.path}\n"
    for config in configs:
        if config.entry in sidecar_entries:
            continue
        if config.is_job:
            document = _cronjob(config, ctx, pb_service_url)
        elif config.is_task:
            document = _job(config, ctx, pb_service_url)
        else:
            document = _deployment(config, ctx, pb_service_url)
        for dependency in config.depends_on:
            export.warn(
                config.entry,
                f"dependsOn.{dependency}",
                f"Kubernetes has no start order between workloads: it must retry until {dependency} is there",
            )
        export.files[f"{dns_name(config.entry)}.yaml"] = header + yamltext.dump(document)
    if options.with_pocketbase:
        for config in sidecars:
            outside = [dep for dep in config.depends_on if dep not in sidecar_entries]
            for dependency in outside:
                export.warn(
                    config.entry,
                    f"dependsOn.{dependency}",
                    f"{dependency} runs outside PocketBase's pod: no start order between them",
                )
        export.files["pocketbase.yaml"] = header + yamltext.dump_all(_pocketbase(sidecars, ctx))
    if loaded.notify:
        export.warn("", "notify", LACKS["notify"])
    secrets_file(
        export,
        ctx.secrets,
        options,
        f"kubectl create secret generic {ctx.secret} --from-env-file={SECRETS_FILE}",
        quoted=False,
    )
    steps = []
    if not options.image:
        steps.append(
            f"docker build -t {ctx.image} -f {DOCKERFILE} {shlex.quote(str(ctx.root))}"
            "   # push it where the cluster pulls"
        )
        export.files[DOCKERFILE] = sidecar_dockerfile(configs)
        export.files[DOCKERIGNORE] = dockerignore(ctx.build, configs, out.absolute())
    if options.with_pocketbase:
        export.files["Dockerfile.pocketbase"] = pocketbase_dockerfile()
        steps.append(f"docker build -t {ctx.app}-pocketbase:latest -f Dockerfile.pocketbase .")
    if SECRETS_FILE in export.files:
        steps.append(f"kubectl create secret generic {ctx.secret} --from-env-file={SECRETS_FILE}")
    for name, path in ctx.env_secrets.items():
        steps.append(f"kubectl create secret generic {name} --from-env-file={path}")
    steps += ["kubectl apply -f .", f"kubectl get pods -l app.kubernetes.io/name={ctx.app}"]
    export.steps = steps
    return export
