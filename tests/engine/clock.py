"""A clock that moves only when a test moves it (trio's MockClock, for the engine's asyncio code)."""

from __future__ import annotations

import asyncio


class ManualClock:
    """``monotonic()`` and ``time()`` stand still until :meth:`advance`; ``sleep`` ends once the clock
    has been advanced past its deadline."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_800_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        entry = (self.now + seconds, asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            self._sleepers.remove(entry)

    def deadlines(self) -> list[float]:
        """How far ahead each pending sleep ends, soonest first."""
        return sorted(due - self.now for due, _ in self._sleepers)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for due, future in self._sleepers:
            if due <= self.now + 1e-9 and not future.done():
                future.set_result(None)


async def settle(rounds: int = 20) -> None:
    """Let every callback and task that is ready run (nothing here waits for real time)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
