"""The manager's environment as children start from it: decoded once, and a change is still seen."""

from __future__ import annotations

import pytest

from processman.environment import os_environ


def test_os_environ_is_shared_until_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    first = os_environ()
    assert first is os_environ()  # no new strings for each child
    monkeypatch.setenv("PROCESSMAN_TEST_VALUE", "one")
    changed = os_environ()
    assert changed is not first and changed["PROCESSMAN_TEST_VALUE"] == "one"
    monkeypatch.setenv("PROCESSMAN_TEST_VALUE", "two")
    assert os_environ()["PROCESSMAN_TEST_VALUE"] == "two"
    monkeypatch.delenv("PROCESSMAN_TEST_VALUE")
    assert "PROCESSMAN_TEST_VALUE" not in os_environ()
