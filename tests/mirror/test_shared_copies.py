"""Copies shared across replicas: each target copied once, whichever replica asks first.

Replicas are :class:`SharedCopier` instances over one Lease store; the image copy is a fake
that counts copies and records the target present when done (the registry that ``verify``
asks). The memory store runs on a virtual clock (tests/controller/virtual_time.py); the last
test runs on the real API server.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from controller.virtual_time import VirtualTime
from e2e.cluster import Cluster

from swapper.errors import CopyError, CopyReason, KubeError
from swapper.images import parse
from swapper.kube.leases import KubeLeaseStore, LeaseRecord, LeaseStore, MemoryLeaseStore
from swapper.metrics import Metrics
from swapper.mirror.queue import CopyJob
from swapper.mirror.shared import SharedCopier, lease_name

LEASE_SECONDS = 30.0
Sleep = Callable[[float], Awaitable[None]]


def job(index: int = 0, recheck: bool = False) -> CopyJob:
    ref = parse(f"docker.io/library/app{index}:1.0")
    return CopyJob(ref, f"m.local/{ref.mirror_path()}:1.0", ref.mirror_path(), recheck=recheck)


class Registry:
    """The target registry and the image copy: a copy takes ``seconds`` on ``sleep``, then the
    target is present; a target in :attr:`failing` fails its copy instead."""

    def __init__(self, sleep: Sleep, seconds: float = 3.0) -> None:
        self.sleep = sleep
        self.seconds = seconds
        self.present: set[str] = set()
        self.copies: Counter[str] = Counter()
        self.copiers: list[str] = []
        self.failing: set[str] = set()

    def copier(self, who: str) -> Callable[[CopyJob], Awaitable[None]]:
        async def copy(job: CopyJob) -> None:
            self.copies[job.target] += 1
            self.copiers.append(who)
            await self.sleep(self.seconds)
            if job.target in self.failing:
                self.failing.discard(job.target)
                raise CopyError("source unreachable", CopyReason.CONNECTION)
            self.present.add(job.target)

        return copy

    async def verify(self, target: str) -> bool:
        return target in self.present


class Replica:
    def __init__(
        self,
        who: str,
        store: LeaseStore,
        registry: Registry,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        lease_duration: float = LEASE_SECONDS,
        poll: float = 1.0,
        max_wait: float | None = None,
    ) -> None:
        self.metrics = Metrics()
        self.copier = SharedCopier(
            registry.copier(who),
            store,
            who,
            lease_duration,
            verify=registry.verify,
            metrics=self.metrics,
            poll=poll,
            max_wait=max_wait,
            clock=clock,
            sleep=sleep,
        )

    def leases(self, result: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "swapper_copy_leases_total", {"result": result}
        )
        return value or 0.0


@pytest.fixture
def clock() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
def store(clock: VirtualTime) -> MemoryLeaseStore:
    return MemoryLeaseStore(clock)


@pytest.fixture
def registry(clock: VirtualTime) -> Registry:
    return Registry(clock.sleep)


def replica(who: str, store: LeaseStore, registry: Registry, clock: VirtualTime) -> Replica:
    return Replica(who, store, registry, clock=clock, sleep=clock.sleep)


def test_the_lease_name_is_a_dns_label_of_the_target_hash() -> None:
    name = lease_name("m.local/docker.io/library/nginx:1.27")
    assert re.fullmatch(r"swapper-copy-[0-9a-f]{40}", name)
    assert len(name) == 53 and name == lease_name("m.local/docker.io/library/nginx:1.27")
    assert name != lease_name("m.local/docker.io/library/nginx:1.28")


async def test_two_replicas_asked_for_the_same_50_targets_copy_each_exactly_once(
    clock: VirtualTime, store: MemoryLeaseStore, registry: Registry
) -> None:
    a, b = replica("a", store, registry, clock), replica("b", store, registry, clock)
    jobs = [job(i) for i in range(50)]
    calls = [asyncio.create_task(a.copier(j)) for j in jobs]
    calls += [asyncio.create_task(b.copier(j)) for j in jobs[:25]]  # the same moment
    await clock.advance(1)
    calls += [asyncio.create_task(b.copier(j)) for j in jobs[25:]]  # while a copies
    await clock.until(lambda: all(call.done() for call in calls), limit=60)
    await asyncio.gather(*calls)
    assert registry.copies == Counter({j.target: 1 for j in jobs})
    assert a.leases("acquired") + b.leases("acquired") == 50
    assert a.leases("held-elsewhere") + b.leases("held-elsewhere") == 50
    assert a.leases("failed") + b.leases("failed") == 0
    assert store.names() == []  # every Lease deleted when its copy was done


async def test_a_replica_asked_after_the_copy_finished_copies_nothing(
    clock: VirtualTime, store: MemoryLeaseStore, registry: Registry
) -> None:
    a, b = replica("a", store, registry, clock), replica("b", store, registry, clock)
    first = asyncio.create_task(a.copier(job()))
    await clock.until(first.done, limit=10)
    second = asyncio.create_task(b.copier(job()))  # no Lease: b takes one, sees the image
    await clock.until(second.done, limit=60)
    assert registry.copies == Counter({job().target: 1})
    assert b.leases("held-elsewhere") == 1 and b.leases("acquired") == 0


async def test_a_recheck_job_copies_even_when_the_target_is_there(
    clock: VirtualTime, store: MemoryLeaseStore, registry: Registry
) -> None:
    registry.present.add(job().target)
    copy = asyncio.create_task(replica("a", store, registry, clock).copier(job(recheck=True)))
    await clock.until(copy.done, limit=10)
    assert registry.copies[job().target] == 1


async def test_a_long_copy_renews_its_lease_and_the_other_replica_waits_it_out(
    clock: VirtualTime, store: MemoryLeaseStore, registry: Registry
) -> None:
    registry.seconds = 100  # longer than three lease durations
    a, b = replica("a", store, registry, clock), replica("b", store, registry, clock)
    first = asyncio.create_task(a.copier(job()))
    await clock.advance(1)
    second = asyncio.create_task(b.copier(job()))
    await clock.until(lambda: first.done() and second.done(), limit=200)
    assert registry.copies == Counter({job().target: 1})
    renewals = [at for at, verb, _, who in store.writes if verb == "update" and who == "a"]
    assert len(renewals) >= 9  # every 10 s of the 100 s copy
    assert b.leases("held-elsewhere") == 1


async def test_a_holder_that_died_is_taken_over_after_the_lease_duration_on_the_local_clock(
    clock: VirtualTime, store: MemoryLeaseStore, registry: Registry
) -> None:
    # The remote renew time claims the Lease expired long ago: not trusted.
    stale = datetime.now(UTC) - timedelta(hours=1)
    target = job().target
    await store.create(LeaseRecord(lease_name(target), "dead", 30, stale, stale))
    b = replica("b", store, registry, clock)
    asked_at = clock()
    copy = asyncio.create_task(b.copier(job()))
    await clock.until(lambda: registry.copies[target] > 0, limit=60)
    assert clock() - asked_at >= LEASE_SECONDS
    await clock.until(copy.done, limit=10)
    assert registry.copies == Counter({target: 1}) and registry.copiers == ["b"]
    assert (b.leases("waited"), b.leases("acquired")) == (1, 1)
    assert store.names() == []


async def test_when_the_holders_copy_fails_the_waiting_replica_copies(
    clock: VirtualTime, store: MemoryLeaseStore, registry: Registry
) -> None:
    registry.failing.add(job().target)
    a, b = replica("a", store, registry, clock), replica("b", store, registry, clock)
    first = asyncio.create_task(a.copier(job()))
    await clock.advance(0.5)
    second = asyncio.create_task(b.copier(job()))
    await clock.until(lambda: first.done() and second.done(), limit=60)
    with pytest.raises(CopyError):
        await first
    await second
    assert registry.copiers == ["a", "b"] and job().target in registry.present
    assert (b.leases("waited"), b.leases("acquired")) == (1, 1)
    assert store.names() == []  # the failed copy's Lease was deleted too


async def test_a_cancelled_copy_deletes_its_lease(
    clock: VirtualTime, store: MemoryLeaseStore, registry: Registry
) -> None:
    copy = asyncio.create_task(replica("a", store, registry, clock).copier(job()))
    await clock.advance(1)
    assert store.names() == [lease_name(job().target)]
    copy.cancel()
    await clock.settle()
    assert copy.cancelled() and store.names() == []


async def test_a_lease_taken_over_during_a_copy_is_left_to_its_new_holder(
    clock: VirtualTime, store: MemoryLeaseStore, registry: Registry
) -> None:
    registry.seconds = 60
    name = lease_name(job().target)
    copy = asyncio.create_task(replica("a", store, registry, clock).copier(job()))
    await clock.advance(1)
    lease = await store.get(name)
    assert lease is not None
    await store.update(lease.replace(holder_identity="b"))  # b thought a was dead
    await clock.until(copy.done, limit=120)
    after = await store.get(name)
    assert after is not None and after.holder_identity == "b"
    assert [verb for _, verb, _, who in store.writes if who == "a"] == ["create"]


async def test_when_the_api_cannot_be_asked_the_copy_goes_ahead_with_one_warning(
    clock: VirtualTime, store: MemoryLeaseStore, registry: Registry
) -> None:
    store.failure = KubeError("read Lease: connection refused")
    a = replica("a", store, registry, clock)
    with structlog.testing.capture_logs() as logs:
        for index in range(3):
            copy = asyncio.create_task(a.copier(job(index)))
            await clock.until(copy.done, limit=10)
            await copy
    assert sorted(registry.copies.values()) == [1, 1, 1]
    assert a.leases("failed") == 3
    warnings = [line for line in logs if line["log_level"] == "warning"]
    assert [line["event"] for line in warnings] == ["copy_lease_failed"]


async def test_a_wait_is_bounded_and_then_the_copy_goes_ahead(
    clock: VirtualTime, store: MemoryLeaseStore, registry: Registry
) -> None:
    target = job().target
    holder = await store.create(LeaseRecord(lease_name(target), "busy", 30))
    b = Replica("b", store, registry, clock=clock, sleep=clock.sleep, max_wait=100)

    async def keep_renewing() -> None:  # a live holder that never finishes
        record = holder
        while True:
            await clock.sleep(5)
            record = await store.update(record.replace(lease_transitions=0))

    renewing = asyncio.create_task(keep_renewing())
    copy = asyncio.create_task(b.copier(job()))
    waited = await clock.until(lambda: registry.copies[target] > 0, limit=200)
    renewing.cancel()
    assert 100 <= waited <= 102
    await clock.until(copy.done, limit=10)
    assert b.leases("waited") == 1


async def test_two_replicas_on_the_api_server_copy_each_of_20_targets_once(
    cluster: Cluster,
) -> None:
    namespace = cluster.namespace(f"copies-{uuid.uuid4().hex[:6]}")
    store = KubeLeaseStore(cluster.api_client(), namespace)
    go = asyncio.Event()

    async def hold(_: float) -> None:  # each copy lasts until the test lets them all finish
        await go.wait()

    registry = Registry(hold)
    a = Replica("a", store, registry, lease_duration=5, poll=0.05)
    b = Replica(
        "b", KubeLeaseStore(cluster.api_client(), namespace), registry, lease_duration=5, poll=0.05
    )
    jobs = [job(i) for i in range(20)]
    calls = [asyncio.create_task(r.copier(j)) for j in jobs for r in (a, b)]
    deadline = time.monotonic() + 20
    while sum(registry.copies.values()) < 20:  # one copy per target under way
        assert time.monotonic() < deadline, f"copies started: {dict(registry.copies)}"
        await asyncio.sleep(0.02)
    held = [await store.get(lease_name(j.target)) for j in jobs]
    assert all(lease is not None and lease.holder_identity in ("a", "b") for lease in held)
    go.set()
    await asyncio.wait_for(asyncio.gather(*calls), 30)
    assert registry.copies == Counter({j.target: 1 for j in jobs})
    assert a.leases("acquired") + b.leases("acquired") == 20
    assert a.leases("held-elsewhere") + b.leases("held-elsewhere") == 20
    assert [await store.get(lease_name(j.target)) for j in jobs] == [None] * 20
