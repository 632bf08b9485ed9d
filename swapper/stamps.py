"""A bounded map of names to the unix second each was last confirmed, safe across threads.

What the source-access check remembers as public (repository -> when it was last confirmed) is
one: :class:`swapper.access.remembered.MemoryPublicAnswers` keeps it in this process, and
:class:`swapper.kube.remembered.ConfigMapPublicAnswers` in a ConfigMap too. Reading
(:meth:`StampMap.confirmed_at`) never does I/O. A name confirmed again is stamped anew only once
its stamp is older than ``refresh``, so a store behind the map is not written on every use; past
``max_entries`` the oldest stamp is dropped. A store behind it hears of every change through the
hooks (:meth:`StampMap._queued`, :meth:`StampMap._unqueued`, :meth:`StampMap._dropped`), called
with the lock held.

Imports nothing of swapper.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MAX_ENTRIES = 5_000
REFRESH = 600.0

Stamps = dict[str, int]


class StampMap:
    """Names and the unix second each was last confirmed (see the module docstring)."""

    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        refresh: float = REFRESH,
        clock: Callable[[], float] = time.time,
    ) -> None:
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
