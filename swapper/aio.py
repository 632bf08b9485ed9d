"""Two async building blocks that every cache in swapper uses: one lookup per key in flight,
and a map that is bounded in size and in time.

- :class:`SingleFlight` runs one call per key; every concurrent caller for that key awaits the
  same task. A caller that is cancelled (its admission timed out, its client went away) stops
  waiting, and only it: the call goes on for the others, and its result is there for whoever
  asks next. Nothing is left behind: the key is forgotten when the call ends, and an error no
  one waited for is still retrieved (no "exception was never retrieved" noise).
- :class:`TTLMap` keeps at most ``maxsize`` entries, the least recently used dropped first,
  each with its own expiry. An expired entry is not returned by :meth:`TTLMap.get`, but is
  still there for :meth:`TTLMap.entry` until evicted: the last answer, however old, is what a
  cache falls back on while its backend is down.

Imported by everything that caches; imports nothing of swapper.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """At most one ``call()`` in flight per key (see the module docstring)."""

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, key: object) -> bool:
        return key in self._tasks

    def keys(self) -> list[K]:
        """The keys with a call in flight now (a snapshot)."""
        return list(self._tasks)

    def get(self, key: K) -> asyncio.Task[V] | None:
        """The task in flight for ``key``, if any (await it through ``asyncio.shield``)."""
        return self._tasks.get(key)

    def start(self, key: K, call: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        """The task for ``key``: the one in flight, or a new one running ``call()``."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._done(key, done))
        return task

    async def do(self, key: K, call: Callable[[], Awaitable[V]]) -> V:
        """``call()``'s result, shared with every concurrent caller for ``key``."""
        # shield: this caller's cancellation ends its own wait, not the call the others share.
        return await asyncio.shield(self.start(key, call))

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved, even when every waiter has gone

    async def aclose(self) -> None:
        """Cancel every call in flight and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class TTLMap(Generic[K, V]):
    """A dict bounded in size (LRU) whose entries each expire (see the module docstring)."""

    def __init__(self, maxsize: int, clock: Callable[[], float] = time.monotonic) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.clock = clock
        self.evictions = 0  # entries dropped to stay within maxsize
        self._items: OrderedDict[K, tuple[V, float]] = OrderedDict()  # value, expires at

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        """Whether a fresh (unexpired) entry is held for ``key``."""
        found = self._items.get(key)  # type: ignore[arg-type]
        return found is not None and self.clock() < found[1]

    def set(self, key: K, value: V, ttl: float) -> None:
        """Hold ``value`` for ``ttl`` seconds (then it is only stale)."""
        self._items[key] = (value, self.clock() + ttl)
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)
            self.evictions += 1

    def get(self, key: K) -> V | None:
        """The fresh value, or None (missing or expired)."""
        found = self._items.get(key)
        if found is None or self.clock() >= found[1]:
            return None
        self._items.move_to_end(key)
        return found[0]

    def entry(self, key: K) -> tuple[V, bool] | None:
        """``(value, fresh)`` even when expired; None when never held or evicted."""
        found = self._items.get(key)
        if found is None:
            return None
        self._items.move_to_end(key)
        return found[0], self.clock() < found[1]

    def pop(self, key: K) -> V | None:
        found = self._items.pop(key, None)
        return None if found is None else found[0]

    def expires_at(self, key: K) -> float | None:
        found = self._items.get(key)
        return None if found is None else found[1]

    def clear(self) -> None:
        self._items.clear()
