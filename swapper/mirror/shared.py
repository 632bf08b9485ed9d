"""Copies shared across replicas: one replica copies an image, the others wait for it.

:class:`SharedCopier` wraps the copier the worker queue calls. Before copying ``job.target`` it
takes a short Lease of its own, ``swapper-copy-<40 hex of sha256(target)>``, in swapper's
namespace:

- no Lease, a released one, or one that has not changed for its ``leaseDurationSeconds`` (on
  this replica's clock, from when it saw it change; remote times are not trusted): this replica
  takes it, checks the target once more (another replica may have just finished; not for a
  ``recheck`` job, which must look at the source again), copies, renews the Lease every third of
  its duration meanwhile, and deletes it when done, whether the copy worked or not;
- a live Lease of another replica: it waits (polls every ``poll`` seconds) until the Lease is
  gone, released or expired, at most ``max_wait``; then ``verify`` asks the target: present, the
  other replica copied it and this one returns without copying; absent (that copy failed, or the
  wait ran out), it tries to take the Lease and copy itself.

Coordination never stops a copy: when the API cannot be asked (any failure but a conflict), the
copy goes ahead without a Lease (``swapper_copy_leases_total{result="failed"}``, one warning
until the API answers again). A Lease holds the target reference in an annotation (an image
name in the user's own registry), never credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from swapper.errors import KubeError
from swapper.kube.leases import Conflict, LeaseRecord, LeaseStore
from swapper.logs import get_logger
from swapper.metrics import Metrics
from swapper.mirror.queue import CopyJob

log = get_logger("swapper.mirror")

PREFIX = "swapper-copy-"
TARGET_ANNOTATION = "swapper.io/copy-target"
LABELS = {"app.kubernetes.io/managed-by": "swapper", "app.kubernetes.io/component": "copy-lease"}
CALL_TIMEOUT = 10.0
"""Seconds one Lease call may take before the copy goes ahead without it."""


_T = TypeVar("_T")
_COPIED = LeaseRecord(name="")
"""What :meth:`SharedCopier._acquire_or_wait` returns when another replica copied the image."""


def lease_name(target: str) -> str:
    """The Lease of copies to ``target``: a DNS-1123 name of 53 characters."""
    return PREFIX + hashlib.sha256(target.encode()).hexdigest()[:40]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class _Seen:
    """A Lease as one copy last saw it, and when (the copier's clock) it last changed."""

    record: LeaseRecord | None = None
    at: float = 0.0


class SharedCopier:
    """A copier (called with a :class:`CopyJob`) that copies each target once across
    replicas; see the module docstring.

    ``verify(target)`` says whether the target holds the image now (ask the registry, not a
    cache that may be older than another replica's copy). ``clock`` (monotonic seconds) and
    ``sleep`` are the test's to replace.
    """

    def __init__(
        self,
        copier: Callable[[CopyJob], Awaitable[object]],
        store: LeaseStore,
        identity: str,
        lease_duration: float = 30.0,
        *,
        verify: Callable[[str], Awaitable[bool]],
        metrics: Metrics | None = None,
        poll: float = 1.0,
        max_wait: float | None = None,
        call_timeout: float = CALL_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        if lease_duration <= 0 or poll <= 0:
            raise ValueError("lease_duration and poll must be positive")
        if not identity:
            raise ValueError("the identity must not be empty")
        self.copier = copier
        self.store = store
        self.identity = identity
        self.lease_duration = lease_duration
        self.verify = verify
        self.metrics = metrics
        self.poll = poll
        self.max_wait = 10 * lease_duration if max_wait is None else max_wait
        self.call_timeout = call_timeout
        self.clock = clock
        self.sleep = sleep
        self.now = now
        self._holding: set[str] = set()  # Leases this process holds (bounded by running copies)
        self._failing = False  # a failure was logged; quiet until the API answers again

    async def __call__(self, job: CopyJob) -> None:
        name = lease_name(job.target)
        try:
            held = await self._acquire_or_wait(job, name)
        except (KubeError, TimeoutError) as exc:
            if isinstance(exc, Conflict):
                raise  # handled at each call; one that escapes is a bug
            self._failed(job.target, exc)
            held = None
        if held is _COPIED:
            return
        if held is None:  # no Lease to be had: copy without one
            await self.copier(job)
            return
        await self._copy_holding(job, name, held)

    async def _acquire_or_wait(self, job: CopyJob, name: str) -> LeaseRecord | None:
        """The Lease, held; :data:`_COPIED` when another replica copied the image; None when
        the wait for another replica ran out."""
        seen = _Seen()
        deadline = self.clock() + self.max_wait
        while True:
            held = await self._try_acquire(name, job.target, seen)
            if held is not None:
                return held
            free = await self._wait(name, seen, deadline)
            if await self._present(job.target):
                self._count("held-elsewhere")
                log.debug("copy_held_elsewhere", target=job.target, lease=name)
                return _COPIED
            self._count("waited")
            if not free:
                log.warning(
                    "copy_lease_wait_exceeded",
                    target=job.target,
                    lease=name,
                    max_wait=self.max_wait,
                )
                return None

    # -- holding the Lease --------------------------------------------------------------------

    async def _copy_holding(self, job: CopyJob, name: str, held: LeaseRecord) -> None:
        self._holding.add(name)
        box = [held]
        renewing: asyncio.Task[None] | None = None
        try:
            if not job.recheck and await self._present(job.target):
                self._count("held-elsewhere")  # copied by another replica just before
                log.debug("copy_held_elsewhere", target=job.target, lease=name)
                return
            self._count("acquired")
            renewing = asyncio.create_task(self._renew(box))
            await self.copier(job)
        finally:
            if renewing is not None:
                renewing.cancel()
                await asyncio.gather(renewing, return_exceptions=True)
            self._holding.discard(name)
            await self._release(box[0])

    async def _renew(self, box: list[LeaseRecord]) -> None:
        """Renew ``box[0]`` every third of the lease duration until cancelled."""
        while True:
            await self.sleep(self.lease_duration / 3)
            try:
                box[0] = await self._call(self.store.update(box[0].replace(renew_time=self.now())))
            except Conflict:
                log.warning("copy_lease_lost", lease=box[0].name)  # taken over: copy on anyway
                return
            except (KubeError, TimeoutError) as exc:
                log.debug("copy_lease_renew_failed", lease=box[0].name, error=_describe(exc))

    async def _release(self, held: LeaseRecord) -> None:
        """Delete the Lease (best effort: it expires anyway)."""
        try:
            try:
                await self._call(self.store.delete(held.name, held.resource_version))
            except Conflict:
                current = await self._call(self.store.get(held.name))
                if current is not None and current.holder_identity == self.identity:
                    await self._call(self.store.delete(held.name, current.resource_version))
        except (KubeError, TimeoutError) as exc:
            log.debug("copy_lease_release_failed", lease=held.name, error=_describe(exc))

    # -- acquiring and waiting ----------------------------------------------------------------

    async def _try_acquire(self, name: str, target: str, seen: _Seen) -> LeaseRecord | None:
        """The Lease, now held by this replica; None when another holds a live one."""
        record = await self._call(self.store.get(name))
        self._succeeded()
        wall = self.now()
        duration = max(1, math.ceil(self.lease_duration))
        if record is None:
            try:
                return await self._call(
                    self.store.create(
                        LeaseRecord(
                            name=name,
                            holder_identity=self.identity,
                            lease_duration_seconds=duration,
                            acquire_time=wall,
                            renew_time=wall,
                            labels=LABELS,
                            annotations={TARGET_ANNOTATION: target},
                        )
                    )
                )
            except Conflict:
                return None
        self._observe(seen, record)
        if not self._free(record, seen):
            return None
        try:
            return await self._call(
                self.store.update(
                    record.replace(
                        holder_identity=self.identity,
                        lease_duration_seconds=duration,
                        acquire_time=wall,
                        renew_time=wall,
                        lease_transitions=record.lease_transitions + 1,
                    )
                )
            )
        except Conflict:
            return None

    async def _wait(self, name: str, seen: _Seen, deadline: float) -> bool:
        """Poll until the Lease is gone, released or expired (True), or ``deadline`` (False)."""
        while self.clock() < deadline:
            await self.sleep(min(self.poll, max(0.0, deadline - self.clock())))
            record = await self._call(self.store.get(name))
            if record is None:
                return True
            self._observe(seen, record)
            if self._free(record, seen):
                return True
        return False

    def _observe(self, seen: _Seen, record: LeaseRecord) -> None:
        if record != seen.record:
            seen.record, seen.at = record, self.clock()

    def _free(self, record: LeaseRecord, seen: _Seen) -> bool:
        """Whether ``record`` may be taken: released, a leftover of this identity (not held by
        this process), or unchanged for its lease duration since ``seen.at``."""
        holder = record.holder_identity
        if not holder:
            return True
        if holder == self.identity:
            return record.name not in self._holding
        return seen.at + record.lease_duration_seconds <= self.clock()

    async def _present(self, target: str) -> bool:
        try:
            return await self.verify(target)
        except Exception as exc:  # the copy decides: an unreachable target fails it anyway
            log.debug("copy_verify_failed", target=target, error=_describe(exc))
            return False

    async def _call(self, call: Awaitable[_T]) -> _T:
        async with asyncio.timeout(self.call_timeout):
            return await call

    # -- reporting ----------------------------------------------------------------------------

    def _failed(self, target: str, exc: BaseException) -> None:
        self._count("failed")
        if self._failing:
            log.debug("copy_lease_failed", target=target, error=_describe(exc))
            return
        self._failing = True
        log.warning(
            "copy_lease_failed",
            target=target,
            error=_describe(exc),
            effect="copying without a Lease until the API answers again",
        )

    def _succeeded(self) -> None:
        if self._failing:
            self._failing = False
            log.info("copy_lease_recovered")

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.copy_leases.labels(result).inc()
