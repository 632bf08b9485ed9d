"""Leader election on a Lease, with client-go's semantics.

Every replica runs :meth:`LeaderElector.run`. It tries to acquire the Lease every
``retry_period`` (plus up to 1.2 times as much again, client-go's jitter). It takes the Lease
when there is none, when its holder is empty (released), or when the record has not changed for
``leaseDurationSeconds`` as measured on this replica's own clock since it saw the record change:
the times in the Lease come from another machine's clock and are not trusted.

The leader renews every ``retry_period``. When no renewal succeeds for ``renew_deadline`` since
the last one that did (each try is cut at that deadline), or the Lease names another holder, it
stops leading: ``on_stopped`` runs (it must stop the leader's loops) before the Lease could
expire for anyone else, since ``renew_deadline < lease_duration``. It then tries to acquire
again, like any other replica.

On cancellation (shutdown), a leader first calls ``on_stopped``, then releases the Lease
(empty holder, ``leaseDurationSeconds`` 1, as client-go's ``ReleaseOnCancel``), so the next
replica takes over at its next try instead of after the lease duration.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from swapper.errors import KubeError
from swapper.kube.leases import Conflict, LeaseRecord, LeaseStore, identity
from swapper.logs import get_logger
from swapper.metrics import Metrics

__all__ = ["LeaderElector", "identity"]

log = get_logger("swapper.controller")

JITTER = 1.2
"""client-go's JitterFactor: a try to acquire waits retry_period x (1 + up to 1.2)."""
RELEASE_TIMEOUT = 5.0
"""Seconds the release on shutdown may take."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class LeaderElector:
    """Elects one leader among replicas on the Lease ``name`` (see the module docstring).

    ``clock`` (monotonic seconds) measures lease ages and deadlines, ``sleep`` waits, ``now``
    stamps the Lease's times and ``jitter`` (0 to 1) spreads the tries; tests pass their own.
    """

    def __init__(
        self,
        store: LeaseStore,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        *,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = _utc_now,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        if not identity:
            raise ValueError("the identity must not be empty")
        self.store = store
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self.now = now
        self.jitter = jitter
        self._leader = False
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0  # clock() when the observed record last changed
        self._written_at = 0.0  # clock() when the last write of ours that succeeded was sent
        self._failing = False  # a failure was logged; quiet until a call succeeds again

    @property
    def is_leader(self) -> bool:
        """Whether this replica leads now."""
        return self._leader

    @property
    def observed(self) -> LeaseRecord | None:
        """The Lease as this replica last read or wrote it."""
        return self._observed

    async def run(self) -> None:
        """Acquire, lead, and acquire again after a loss; until cancelled (then the Lease is
        released)."""
        try:
            while True:
                await self._acquire()
                try:
                    self._became_leader()
                    await self.on_started()
                    await self._renew_until_lost()
                except asyncio.CancelledError:
                    try:
                        await self._step_down()
                    finally:
                        await self._release()
                    raise
                except BaseException:
                    await self._step_down()
                    raise
                await self._step_down()
                self._count("lost")
                log.warning(
                    "leader_lost",
                    identity=self.identity,
                    lease=self.name,
                    renew_deadline=self.renew_deadline,
                )
        finally:
            self._leader = False
            self._gauge(0)

    # -- the steps ----------------------------------------------------------------------------

    async def _acquire(self) -> None:
        """Try until this replica holds the Lease."""
        while not await self._try_acquire_or_renew(self.lease_duration):
            await self.sleep(self.retry_period * (1 + JITTER * self.jitter()))

    async def _renew_until_lost(self) -> None:
        """Renew every retry_period; return once no renewal succeeded for renew_deadline."""
        last = self._written_at  # when the last write that succeeded was sent
        while True:
            await self.sleep(self.retry_period)
            while True:
                remaining = last + self.renew_deadline - self.clock()
                if remaining <= 0:
                    return
                if await self._try_acquire_or_renew(remaining):
                    last = self._written_at
                    break
                if self._taken_over() or self.clock() - last >= self.renew_deadline:
                    return
                await self.sleep(min(self.retry_period, last + self.renew_deadline - self.clock()))

    async def _try_acquire_or_renew(self, within: float) -> bool:
        """One try, client-go's ``tryAcquireOrRenew``: whether this replica holds the Lease."""
        started = self.clock()
        try:
            async with asyncio.timeout(within):
                held = await self._try_once()
        except Conflict:
            self._succeeded()  # the API answered: another replica wrote first
            return False
        except (KubeError, TimeoutError) as exc:
            self._failed(exc)
            return False
        if held:
            self._written_at = started  # others saw the write no sooner than this
        return held

    async def _try_once(self) -> bool:
        wall = self.now()
        duration = max(1, math.ceil(self.lease_duration))
        record = await self.store.get(self.name)
        if record is None:
            created = await self.store.create(
                LeaseRecord(
                    name=self.name,
                    holder_identity=self.identity,
                    lease_duration_seconds=duration,
                    acquire_time=wall,
                    renew_time=wall,
                )
            )
            self._observe(created)
            self._succeeded()
            return True
        if record != self._observed:
            self._observe(record)
        self._succeeded()
        holder = record.holder_identity
        if holder and holder != self.identity and not self._expired(record):
            return False
        if holder == self.identity:
            wanted = record.replace(lease_duration_seconds=duration, renew_time=wall)
        else:
            wanted = record.replace(
                holder_identity=self.identity,
                lease_duration_seconds=duration,
                acquire_time=wall,
                renew_time=wall,
                lease_transitions=record.lease_transitions + 1,
            )
        self._observe(await self.store.update(wanted))
        return True

    def _taken_over(self) -> bool:
        """Whether the Lease last seen names another holder."""
        observed = self._observed
        return observed is not None and observed.holder_identity not in ("", self.identity)

    def _expired(self, record: LeaseRecord) -> bool:
        """Whether ``record`` went unchanged for its lease duration, on this replica's clock."""
        return self._observed_at + record.lease_duration_seconds <= self.clock()

    def _observe(self, record: LeaseRecord) -> None:
        self._observed = record
        self._observed_at = self.clock()

    def _became_leader(self) -> None:
        self._leader = True
        self._gauge(1)
        self._count("acquired")
        observed = self._observed
        log.info(
            "leader_acquired",
            identity=self.identity,
            lease=self.name,
            transitions=observed.lease_transitions if observed else 0,
        )

    async def _step_down(self) -> None:
        """Stop leading: ``on_stopped`` stops the leader's loops."""
        self._leader = False
        self._gauge(0)
        await self.on_stopped()

    async def _release(self) -> None:
        """Hand the Lease over at once (shutdown): an empty holder and a 1 s duration. A renewal
        cut short by the cancellation may have changed the Lease since it was last seen: then
        it is read again, and released if it still names this replica."""
        observed = self._observed
        handed_over = False
        if observed is not None and observed.holder_identity == self.identity:
            try:
                async with asyncio.timeout(RELEASE_TIMEOUT):
                    try:
                        await self._write_release(observed)
                    except Conflict:
                        current = await self.store.get(self.name)
                        if current is None or current.holder_identity != self.identity:
                            raise
                        await self._write_release(current)
                handed_over = True
            except (KubeError, TimeoutError) as exc:
                log.warning(
                    "leader_release_failed",
                    identity=self.identity,
                    lease=self.name,
                    error=_describe(exc),
                )
        self._count("released")
        log.info(
            "leader_released", identity=self.identity, lease=self.name, handed_over=handed_over
        )

    async def _write_release(self, record: LeaseRecord) -> None:
        wall = self.now()
        released = record.replace(
            holder_identity="", lease_duration_seconds=1, acquire_time=wall, renew_time=wall
        )
        self._observe(await self.store.update(released))

    # -- reporting ----------------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        if self._failing:
            log.debug("leader_election_failed", lease=self.name, error=_describe(exc))
            return
        self._failing = True
        log.warning(
            "leader_election_failed",
            identity=self.identity,
            lease=self.name,
            error=_describe(exc),
            leading=self._leader,
        )

    def _succeeded(self) -> None:
        if self._failing:
            self._failing = False
            log.info("leader_election_recovered", identity=self.identity, lease=self.name)

    def _gauge(self, value: int) -> None:
        if self.metrics is not None:
            self.metrics.leader.set(value)

    def _count(self, event: str) -> None:
        if self.metrics is not None:
            self.metrics.leader_transitions.labels(event).inc()
