"""One field table: the loader, configs built in code, the JSON Schema and the reported form follow the
same rules, in the same words."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from processman import ConfigError, Probe, ProcessConfig
from processman.config import (
    FIELDS,
    PROCESS_FIELDS,
    config_to_json,
    json_schema,
    load_config,
    parse_processes,
)

# For each field: values the loader and the schema both accept, and values both refuse.
EXAMPLES: dict[str, tuple[list[Any], list[Any]]] = {
    "id": (["a", "web.1", "A-b_c", "x" * 64], ["", "-a", "a b", "a/b", "x" * 65, 5, None]),
    "group": (["ai", "Workers.2", "a-b_c"], ["", "1ai", "-a", "a:b", "a b", "x" * 65, 5, None]),
    "script": (["app.py"], ["", 5, None, ["a"], "a\0b"]),
    "command": (["true"], ["", 5, None, "a\0b"]),
    "args": ([[], ["-c", "x"]], ["x", [1], None, ["a\0"]]),
    "cwd": ([".", "sub/dir"], ["", 5, "a\0"]),
    "env": ([{}, {"A": "1", "PORT": 8000, "F": 1.5}], [[], "A=1", {"A": [1]}, {"A": None}, {"A=B": "1"}]),
    "envFile": ([".env", ["a.env", "/etc/b.env"], []], ["", [""], 5, [1], None, "a\0", {"a": 1}]),
    "interpreter": (["auto", "python3"], ["", 3]),
    "maxRetries": ([-1, 0, 10], [-2, "3", 1.5, True]),
    "backoff": (["500ms", "2s", "1m30s", "0s"], ["fast", 5, "10", "1d", "-1s", "", "5 s"]),
    "devMode": ([True, False], ["yes", 1, None]),
    "watchPaths": ([["src"]], ["src", [1]]),
    "watchDebounce": (["50ms"], [0.5]),
    "stopTimeout": (["10s"], ["ten"]),
    "stopSignal": (["SIGTERM", "QUIT", "sigint", "SIGKILL"], ["SIGSTOP", "TERMINATE", "", 15, None]),
    "pidFile": (["redis.pid", "/run/app.pid"], ["", 1, None]),
    "minUptime": (["1h"], [10]),
    "maxMemory": (
        ["512MB", "1.5GB", "300K", "1gib", 1024, " 1 MB "],
        ["lots", 0, -1, "1TB", "-5MB", 1.5, True],
    ),
    "limits": (
        [{}, {"openFiles": 1024, "cpuSeconds": 0, "coreSize": "0B"}, {"coreSize": 0}],
        [{"nofile": 1}, {"openFiles": -1}, {"openFiles": "x"}, {"coreSize": "big"}, [], 5],
    ),
    "readiness": (
        [
            {"http": "http://127.0.0.1:8000/health"},
            {"http": "https://x/", "status": 204, "interval": "200ms", "failureThreshold": 2},
            {"tcp": 5432},
            {"tcp": "db:5432", "timeout": "2s", "initialDelay": "1s"},
            {"command": ["pg_isready"]},
        ],
        [
            {},
            {"http": "ftp://x"},
            {"http": "http://x", "tcp": 1},
            {"tcp": 0},
            {"tcp": 70000},
            {"tcp": "db"},
            {"command": []},
            {"command": "pg_isready"},
            {"http": "http://x", "status": 99},
            {"http": "http://x", "failureThreshold": 0},
            {"http": "http://x", "interval": 1},
            {"http": "http://x", "retries": 3},
            "http://x",
        ],
    ),
    "liveness": ([{"tcp": 80}], [{"tcp": True}]),
    "dependsOn": (
        [{}, [], ["db"], {"db": "healthy"}, {"db": "completedSuccessfully"}, {"db": "completed"}],
        [{"db": "ready"}, "db", [1], 5],
    ),
    "instances": ([1, 1000], [0, 1001, -1, "2", 2.5]),
    "restart": (["always", "on-failure", "never"], ["sometimes", None, 1]),
    "logMaxSize": (["50MB", "0", 0, 1], ["big", -1]),
    "logBackups": ([0, 5, 100], [-1, 101, "5"]),
    "type": (["simple", "notify", "forking"], ["oneshot", "Forking", "", 1, None]),
    "watchdogSec": (["30s", "500ms"], [30, "soon", "-1s"]),
    "successExitCodes": ([[0], [0, 2, 255]], [[], 0, [256], [-1], ["0"], [True]]),
    "autostart": ([True, False], ["no", 0, None]),
    "schedule": (
        [
            "0 3 * * *",
            "*/15 * * * *",
            "@daily",
            "@hourly",
            {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "catchUp": True, "overlap": "queue"},
            {"every": "15m", "overlap": "allow", "runOnStart": True},
            {"every": "1s"},
            {"every": "1500ms"},
            {"every": "0.5s1m"},
        ],
        [
            "",
            "0 3 * *",
            "@sometimes",
            5,
            {"cron": "0 3 * * *", "every": "1m"},
            {},
            {"every": "soon"},
            {"every": "0s"},
            {"every": "500ms"},
            {"cron": "0 3 * * *", "timezone": "Mars/Olympus"},
            {"every": "1m", "overlap": "twice"},
            {"cron": "0 3 * * *", "catchup": True},
            {"cron": "0 3 * * *", "catchUp": "yes"},
            None,
        ],
    ),
    "timeout": (["30s", "1h", "10ms"], [30, "later", None, "0s", "0.0ms"]),
    "keepRuns": ([1, 100, 10000], [0, 10001, "100"]),
    "readyLogLine": (["listening on", "^ready [0-9]+$"], ["", 5, None]),
    "notify": (
        [
            [],
            [{"webhook": "https://hooks.slack.com/services/T/B/x", "format": "slack"}],
            [{"command": ["notify-send", "x"], "events": ["crashed", "failed"]}],
            [{"email": "ops@example.com", "stormRestarts": 3, "stormWindow": "1m"}],
        ],
        [
            {},
            [{}],
            [{"webhook": "ftp://x"}],
            [{"webhook": "http://x", "command": ["a"]}],
            [{"command": []}],
            [{"email": "not an address"}],
            [{"webhook": "http://x", "format": "teams"}],
            [{"command": ["a"], "format": "slack"}],
            [{"webhook": "http://x", "events": ["exploded"]}],
            [{"webhook": "http://x", "stormRestarts": 1}],
            [{"webhook": "http://x", "retries": 3}],
        ],
    ),
}


def test_every_field_has_examples() -> None:
    assert set(EXAMPLES) == set(FIELDS)


def _entry(key: str, value: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": "a", "command": "true"}
    if key == "script":
        del entry["command"]
    entry[key] = value
    return entry


@pytest.mark.parametrize("key", list(EXAMPLES))
def test_the_schema_and_the_loader_agree(key: str) -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    good, bad = EXAMPLES[key]
    for value in good:
        entry = _entry(key, value)
        assert validator.is_valid([entry]), (key, value)
        others = [{"id": "db", "command": "db"}] if key == "dependsOn" else []
        configs, problems = parse_processes([entry, *others], file="f", base_dir=Path("/srv"))
        assert configs and not problems, (key, value, problems)
    for value in bad:
        entry = _entry(key, value)
        assert not validator.is_valid([entry]), (key, value)
        configs, problems = parse_processes([entry], file="f", base_dir=Path("/srv"))
        assert not configs and problems, (key, value)


def test_the_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_the_dataclass_defaults_are_the_tables() -> None:
    defaults = {f.name: f for f in dataclasses.fields(ProcessConfig)}
    for spec in PROCESS_FIELDS:
        declared = defaults[spec.attr]
        value = (
            declared.default_factory()
            if declared.default_factory is not dataclasses.MISSING
            else declared.default
        )
        if spec.required:
            assert value is dataclasses.MISSING
        else:
            assert value == spec.default, spec.key


def test_a_config_built_in_code_follows_the_files_rules() -> None:
    with pytest.raises(ConfigError, match="instances: expected a whole number from 1 to 1000, got 1001"):
        ProcessConfig(id="x", command="y", instances=1001)
    bad: dict[str, Any] = {"max_retries": "3", "backoff": -1, "env": {"PORT": 8000}, "restart": "later"}
    with pytest.raises(ConfigError) as caught:
        ProcessConfig(id="x", command="y", **bad)
    message = str(caught.value)
    for problem in (
        'maxRetries: expected a whole number, -1 (never give up) or more, got "3"',
        "backoff: expected a duration in seconds, 0 or more, got -1",
        "env.PORT: expected a string, got 8000",
        'restart: expected "always", "on-failure" or "never", got "later"',
    ):
        assert problem in message, problem
    # A problem reads the same in code as in a file.
    _, (from_file,) = parse_processes(
        [{"id": "x", "command": "y", "maxRetries": -5}], file="f", base_dir=Path("/")
    )
    with pytest.raises(ConfigError) as code:
        ProcessConfig(id="x", command="y", max_retries=-5)
    assert from_file.message.removesuffix("; entry skipped") in str(code.value)


def test_a_probe_built_in_code_is_checked() -> None:
    with pytest.raises(ConfigError, match="http: expected a URL starting with http:// or https://"):
        Probe(kind="http", target="ftp://x")
    with pytest.raises(ConfigError) as caught:
        Probe(kind="tcp", target="db", failure_threshold=0, interval=-1)
    assert 'tcp: expected "host:port", got "db"' in str(caught.value)
    assert "failureThreshold: expected a whole number, 1 or more, got 0" in str(caught.value)
    assert "interval: expected a duration in seconds, 0 or more, got -1" in str(caught.value)
    with pytest.raises(ConfigError, match="command: expected a non-empty array of strings"):
        Probe(kind="command")
    with pytest.raises(ConfigError, match='kind: expected "http", "tcp" or "command", got "udp"'):
        Probe(kind="udp", target="x:1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="readiness: expected a Probe"):
        ProcessConfig(id="x", command="y", readiness="http://x")  # type: ignore[arg-type]
    assert Probe(kind="command", command=["true"]).command == ("true",)  # type: ignore[arg-type]


def test_absurd_numbers_in_a_file_are_problems(tmp_path: Path) -> None:
    path = tmp_path / "pb_processes.json"
    huge = "9" * 400
    path.write_text(
        json.dumps([{"id": "a", "command": "true", "maxMemory": f"{huge}GB", "backoff": f"{huge}s"}])
    )
    loaded = load_config(path)
    text = "\n".join(str(p) for p in loaded.problems)
    assert "maxMemory: expected a size" in text and "backoff: expected a duration" in text


def test_config_to_json_is_the_files_form(tmp_path: Path) -> None:
    entry = {
        "id": "api",
        "command": "serve",
        "args": ["--port", "8000"],
        "env": {"MODE": "x"},
        "backoff": "2s",
        "maxMemory": "512MB",
        "readiness": {"tcp": 8000, "interval": "200ms"},
        "dependsOn": {"db": "started"},
        "instances": 2,
    }
    configs, problems = parse_processes([entry, {"id": "db", "command": "db"}], file="f", base_dir=tmp_path)
    assert problems == ()
    shown = config_to_json(configs[1])
    assert "interpreter" in shown and shown["instance"] == 1 and shown["instances"] == 2
    assert shown["readiness"] == {
        "tcp": "127.0.0.1:8000",
        "interval": "200ms",
        "timeout": "1s",
        "failureThreshold": 3,
        "initialDelay": "0s",
    }
    assert (shown["backoff"], shown["maxMemory"], shown["cwd"]) == ("2s", "512MB", str(tmp_path))
    assert "limits" not in shown and "script" not in shown and "liveness" not in shown
    # What is shown reads back as the same config.
    again = {**{k: v for k, v in shown.items() if k not in ("instance", "cwd")}, "id": "api"}
    reread, problems = parse_processes([again, {"id": "db", "command": "db"}], file="f", base_dir=tmp_path)
    assert problems == () and reread == configs


def test_a_date_that_never_comes_is_named_as_such() -> None:
    from processman.config.schedule import cron_problem

    assert cron_problem("0 3 31 2 *") == '"0 3 31 2 *" never comes: none of its months has that day'
    assert "bad day-of-month" in (cron_problem("0 3 32 * *") or "")
    assert cron_problem("0 3 31 1,2 *") is None  # January has a 31st
