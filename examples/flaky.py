"""Crashes after a few seconds, to show backoff: watch restartCount and lastError grow."""

import random
import sys
import time

time.sleep(random.uniform(1, 4))
print("flaky: something went wrong", file=sys.stderr)
sys.exit(1)
