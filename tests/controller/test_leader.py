"""Leader election: client-go's semantics over a Lease store.

The memory store and a virtual clock (tests/controller/virtual_time.py) show the timings
exactly; the last test runs two electors on a real API server.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from controller.virtual_time import VirtualTime
from e2e.cluster import Cluster

from swapper.controller.leader import LeaderElector, identity
from swapper.errors import KubeError
from swapper.kube.leases import KubeLeaseStore, LeaseRecord, LeaseStore, MemoryLeaseStore
from swapper.metrics import Metrics

LEASE = "swapper-controller"
DURATION, DEADLINE, RETRY = 15.0, 10.0, 2.0


class Partitioned:
    """A store that can be cut off: while :attr:`cut`, every call raises a KubeError."""

    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self.cut = False

    def _check(self) -> None:
        if self.cut:
            raise KubeError("read Lease: connection refused")

    async def get(self, name: str) -> LeaseRecord | None:
        self._check()
        return await self.store.get(name)

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        self._check()
        return await self.store.create(record)

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        self._check()
        return await self.store.update(record)

    async def delete(self, name: str, resource_version: str = "") -> None:
        self._check()
        await self.store.delete(name, resource_version)


@dataclass
class Replica:
    """One elector, its task, and what its callbacks saw: ``(clock(), "started"|"stopped")``."""

    name: str
    elector: LeaderElector
    metrics: Metrics
    events: list[tuple[float, str]] = field(default_factory=list)
    writes_at_stop: list[int] = field(default_factory=list)  # len(store.writes) at on_stopped
    task: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self.elector.is_leader

    def transitions(self, event: str) -> float:
        return (
            self.metrics.registry.get_sample_value(
                "swapper_leader_transitions_total", {"event": event}
            )
            or 0.0
        )

    def gauge(self) -> float | None:
        return self.metrics.registry.get_sample_value("swapper_leader")


Make = Callable[..., Replica]


@pytest.fixture
def clock() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
def store(clock: VirtualTime) -> MemoryLeaseStore:
    return MemoryLeaseStore(clock)


@pytest.fixture
async def make(clock: VirtualTime, store: MemoryLeaseStore) -> AsyncIterator[Make]:
    replicas: list[Replica] = []

    def make_replica(
        name: str, on: LeaseStore | None = None, *, start: bool = True, starting: float = 0.0
    ) -> Replica:
        metrics = Metrics()
        replica: Replica

        async def started() -> None:
            replica.events.append((clock(), "started"))
            if starting:
                await clock.sleep(starting)  # a slow start of the leader's loops

        async def stopped() -> None:
            replica.events.append((clock(), "stopped"))
            replica.writes_at_stop.append(len(store.writes))

        elector = LeaderElector(
            on or store,
            LEASE,
            name,
            DURATION,
            DEADLINE,
            RETRY,
            on_started=started,
            on_stopped=stopped,
            metrics=metrics,
            clock=clock,
            sleep=clock.sleep,
            jitter=lambda: 0.5,
        )
        replica = Replica(name, elector, metrics)
        if start:
            replica.task = asyncio.create_task(elector.run())
        replicas.append(replica)
        return replica

    yield make_replica
    for replica in replicas:
        if replica.task is not None:
            replica.task.cancel()
    await clock.settle()


def renewals(store: MemoryLeaseStore, holder: str) -> list[float]:
    return [at for at, verb, _, who in store.writes if who == holder and verb != "delete"]


async def test_one_of_two_electors_leads_and_renews_every_retry_period(
    clock: VirtualTime, store: MemoryLeaseStore, make: Make
) -> None:
    a, b = make("a"), make("b")
    await clock.advance(60)
    leaders = [r for r in (a, b) if r.leading]
    assert len(leaders) == 1
    leader, other = leaders[0], (b if leaders[0] is a else a)
    lease = await store.get(LEASE)
    assert lease is not None and lease.holder_identity == leader.name
    assert lease.lease_duration_seconds == 15
    assert [event for _, event in leader.events] == ["started"]
    assert other.events == [] and other.gauge() == 0
    assert leader.gauge() == 1 and leader.transitions("acquired") == 1
    times = renewals(store, leader.name)
    assert {round(later - earlier, 6) for earlier, later in itertools.pairwise(times)} == {RETRY}
    assert renewals(store, other.name) == []


async def test_a_silent_holders_lease_is_taken_only_after_the_lease_duration_on_the_local_clock(
    clock: VirtualTime, store: MemoryLeaseStore, make: Make
) -> None:
    # The remote times say the lease expired an hour ago: not trusted.
    stale = datetime.now(UTC) - timedelta(hours=1)
    await store.create(
        LeaseRecord(LEASE, "gone", 15, acquire_time=stale, renew_time=stale, lease_transitions=4)
    )
    seen_at = clock()
    b = make("b")
    await clock.until(lambda: b.leading, limit=60)
    assert [event for _, event in b.events] == ["started"]
    took = b.events[0][0] - seen_at
    assert DURATION <= took <= DURATION + RETRY * 2.2
    lease = await store.get(LEASE)
    assert lease is not None and (lease.holder_identity, lease.lease_transitions) == ("b", 5)


async def test_the_other_takes_over_once_the_leader_stops_renewing_not_before_the_lease_duration(
    clock: VirtualTime, store: MemoryLeaseStore, make: Make
) -> None:
    cut = Partitioned(store)
    a = make("a", cut)
    await clock.advance(1)
    assert a.leading
    b = make("b")
    await clock.advance(5)
    cut.cut = True  # a cannot reach the API any more; b still can
    last_renewal = renewals(store, "a")[-1]
    await clock.until(lambda: b.leading, limit=60)
    acquired_at = clock()
    assert acquired_at - last_renewal >= DURATION  # b waited out the whole lease
    assert acquired_at - last_renewal <= DURATION + 2 * RETRY * 2.2
    stopped_at = [at for at, event in a.events if event == "stopped"]
    assert len(stopped_at) == 1 and stopped_at[0] - last_renewal <= DEADLINE
    assert stopped_at[0] < acquired_at
    assert not a.leading and a.transitions("lost") == 1 and a.gauge() == 0


async def test_a_leader_that_cannot_renew_stops_before_the_lease_could_expire_and_leads_again_later(
    clock: VirtualTime, store: MemoryLeaseStore, make: Make
) -> None:
    cut = Partitioned(store)
    a = make("a", cut)
    await clock.advance(3)
    assert a.leading
    cut.cut = True
    last_renewal = renewals(store, "a")[-1]
    await clock.until(lambda: not a.leading, limit=60)
    assert a.events[-1][1] == "stopped"
    assert a.events[-1][0] - last_renewal <= DEADLINE < DURATION
    assert a.transitions("lost") == 1
    cut.cut = False
    await clock.until(lambda: a.leading, limit=10)  # still its own Lease: taken back at once
    assert [event for _, event in a.events] == ["started", "stopped", "started"]
    assert a.transitions("acquired") == 2


async def test_a_slow_start_does_not_stretch_the_renew_deadline(
    clock: VirtualTime, store: MemoryLeaseStore, make: Make
) -> None:
    cut = Partitioned(store)
    a = make("a", cut, starting=6.0)
    await clock.advance(1)
    assert a.leading
    cut.cut = True  # while its loops are still starting
    acquired_at = renewals(store, "a")[-1]
    await clock.until(lambda: not a.leading, limit=60)
    assert a.events[-1][1] == "stopped" and a.events[-1][0] - acquired_at <= DEADLINE


async def test_cancelling_the_leader_stops_its_loops_then_releases_and_the_other_takes_over_at_once(
    clock: VirtualTime, store: MemoryLeaseStore, make: Make
) -> None:
    a = make("a")
    await clock.advance(1)
    b = make("b")
    await clock.advance(3)
    assert a.leading and not b.leading
    assert a.task is not None
    a.task.cancel()
    await clock.settle()
    assert a.task.cancelled()
    stopped_at = a.events[-1]
    assert stopped_at[1] == "stopped"
    assert store.writes[-1][1:] == ("update", LEASE, "")  # the release
    assert a.writes_at_stop == [len(store.writes) - 1]  # on_stopped ran just before it
    lease = await store.get(LEASE)
    assert lease is not None and lease.lease_duration_seconds == 1
    took = await clock.until(lambda: b.leading, limit=DURATION)
    assert took <= RETRY * 2.2
    assert a.transitions("released") == 1 and a.gauge() == 0


async def test_the_release_still_hands_over_when_a_renewal_landed_unseen(
    clock: VirtualTime, store: MemoryLeaseStore, make: Make
) -> None:
    a = make("a")
    await clock.advance(1)
    assert a.leading and a.task is not None
    lease = await store.get(LEASE)
    assert lease is not None
    await store.update(lease)  # a renewal of a's whose answer the cancellation cut off
    a.task.cancel()
    await clock.settle()
    released = await store.get(LEASE)
    assert released is not None and (released.holder_identity, released.lease_duration_seconds) == (
        "",
        1,
    )


async def test_a_release_leaves_a_lease_another_replica_took_alone(
    clock: VirtualTime, store: MemoryLeaseStore, make: Make
) -> None:
    a = make("a")
    await clock.advance(1)
    assert a.task is not None
    lease = await store.get(LEASE)
    assert lease is not None
    await store.update(lease.replace(holder_identity="b"))
    a.task.cancel()
    await clock.settle()
    after = await store.get(LEASE)
    assert after is not None and after.holder_identity == "b"
    assert a.transitions("released") == 1


async def test_a_replica_that_never_led_releases_nothing_on_cancel(
    clock: VirtualTime, store: MemoryLeaseStore, make: Make
) -> None:
    a, b = make("a"), make("b")
    await clock.advance(1)
    follower = b if a.leading else a
    assert follower.task is not None
    writes = len(store.writes)
    follower.task.cancel()
    await clock.settle()
    assert len(store.writes) == writes and follower.events == []
    assert follower.transitions("released") == 0


def test_the_identity_is_the_pod_name_else_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "swapper-7d9f-abcde")
    assert identity() == "swapper-7d9f-abcde"
    monkeypatch.delenv("POD_NAME")
    assert identity() == socket.gethostname()


def test_the_durations_must_keep_client_gos_order() -> None:
    async def nothing() -> None:
        pass

    with pytest.raises(ValueError):
        LeaderElector(
            MemoryLeaseStore(), LEASE, "a", 10, 10, 2, on_started=nothing, on_stopped=nothing
        )


async def test_two_electors_on_the_api_server_elect_one_leader_and_a_release_hands_over(
    cluster: Cluster,
) -> None:
    namespace = cluster.namespace(f"leader-{uuid.uuid4().hex[:6]}")
    store = KubeLeaseStore(cluster.api_client(), namespace)
    events: list[str] = []

    def elector(name: str) -> LeaderElector:
        async def started() -> None:
            events.append(f"{name} started")

        async def stopped() -> None:
            events.append(f"{name} stopped")

        return LeaderElector(store, LEASE, name, 3, 2, 0.25, on_started=started, on_stopped=stopped)

    a, b = elector("a"), elector("b")
    tasks = {a: asyncio.create_task(a.run()), b: asyncio.create_task(b.run())}
    try:
        deadline = time.monotonic() + 10
        while not (a.is_leader or b.is_leader):
            assert time.monotonic() < deadline, "no leader within 10 s"
            await asyncio.sleep(0.05)
        for _ in range(30):  # 1.5 s: several renewals and tries of the other
            assert a.is_leader != b.is_leader
            await asyncio.sleep(0.05)
        leader, other = (a, b) if a.is_leader else (b, a)
        lease = await store.get(LEASE)
        assert lease is not None and lease.holder_identity == leader.identity
        tasks[leader].cancel()
        released = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await tasks[leader]
        while not other.is_leader:
            assert time.monotonic() - released < 2.5, "not handed over before the lease expired"
            await asyncio.sleep(0.02)
        lease = await store.get(LEASE)
        assert lease is not None and lease.holder_identity == other.identity
        assert events == [
            f"{leader.identity} started",
            f"{leader.identity} stopped",
            f"{other.identity} started",
        ]
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
