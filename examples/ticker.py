"""Prints a line every two seconds, and where its PocketBase is."""

import os
import time

print(f"{os.environ.get('GREETING', 'hello')}; PocketBase at {os.environ.get('PB_URL', '(none)')}")
n = 0
while True:
    n += 1
    print(f"tick {n}")
    time.sleep(2)
