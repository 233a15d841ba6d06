#!/usr/bin/env bash
# Installs everything the tests need (Python packages, the PocketBase binary, Chromium) and runs
# lint, types and the whole test suite. Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing chromium (Debian package) for the browser tests"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "== chromium is missing and cannot be installed here (need root and apt-get)" >&2
        exit 1
    fi
fi

# The containment tests run real daemons: Debian's redis-server and ssh-agent; the example container's
# test runs the example Node worker.
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v ssh-agent >/dev/null 2>&1 || missing="$missing openssh-client"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing$missing (Debian packages) for the containment tests"
        apt-get update -qq >/dev/null
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
        echo "== missing:$missing; the containment tests that need them are skipped" >&2
    fi
fi

# systemd-notify and systemd-analyze (Debian's systemd package) for the sd_notify and export tests; no
# systemd needs to run.
if ! command -v systemd-notify >/dev/null 2>&1 || ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing systemd-notify (Debian package systemd) for the sd_notify tests"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
    else
        echo "== systemd-notify is missing: its tests are skipped (apt-get install -y systemd)" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
echo "== installing processman and its test tools into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy (strict)"
.venv/bin/mypy
echo "== pytest"
.venv/bin/pytest "$@"

# The second pass: the tests that exercise the process backend (exits, tree scans, facts, the guardian,
# leftovers, PocketBase's parent watch), again with the portable backend that macOS and the BSDs use.
# Tests of what only Linux has are skipped with their reason (tests/conftest.py, LINUX_ONLY).
PORTABLE_TESTS=(
    tests/engine/test_portable.py
    tests/engine/test_orphans.py
    tests/engine/test_leftovers.py
    tests/engine/test_lifecycle.py
    tests/engine/test_probes.py
    tests/engine/test_resources.py
    tests/hardening/test_faults.py
    tests/pocketbase/test_lifecycle.py
    tests/pocketbase/test_supervisor.py
)
if [ "$#" -eq 0 ]; then
    echo "== pytest, portable backend (PROCESSMAN_BACKEND=portable)"
    PROCESSMAN_BACKEND=portable .venv/bin/pytest -rs "${PORTABLE_TESTS[@]}"
fi
