"""W4's child: writes LINES lines of exactly 100 bytes to stdout as fast as it can, then reports how long
that took (into REPORT) and stays alive, so no manager restarts it.

Usage: python writer.py LINES REPORT TOKEN [--exit] [--after SECONDS]

``--after`` waits that long before writing (the manager has finished starting by then).

Output is block-buffered (8 KiB, Python's default for a pipe) whatever PYTHONUNBUFFERED says, so every
manager sees the same writes. Each line is ``TOKEN NNNNNNNNN xxx...``: the harness counts distinct
line numbers in the manager's log files.
"""

from __future__ import annotations

import os
import signal
import sys
import time

LINE_BYTES = 100


def main() -> None:
    lines, report, token = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
    filler = b"x" * (LINE_BYTES - len(token) - 1 - 9 - 1 - 1)
    out = open(1, "wb", buffering=8192, closefd=False)  # noqa: SIM115 - stdout, never closed
    if "--after" in sys.argv:
        time.sleep(float(sys.argv[sys.argv.index("--after") + 1]))
    started = time.perf_counter()
    for number in range(lines):
        out.write(b"%s %09d %s\n" % (token, number, filler))
    out.flush()
    elapsed = time.perf_counter() - started
    temporary = f"{report}.tmp"
    with open(temporary, "w") as file:
        file.write(repr(elapsed))
    os.replace(temporary, report)
    if "--exit" not in sys.argv:
        while True:
            signal.pause()


if __name__ == "__main__":
    main()
