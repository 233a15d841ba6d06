"""Development mode: report changes under a process's watch paths, debounced. It decides nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from watchfiles import Change, DefaultFilter, awatch

logger = logging.getLogger(__name__)

NOISE_DIRS = (*DefaultFilter.ignore_dirs, "venv")
NOISE_PATTERNS = (*DefaultFilter.ignore_entity_patterns, r"\.log$")


class NoiseFilter(DefaultFilter):
    """watchfiles' defaults (.git, __pycache__, .venv, node_modules, *.pyc ...) plus venv, *.log and
    any folder given (the PocketBase data dir, processman's own state folder)."""

    def __init__(self, ignore_paths: Sequence[Path] = ()) -> None:
        super().__init__(
            ignore_dirs=NOISE_DIRS,
            ignore_entity_patterns=NOISE_PATTERNS,
            ignore_paths=[str(path) for path in ignore_paths],
        )

    def __call__(self, change: Change, path: str) -> bool:
        return bool(super().__call__(change, path))


async def watch_and_notify(
    paths: Sequence[Path],
    on_change: Callable[[set[str]], Awaitable[None]],
    stop: asyncio.Event,
    *,
    debounce: float,
    ignore_paths: Sequence[Path] = (),
) -> None:
    """Call ``on_change`` with the changed paths once per burst: the first change opens a window of
    ``debounce`` seconds, and every change inside the window is folded into one call."""
    existing = [path for path in paths if path.exists()]
    for missing in set(paths) - set(existing):
        logger.warning("watch path %s does not exist; it is not watched", missing)
    if not existing:
        return
    changed: set[str] = set()
    burst = asyncio.Event()

    async def deliver() -> None:
        while not stop.is_set():
            await burst.wait()
            await asyncio.sleep(debounce)
            batch = set(changed)
            changed.clear()
            burst.clear()
            if batch and not stop.is_set():
                # A restart only asks the process's owner, which finishes it even if this is cancelled.
                await on_change(batch)

    async with asyncio.TaskGroup() as tasks:
        deliverer = tasks.create_task(deliver(), name="watch deliver")
        try:
            async for changes in awatch(
                *existing,
                watch_filter=NoiseFilter(ignore_paths),
                stop_event=stop,
                debounce=100,
                step=20,  # each look is a wake-up of the watcher's thread: dev mode only
            ):
                changed.update(path for _, path in changes)
                burst.set()
        finally:
            deliverer.cancel()
