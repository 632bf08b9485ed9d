"""A clock and a sleep that only the test moves: code under test sleeps on :meth:`sleep`, and
:meth:`advance` wakes the sleepers in order of their wake-up time, letting every task run
between two wake-ups."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable


class VirtualTime:
    """Pass it as ``clock=`` (it is callable) and its :meth:`sleep` as ``sleep=``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), woken))
        await woken

    @staticmethod
    async def settle(rounds: int = 50) -> None:
        """Let every task that can run, run (none does real I/O)."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking each sleeper at its time."""
        end = self.now + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= end:
            wake, _, woken = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake)
            if not woken.done():
                woken.set_result(None)
            await self.settle()
        self.now = end
        await self.settle()

    async def until(self, check: Callable[[], bool], limit: float, step: float = 0.05) -> float:
        """Advance in ``step``s until ``check()``; returns the seconds it took. Fails after
        ``limit`` seconds."""
        started = self.now
        await self.settle()
        while not check():
            if self.now - started > limit:
                raise AssertionError(f"not within {limit:g} virtual seconds")
            await self.advance(step)
        return self.now - started
