"""Helpers shared by the command-line client tests."""

from __future__ import annotations

import signal
import subprocess
import sys

# As a background job of a non-interactive shell starts: SIGINT (and here SIGTERM) ignored, which every
# child inherits. ``logs -f`` must still stop on them.
IGNORING_SIGNALS = ("sh", "-c", 'trap "" INT TERM; exec "$@"', "sh")


def assert_follow_shows_a_new_tick(
    env: dict[str, str], *args: str, stop: signal.Signals = signal.SIGINT
) -> None:
    """``processman logs ticker -f -n 0``, started with SIGINT and SIGTERM ignored: the first line shown
    is one the child printed after following began (``-n 0`` shows nothing old), and Ctrl+C ends it
    with 130 (SIGTERM with 143)."""
    follower = subprocess.Popen(
        [*IGNORING_SIGNALS, sys.executable, "-m", "processman", "logs", "ticker", "-f", "-n", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert follower.stdout is not None
        line = follower.stdout.readline()
        assert " ticker | tick " in line, line
        follower.send_signal(stop)
        assert follower.wait(timeout=10) == 128 + stop
    finally:
        if follower.poll() is None:
            follower.kill()
        follower.communicate()
