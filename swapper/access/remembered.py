"""What the source-access check remembers as public: the protocol, and the in-memory copy.

:class:`PublicAnswers` is what the access check (:mod:`swapper.access.checker`) uses; nothing
on the admission path does I/O. :class:`MemoryPublicAnswers` keeps the answers in this process
only; :class:`swapper.kube.remembered.ConfigMapPublicAnswers` keeps them in a ConfigMap too,
shared by replicas and kept across restarts (its module docstring says how).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

MAX_ENTRIES = 5_000
REFRESH = 600.0

Stamps = dict[str, int]


@runtime_checkable
class PublicAnswers(Protocol):
    """Repositories known to be readable anonymously, and since when (unix seconds)."""

    def confirmed_at(self, repository: str) -> float | None:
        """When ``repository`` was last confirmed public, or None (in memory, no I/O)."""
        ...

    def remember(self, repository: str) -> None:
        """``repository`` was just confirmed public (no I/O: queued)."""
        ...

    def forget(self, repository: str) -> None:
        """The source says ``repository`` is not public any more (no I/O: queued)."""
        ...

    def ready(self) -> bool:
        """Whether the start-up load was tried (never blocks on a failure)."""
        ...

    async def run(self) -> None:
        """Background task for the app's lifespan: load, follow, write; until cancelled."""
        ...


class _Answers:
    """The in-memory copy both implementations read: repository -> unix seconds."""

    def __init__(self, max_entries: int, refresh: float, clock: Callable[[], float]) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.refresh = refresh
        self.clock = clock
        self._lock = threading.Lock()  # the watch thread changes the copy too
        self._view: Stamps = {}

    def confirmed_at(self, repository: str) -> float | None:
        with self._lock:
            stamp = self._view.get(repository)
        return None if stamp is None else float(stamp)

    def remember(self, repository: str) -> None:
        now = int(self.clock())
        with self._lock:
            stamp = self._view.get(repository)
            if stamp is not None and now - stamp < self.refresh:
                return  # confirmed recently enough: nothing to change, nothing to write
            self._view[repository] = now
            self._queued(repository, now)
            while len(self._view) > self.max_entries:
                oldest = min(self._view.items(), key=lambda item: (item[1], item[0]))[0]
                del self._view[oldest]
                self._dropped(oldest)

    def forget(self, repository: str) -> None:
        now = int(self.clock())
        with self._lock:
            self._view.pop(repository, None)
            self._unqueued(repository, now)

    # Hooks, called with the lock held.
    def _queued(self, repository: str, stamp: int) -> None:
        pass

    def _unqueued(self, repository: str, stamp: int) -> None:
        pass

    def _dropped(self, repository: str) -> None:
        pass


class MemoryPublicAnswers(_Answers):
    """Public answers in this process only: lost on restart, not shared with other replicas."""

    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        *,
        refresh: float = REFRESH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(max_entries, refresh, clock)

    def ready(self) -> bool:
        return True

    async def run(self) -> None:
        await asyncio.Event().wait()
