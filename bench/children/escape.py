"""W5's hiding child: starts two descendants that hide the way real programs do, then waits to be
stopped. Each writes its pid into DIR (``<kind>-<pid>``), since neither can be found by its command line
or environment afterwards:

- ``untagged``: leaves the session and process group (``setsid``) and runs ``sleep TOKEN`` with
  ``PROCESSMAN_TAG`` removed from its environment (as ``env -u PROCESSMAN_TAG setsid -f`` does);
- ``title``: leaves the session and rewrites its process title with ``setproctitle`` (as gunicorn,
  celery and redis do), which overwrites its command line and environment.

Usage: python escape.py SLEEP TOKEN DIR
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def main() -> None:
    sleep, token, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    folder.mkdir(parents=True, exist_ok=True)
    if os.fork() == 0:
        os.setsid()
        (folder / f"untagged-{os.getpid()}").touch()
        env = {key: value for key, value in os.environ.items() if key != "PROCESSMAN_TAG"}
        os.execve(sleep, [sleep, token], env)
    if os.fork() == 0:
        import setproctitle  # the bench's Python has it (processman's test extra)

        os.setsid()
        setproctitle.setproctitle("hidden worker")
        (folder / f"title-{os.getpid()}").touch()
        while True:
            time.sleep(3600)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
