"""Development mode: report changes under a process's watch paths, debounced. It decides nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from watchfiles import Change, DefaultFilter, awatch

logger = logging.getLogger(__name__)

DEBOUNCE = 0.5
NOISE_DIRS = (*DefaultFilter.ignore_dirs, "venv")
NOISE_PATTERNS = (*DefaultFilter.ignore_entity_patterns, r"\.log$")


class _OnlyFile:
    def __init__(self, path: Path) -> None:
        self._path = str(path)

    def __call__(self, change: Change, path: str) -> bool:
        return path == self._path


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
    ignore_paths: Sequence[Path] = (),
    debounce: float = DEBOUNCE,
    only_file: Path | None = None,
    poll: float = 0.02,
) -> None:
    """Call ``on_change`` with the changed paths once per burst: the first change opens a window of
    ``debounce`` seconds, and every change inside the window is folded into one call.

    With ``only_file``, its folder is watched (not recursively; editors save by renaming a new file
    over the old one, which a watch on the file itself would miss) for changes to that file alone.

    ``poll`` is how often the watcher's thread looks for news: each look is a wake-up, even when nothing
    changes (50 a second cost about 0.4 % of a core), so a watch where a little delay does not matter
    (the config file, watched in production too) looks less often than dev mode's."""
    if only_file is not None:
        paths = [only_file.parent]
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
                await asyncio.shield(on_change(batch))

    watch_filter = NoiseFilter(ignore_paths) if only_file is None else _OnlyFile(only_file)
    deliverer = asyncio.create_task(deliver(), name="watch deliver")
    try:
        async for changes in awatch(
            *existing,
            watch_filter=watch_filter,
            stop_event=stop,
            debounce=100,
            step=round(poll * 1000),
            recursive=only_file is None,
        ):
            changed.update(path for _, path in changes)
            burst.set()
    finally:
        deliverer.cancel()
        await asyncio.gather(deliverer, return_exceptions=True)
