"""Helpers shared by the command-line client tests."""

from __future__ import annotations

import signal
import subprocess
import sys


def assert_follow_shows_a_new_tick(env: dict[str, str], *args: str) -> None:
    """``processman logs ticker -f -n 0``: the first line shown is one the child printed after following
    began (``-n 0`` shows nothing old), and Ctrl+C ends it with 130."""
    follower = subprocess.Popen(
        [sys.executable, "-m", "processman", "logs", "ticker", "-f", "-n", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert follower.stdout is not None
        line = follower.stdout.readline()
        assert " ticker | tick " in line, line
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 130
    finally:
        if follower.poll() is None:
            follower.kill()
        follower.communicate()
