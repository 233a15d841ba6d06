"""``processman pocketbase install`` / ``uninstall``: the files they write, upgrade and remove."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from processman import __version__
from processman.cli import main
from processman.pocketbase.install import HOOK_FILES, default_hooks_dir, install, render, uninstall


def test_install_writes_the_hooks_with_this_interpreter_and_a_starter_config(tmp_path: Path) -> None:
    data, hooks = tmp_path / "pb_data", tmp_path / "pb_hooks"
    report = install(data, hooks)
    assert sorted(p.name for p in report.written) == sorted(HOOK_FILES)
    assert report.config_created
    assert json.loads((data / "pb_processes.json").read_text()) == []
    lib = (hooks / "processman_lib.js").read_text()
    assert f"const PYTHON = {json.dumps(sys.executable)}" in lib
    assert f'const VERSION = "{__version__}"' in lib
    main_hook = (hooks / "processman.pb.js").read_text()
    assert '/// <reference path="../pb_data/types.d.ts" />' in main_hook
    for text in (lib, main_hook):
        assert "__PYTHON__" not in text and "__VERSION__" not in text and "__TYPES__" not in text


def test_install_keeps_an_existing_config_and_upgrades_in_place(tmp_path: Path) -> None:
    data, hooks = tmp_path / "pb_data", tmp_path / "pb_hooks"
    data.mkdir()
    (data / "pb_processes.json").write_text('[{"id": "mine", "command": "true"}]')
    install(data, hooks, python="/old/python")
    again = install(data, hooks)
    assert not again.config_created
    assert (data / "pb_processes.json").read_text() == '[{"id": "mine", "command": "true"}]'
    assert [p.name for p in again.upgraded] == ["processman_lib.js"]  # only the interpreter changed
    assert json.dumps(sys.executable) in (hooks / "processman_lib.js").read_text()
    unchanged = install(data, hooks)
    assert unchanged.written == ()  # nothing rewritten: a watching PocketBase does not restart


def test_a_python_path_with_quotes_stays_a_valid_string(tmp_path: Path) -> None:
    text = render("processman_lib.js", python='C:\\a "b"\\python', types_path="x")
    assert 'const PYTHON = "C:\\\\a \\"b\\"\\\\python"' in text


def test_uninstall_removes_only_what_install_wrote(tmp_path: Path) -> None:
    data, hooks = tmp_path / "pb_data", tmp_path / "pb_hooks"
    install(data, hooks)
    (hooks / "main.pb.js").write_text("// the app's own hook")
    report = uninstall(hooks)
    assert sorted(p.name for p in report.removed) == sorted(HOOK_FILES)
    assert [p.name for p in hooks.iterdir()] == ["main.pb.js"]
    assert (data / "pb_processes.json").exists()
    (hooks / "processman.pb.js").write_text("// someone else's file with our name")
    assert [p.name for p in uninstall(hooks).kept] == ["processman.pb.js"]


def test_cli_install_and_uninstall_default_to_pocketbase_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["pocketbase", "install"])
    assert result.exit_code == 0, result.output
    assert "wrote " in result.output and "pb_processes.json (no processes yet)" in result.output
    assert (tmp_path / "pb_hooks" / "processman.pb.js").exists()
    assert default_hooks_dir(Path("pb_data")) == tmp_path / "pb_hooks"
    result = runner.invoke(main, ["pocketbase", "install"])
    assert "are up to date" in result.output
    result = runner.invoke(main, ["pocketbase", "uninstall"])
    assert result.exit_code == 0, result.output
    assert result.output.count("removed ") == 2
    assert not (tmp_path / "pb_hooks" / "processman.pb.js").exists()


def test_supervise_explains_that_the_hook_starts_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["pocketbase", "supervise"], env={"PB_HTTP": "", "PM_SECRET": ""})
    assert result.exit_code == 1
    assert "PB_HTTP, PB_DATA_DIR, PM_SECRET not set" in result.output
    assert "processman pocketbase install" in result.output
