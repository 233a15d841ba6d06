"""Embedding processman in an asyncio program: register processes in code, watch their events.

Run it: python examples/library.py
"""

import asyncio
import sys

from processman import LogLines, ProcessConfig, ProcessManager, StatusChanged


async def main() -> None:
    worker = ProcessConfig(
        id="worker",
        command=sys.executable,
        args=("-c", "import time\nfor i in range(3):\n    print('working', i)\n    time.sleep(0.2)"),
        backoff=0.5,
        max_retries=1,
    )
    manager = ProcessManager([worker])
    with manager.subscribe() as events:
        async with manager:  # starts every registered process; leaving the block stops every tree
            async for event in events:
                if isinstance(event, LogLines):
                    for line in event.lines:
                        print(f"[{event.process_id}] {line}")
                elif isinstance(event, StatusChanged):
                    print(f"[{event.process_id}] {event.previous} -> {event.status}")
                    if event.status == "failed":
                        break
    state = manager.state("worker")
    print(f"done: {state.restart_count} restart(s), last error: {state.last_error}")


if __name__ == "__main__":
    asyncio.run(main())
