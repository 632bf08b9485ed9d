"""Existence checks from a cache that stays true: a mirrored image that disappears is noticed.

The reference project caches "the mirror has this image" for 24 h and never looks again, so
when a lifecycle policy expires the image (or someone deletes it), every pod swapped to it in
that day ends in ImagePullBackOff. Here:

- a positive answer is served for ``ttl`` (with ±10% jitter so entries made together do not
  expire together), then the registry is asked again: at most one request per image per
  ``ttl`` however many pods use it, and a deleted image is noticed within one ``ttl``;
- a negative answer is served for ``negative_ttl`` only (a copy may be about to land);
- when a check finds that a present image is gone, ``on_missing(reference)`` is called (the copy
  queue forgets that it copied it, so the next admission copies it again) and the entry turns
  negative at once;
- a finished copy records the image as present (:meth:`record_present`), so the first pods after
  a copy need no check.

Concurrent checks of one reference share one request (:class:`~swapper.aio.SingleFlight`: a
caller that gives up does not cancel it for the others). At most ``max_entries`` answers
(10,000 by default, as many as the access check keeps) are held, the least recently used
dropped first: one that is dropped costs one more check. ``requests`` counts the registry
checks.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from swapper.aio import SingleFlight, TTLMap
from swapper.credentials import Credentials
from swapper.images import ImageReference
from swapper.logs import get_logger
from swapper.targets.base import TargetRegistry

log = get_logger("swapper.targets")


class ExistenceCache:
    """A :class:`TargetRegistry` whose ``image_exists`` is cached; everything else delegates."""

    def __init__(
        self,
        target: TargetRegistry,
        ttl: float = 60.0,
        negative_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self.target = target
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.clock = clock
        self.max_entries = max_entries
        self.on_missing: Callable[[str], None] = lambda _: None
        self.requests = 0
        # target -> present; the least recently used dropped beyond max_entries
        self._entries: TTLMap[str, bool] = TTLMap(max_entries, clock)
        self._checks: SingleFlight[str, bool] = SingleFlight()

    # -- the cached check ---------------------------------------------------------------------

    async def image_exists(self, target: str) -> bool:
        present = self._entries.get(target)
        if present is not None:
            return present
        return await self._checks.do(target, lambda: self._ask(target))

    async def _ask(self, target: str) -> bool:
        self.requests += 1
        try:
            present = await self.target.image_exists(target)
        except Exception as exc:  # the caller decides (admission: that container stays as is)
            log.warning("existence_check_failed", target=target, error=f"{type(exc).__name__}")
            raise
        was = self._entries.entry(target)  # the last answer, however old
        if was is not None and was[0] and not present:
            log.warning("mirrored_image_missing", target=target)
            self.on_missing(target)
        self._remember(target, present)
        return present

    def _remember(self, target: str, present: bool) -> None:
        ttl = self.ttl * random.uniform(0.9, 1.1) if present else self.negative_ttl  # noqa: S311
        self._entries.set(target, present, ttl)

    def record_present(self, target: str) -> None:
        """A copy to ``target`` just finished."""
        self._remember(target, True)

    def invalidate(self, target: str) -> None:
        self._entries.pop(target)

    async def image_exists_now(self, target: str) -> bool:
        """Ask the registry, not the cache (another replica's copy, or a deletion, is newer
        than any cached answer); the answer is cached as usual."""
        self.invalidate(target)
        return await self.image_exists(target)

    async def image_digest(self, target: str) -> str | None:
        """The registry asked (never the cache); its answer refreshes the cache."""
        digest = await self.target.image_digest(target)
        self._remember(target, digest is not None)
        return digest

    # -- delegated ----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return self.target.endpoint

    def is_origin(self, ref: ImageReference) -> bool:
        return self.target.is_origin(ref)

    async def ensure_repository(self, repository: str) -> None:
        await self.target.ensure_repository(repository)

    async def pull_credentials(self) -> Credentials | None:
        return await self.target.pull_credentials()

    async def aclose(self) -> None:
        await self._checks.aclose()
        await self.target.aclose()
