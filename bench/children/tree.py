"""W5's child: starts a grandchild (``sleep TOKEN``, same process group) and a double-forked daemon
(``sleep TOKEN`` in a new session, re-parented away from the child), then waits to be stopped.

Usage: python tree.py SLEEP TOKEN
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main() -> None:
    sleep, token = sys.argv[1], sys.argv[2]
    subprocess.Popen([sleep, token])
    first = os.fork()
    if first == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sleep, [sleep, token])
        os._exit(0)
    os.waitpid(first, 0)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
