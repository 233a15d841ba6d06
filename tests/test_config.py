"""Seed User Story 5 and SPEC 1: loading, defaults, and errors naming file, field, value, expectation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from processman import ConfigError, ProcessConfig, load_config
from processman.config import config_to_json, json_schema
from processman.durations import format_duration, parse_duration

ALL_BAD = [
    {"script": "a.py"},  # 0: no id
    {"id": "dup", "command": "true"},  # 1: fine
    {"id": "dup", "command": "true"},  # 2: duplicate
    {"id": "neither"},  # 3
    {"id": "both", "script": "a.py", "command": "true"},  # 4
    {"id": "slow", "command": "true", "backoff": "fast"},  # 5
    {"id": "typed", "command": "true", "maxRetries": "3", "devMode": "yes", "args": "x"},  # 6
    {"id": "bad id!", "command": "true"},  # 7
    "not an object",  # 8
    {"id": "typo", "command": "true", "maxRetry": 3},  # 9: warning only
    {"id": "neg", "command": "true", "maxRetries": -2, "env": {"A": ["x"]}},  # 10
]


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "pb_processes.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def test_valid_file_with_defaults(tmp_path: Path) -> None:
    # US5 scenario 1.
    path = _write(tmp_path, [{"id": "agent", "script": "agent.py", "cwd": "agents", "env": {"PORT": 8000}}])
    loaded = load_config(path)
    assert loaded.problems == ()
    (agent,) = loaded.processes
    assert agent.cwd == tmp_path / "agents"  # relative to the config file's folder
    assert (agent.max_retries, agent.backoff, agent.stop_timeout, agent.interpreter) == (
        -1,
        1.0,
        10.0,
        "auto",
    )
    assert agent.env == {"PORT": "8000"}
    assert agent.args == () and agent.watch_paths == ()


def test_object_form_and_dev_mode_default_watch_path(tmp_path: Path) -> None:
    path = _write(tmp_path, {"processes": [{"id": "w", "command": "node", "devMode": True}]})
    (worker,) = load_config(path).processes
    assert worker.watch_paths == (".",)


def test_missing_file_is_not_an_error(tmp_path: Path) -> None:
    # US5 scenario 2.
    loaded = load_config(tmp_path / "nope.json")
    assert not loaded.exists and loaded.processes == () and loaded.problems == ()


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    # US5 scenario 3.
    path = tmp_path / "pb_processes.json"
    path.write_text('[\n  {"id": "a",\n   "command": "true",,}\n]')
    loaded = load_config(path)
    (problem,) = loaded.problems
    assert (problem.line, problem.column) == (3, 22)
    assert str(problem).startswith(f"{path}: line 3 column 22: invalid JSON")


def test_every_kind_of_invalid_entry_is_reported_and_valid_ones_survive(tmp_path: Path) -> None:
    loaded = load_config(_write(tmp_path, ALL_BAD))
    assert [p.id for p in loaded.processes] == ["dup", "typo"]
    text = "\n".join(str(p) for p in loaded.problems)
    expected = [
        "[0]: id: required field is missing",
        '[2] (id "dup"): id: duplicate id "dup" (first used by entry [1])',
        '[3] (id "neither"): script/command: one of them is required',
        '[4] (id "both"): script/command: set only one of them, not both',
        '[5] (id "slow"): backoff: expected a duration like "500ms", "2s" or "1m", got "fast"',
        '[6] (id "typed"): args: expected an array of strings, got "x"',
        '[6] (id "typed"): maxRetries: expected a whole number, -1 (never give up) or more, got "3"',
        '[6] (id "typed"): devMode: expected true or false, got "yes"',
        '[7] (id "bad id!"): id: expected letters, digits',
        '[8]: entry: expected an object, got "not an object"',
        '[9] (id "typo"): unknown field "maxRetry" ignored; did you mean "maxRetries"?',
        '[10] (id "neg"): env.A: expected a string, got an array',
        '[10] (id "neg"): maxRetries: expected a whole number, -1 (never give up) or more, got -2',
    ]
    for fragment in expected:
        assert fragment in text, fragment
    assert all(str(tmp_path) in str(p) for p in loaded.problems)
    assert [p.severity for p in loaded.problems].count("warning") == 1


def test_top_level_of_the_wrong_shape(tmp_path: Path) -> None:
    (problem,) = load_config(_write(tmp_path, {"id": "a"})).problems
    assert 'expected an array of processes or {"processes": [...]}, got an object' in str(problem)


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "pb_processes.json"
    folder.mkdir()  # a folder where the file should be: unreadable even for root
    (problem,) = load_config(folder).problems
    assert "cannot be read" in str(problem)


def test_code_registration_validates_too() -> None:
    with pytest.raises(ConfigError, match="script/command: one of them is required"):
        ProcessConfig(id="x")
    with pytest.raises(ConfigError, match="id: expected letters"):
        ProcessConfig(id="a/b", command="true")
    with pytest.raises(
        ConfigError, match=r"maxRetries: expected a whole number, -1 \(never give up\) or more"
    ):
        ProcessConfig(id="a", command="true", max_retries=-5)


def test_durations() -> None:
    assert [parse_duration(t) for t in ("500ms", "2s", "1m", "1m30s", "1.5s", "1h")] == [
        0.5,
        2,
        60,
        90,
        1.5,
        3600,
    ]
    for bad in ("", "fast", "10", "1d", "-1s", "s"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)
    assert [format_duration(s) for s in (0.5, 0, 59, 9015)] == ["500ms", "0s", "59s", "2h30m15s"]


def test_schema_accepts_a_valid_file_and_rejects_a_typo() -> None:
    schema = json_schema()
    jsonschema.validate([{"id": "a", "script": "a.py", "backoff": "2s"}], schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{"id": "a", "script": "a.py", "maxRetry": 3}], schema)


def _processman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processman", *args], capture_output=True, text=True, timeout=30
    )


def test_check_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    result = _processman("check", "--config", str(_write(tmp_path, ALL_BAD)))
    assert result.returncode == 1
    assert result.stderr.count("error: ") == 12 and result.stderr.count("warning: ") == 1
    assert "12 error(s), 1 warning(s)" in result.stderr


def test_check_ok_and_syntax_error(tmp_path: Path) -> None:
    ok = _processman("check", "--config", str(_write(tmp_path, [{"id": "a", "command": "true"}])))
    assert (ok.returncode, ok.stdout.strip()) == (0, "1 processes OK")
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    result = _processman("check", "--config", str(broken))
    assert result.returncode == 1 and "line 1 column 3: invalid JSON" in result.stderr


def test_schema_command_prints_json() -> None:
    result = _processman("schema")
    assert json.loads(result.stdout)["title"].startswith("processman configuration")


def test_v2_fields_parse_and_report(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {"id": "db", "command": "true", "readiness": {"tcp": 5432, "interval": "200ms"}},
            {
                "id": "api",
                "command": "true",
                "maxMemory": "512MB",
                "limits": {"openFiles": 1024, "coreSize": "0B"},
                "liveness": {"http": "http://127.0.0.1:8000/health", "failureThreshold": 2},
                "dependsOn": {"db": "healthy"},
                "instances": 2,
            },
        ],
    )
    loaded = load_config(path)
    assert loaded.problems == ()
    db, api0, api1 = loaded.processes
    assert db.readiness is not None and db.readiness.target == "127.0.0.1:5432"
    assert db.readiness.interval == 0.2
    assert (api0.id, api0.instance, api1.id, api1.instance) == ("api:0", 0, "api:1", 1)
    assert api0.entry == "api" and api0.max_memory == 512 * 1024 * 1024
    assert api0.limits == {"openFiles": 1024, "coreSize": 0}
    reported = config_to_json(api1)
    assert reported["maxMemory"] == "512MB" and reported["dependsOn"] == {"db": "healthy"}
    assert reported["liveness"]["failureThreshold"] == 2 and reported["instance"] == 1


def test_dependency_cycles_and_unknown_dependencies_are_named(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {"id": "a", "command": "true", "dependsOn": ["b"]},
            {"id": "b", "command": "true", "dependsOn": {"a": "started"}},
            {"id": "c", "command": "true", "dependsOn": ["ghost"]},
            {"id": "d", "command": "true", "dependsOn": {"c": "completed"}},
            {"id": "e", "command": "true", "dependsOn": {"x": "ready"}, "maxMemory": "lots"},
            {"id": "f", "command": "true", "dependsOn": ["e"]},
            {"id": "ok", "command": "true"},
        ],
    )
    loaded = load_config(path)
    assert [p.id for p in loaded.processes] == ["ok"]
    text = "\n".join(str(p) for p in loaded.problems)
    assert "dependsOn: dependency cycle a -> b -> a" in text
    assert 'dependsOn: no entry has id "ghost"' in text
    assert '(id "d"): dependsOn: depends on an entry with problems' in text
    assert '(id "f"): dependsOn: entry "e" has problems of its own (above)' in text
    assert (
        'dependsOn.x: expected "started", "healthy", "completed", "completedSuccessfully" or "logReady", '
        'got "ready"' in text
    )
    assert 'maxMemory: expected a size like "512MB" or "1GB", got "lots"' in text
    result = _processman("check", "--config", str(path))
    assert result.returncode == 1 and "dependency cycle a -> b -> a" in result.stderr


def test_log_rotation_and_watch_window_fields(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {"id": "plain", "command": "true"},
            {"id": "tuned", "command": "true", "logMaxSize": "1MB", "logBackups": 0, "watchDebounce": "50ms"},
            {"id": "unbounded", "command": "true", "logMaxSize": 0},
            {"id": "bad", "command": "true", "logMaxSize": "big", "logBackups": -1, "watchDebounce": 5},
        ],
    )
    loaded = load_config(path)
    plain, tuned, unbounded = loaded.processes
    # Defaults hold a 50 MB burst whole, like supervisord's 50 MB files.
    assert (plain.log_max_size, plain.log_backups, plain.watch_debounce) == (50 * 1024 * 1024, 5, 0.5)
    assert (tuned.log_max_size, tuned.log_backups, tuned.watch_debounce) == (1024 * 1024, 0, 0.05)
    assert unbounded.log_max_size == 0
    reported = config_to_json(tuned)
    assert (reported["logMaxSize"], reported["logBackups"], reported["watchDebounce"]) == ("1MB", 0, "50ms")
    assert config_to_json(unbounded)["logMaxSize"] == "0"
    text = "\n".join(str(p) for p in loaded.problems)
    assert 'logMaxSize: expected a size like "512MB" or "1GB" (0: never), got "big"' in text
    assert "logBackups: expected a whole number from 0 to 100, got -1" in text
    assert 'watchDebounce: expected a duration like "500ms", "2s" or "1m", got 5' in text
    jsonschema.validate(json.loads(path.read_text())[:3], json_schema())
    with pytest.raises(ConfigError, match="logBackups: expected a whole number from 0 to 100, got 101"):
        ProcessConfig(id="x", command="true", log_backups=101)


def test_a_misspelled_schedule_field_gets_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "pb_processes.json"
    path.write_text(
        json.dumps([{"id": "j", "command": "true", "schedule": {"cron": "0 3 * * *", "catchup": True}}])
    )
    text = "\n".join(str(p) for p in load_config(path).problems)
    assert 'schedule.catchup: unknown schedule field; did you mean "catchUp"?' in text


def test_log_ready_on_a_task_is_a_warning_that_points_to_completed(tmp_path: Path) -> None:
    path = tmp_path / "pb_processes.json"
    entries = [
        {"id": "restore", "command": "true", "restart": "never", "readyLogLine": "restored"},
        {"id": "api", "command": "true", "dependsOn": {"restore": "logReady"}},
    ]
    path.write_text(json.dumps(entries))
    loaded = load_config(path)
    assert [p.id for p in loaded.processes] == ["restore", "api"]
    (warning,) = [p for p in loaded.problems if p.severity == "warning"]
    assert '"logReady" holds only while "restore" runs' in warning.message
