"""The production copy queue: bounds, sharing, deadlines, freshness, backoff, containment."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from helpers import Clock

from swapper.errors import (
    CopyDeadlineExceeded,
    CopyError,
    CopyReason,
    QueueFull,
    RegistryError,
    TransientCopyError,
)
from swapper.images import parse
from swapper.metrics import Metrics
from swapper.mirror.queue import CopyJob, CopyQueue
from swapper.mirror.workers import QueueSettings, WorkerQueue


def job(name: str = "nginx:1.27", recheck: bool = False) -> CopyJob:
    ref = parse(name)
    return CopyJob(
        ref, f"m.local/{ref.mirror_path()}:{ref.tag}", ref.mirror_path(), recheck=recheck
    )


class Copier:
    """The copy function the queue runs: records calls, can be held, failed or slowed."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.running = 0
        self.most_running = 0
        self.gate: asyncio.Event | None = None
        self.errors: dict[str, Exception] = {}
        self.hang: set[str] = set()

    async def __call__(self, job: CopyJob) -> None:
        self.calls.append(job.target)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if job.target in self.hang:
                await asyncio.Event().wait()
            if self.gate is not None:
                await self.gate.wait()
            if job.target in self.errors:
                raise self.errors[job.target]
        finally:
            self.running -= 1


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture
def copier() -> Copier:
    return Copier()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def queue(copier: Copier, clock: Clock, metrics: Metrics) -> Iterator[WorkerQueue]:
    q = WorkerQueue(copier, QueueSettings(workers=2, max_queued=3, clock=clock), metrics)
    yield q
    await q.aclose()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_the_worker_queue_implements_the_copy_queue_protocol(queue: WorkerQueue) -> None:
    assert isinstance(queue, CopyQueue)


async def test_a_handed_over_copy_runs_in_the_background(
    queue: WorkerQueue, copier: Copier
) -> None:
    queue.submit(job())
    await settle()
    assert copier.calls == [job().target]


async def test_requests_for_the_same_target_share_one_copy(
    queue: WorkerQueue, copier: Copier, metrics: Metrics
) -> None:
    copier.gate = asyncio.Event()
    queue.submit(job())
    waiters = [asyncio.create_task(queue.submit_and_wait(job(), 5)) for _ in range(3)]
    await settle()
    copier.gate.set()
    await asyncio.gather(*waiters)
    assert copier.calls == [job().target]
    assert sample(metrics, "swapper_copies_not_started_total", reason="deduplicated") == 3


async def test_no_more_copies_run_at_once_than_there_are_workers(
    queue: WorkerQueue, copier: Copier
) -> None:
    copier.gate = asyncio.Event()
    for i in range(5):
        queue.submit(job(f"app{i}:1"))
        await settle()
    assert copier.running == 2
    copier.gate.set()
    await settle()
    assert len(copier.calls) == 5
    assert copier.most_running == 2


async def test_a_full_queue_refuses_more_copies_and_counts_them(
    queue: WorkerQueue, copier: Copier, metrics: Metrics
) -> None:
    copier.gate = asyncio.Event()
    for i in range(5):  # 2 running, 3 waiting
        queue.submit(job(f"app{i}:1"))
        await settle()
    with pytest.raises(QueueFull):
        queue.submit(job("one-too-many:1"))
    copier.gate.set()
    refused = metrics.registry.get_sample_value(
        "swapper_copies_not_started_total", {"reason": "queue-full"}
    )
    assert refused == 1


async def test_a_waiter_past_its_deadline_gives_up_but_the_copy_goes_on(
    queue: WorkerQueue, copier: Copier, metrics: Metrics
) -> None:
    copier.gate = asyncio.Event()
    with pytest.raises(CopyDeadlineExceeded):
        await queue.submit_and_wait(job(), 0.05)
    copier.gate.set()
    await settle()
    assert sample(metrics, "swapper_copies_succeeded_total") == 1


async def test_force_starts_a_waiting_copy_at_once_beyond_the_worker_limit(
    queue: WorkerQueue, copier: Copier
) -> None:
    copier.gate = asyncio.Event()
    queue.submit(job("busy1:1"))
    queue.submit(job("busy2:1"))
    queue.submit(job("waiting:1"))
    await settle()
    assert job("waiting:1").target not in copier.calls
    forced = asyncio.create_task(queue.copy_now(job("waiting:1"), 5))
    await settle()
    assert job("waiting:1").target in copier.calls
    copier.gate.set()
    await forced
    await settle()
    assert copier.calls.count(job("waiting:1").target) == 1


async def test_a_target_copied_recently_is_not_copied_again(
    queue: WorkerQueue, copier: Copier, clock: Clock, metrics: Metrics
) -> None:
    await queue.submit_and_wait(job(), 5)
    clock.now += 3000
    await queue.submit_and_wait(job(), 5)
    queue.submit(job())
    await settle()
    assert len(copier.calls) == 1
    assert sample(metrics, "swapper_copies_not_started_total", reason="fresh") == 2
    clock.now += 700  # past fresh_for (3600 s)
    await queue.submit_and_wait(job(), 5)
    assert len(copier.calls) == 2


async def test_a_tag_pulled_always_is_rechecked_at_most_once_a_minute(
    queue: WorkerQueue, copier: Copier, clock: Clock
) -> None:
    await queue.submit_and_wait(job(recheck=True), 5)
    clock.now += 30
    await queue.submit_and_wait(job(recheck=True), 5)
    assert len(copier.calls) == 1
    clock.now += 31
    await queue.submit_and_wait(job(recheck=True), 5)
    assert len(copier.calls) == 2


async def test_a_failed_copy_is_logged_once_counted_and_held_back(
    queue: WorkerQueue,
    copier: Copier,
    clock: Clock,
    metrics: Metrics,
    capsys: pytest.CaptureFixture[str],
) -> None:
    copier.errors[job().target] = CopyError("registry said no", CopyReason.UNAUTHORIZED)
    queue.submit(job())
    await settle()
    assert sample(metrics, "swapper_copies_failed_total", reason="unauthorized") == 1
    queue.submit(job())  # within the backoff: not started
    with pytest.raises(CopyError) as caught:
        await queue.submit_and_wait(job(), 5)
    assert caught.value.reason is CopyReason.UNAUTHORIZED
    assert len(copier.calls) == 1
    assert sample(metrics, "swapper_copies_not_started_total", reason="backoff") == 2
    clock.now += 40  # past the first backoff (30 s, jitter at most +20%)
    del copier.errors[job().target]
    await queue.submit_and_wait(job(), 5)
    assert len(copier.calls) == 2


async def test_the_backoff_doubles_with_each_consecutive_failure(
    queue: WorkerQueue, copier: Copier, clock: Clock
) -> None:
    copier.errors[job().target] = CopyError("boom", CopyReason.CONNECTION)
    for _ in range(3):
        with pytest.raises(CopyError):
            await queue.submit_and_wait(job(), 5)
        clock.now += 200  # past each backoff so far: 30, 60, 120 s (jitter ±20%)
    assert len(copier.calls) == 3
    queue.submit(job())
    await settle()
    assert len(copier.calls) == 4  # the 4th failure holds the target for 240 s ±20%
    clock.now += 100
    queue.submit(job())
    await settle()
    assert len(copier.calls) == 4


async def test_a_registrys_retry_after_lengthens_the_backoff(
    queue: WorkerQueue, copier: Copier, clock: Clock
) -> None:
    copier.errors[job().target] = TransientCopyError("slow down", CopyReason.RATE_LIMITED, 600)
    queue.submit(job())
    await settle()
    clock.now += 300
    queue.submit(job())
    await settle()
    assert len(copier.calls) == 1
    clock.now += 301
    queue.submit(job())
    await settle()
    assert len(copier.calls) == 2


async def test_an_unexpected_copier_error_fails_that_copy_only(
    queue: WorkerQueue, copier: Copier, metrics: Metrics
) -> None:
    copier.errors[job("broken:1").target] = RuntimeError("bug")
    with pytest.raises(CopyError) as caught:
        await queue.submit_and_wait(job("broken:1"), 5)
    assert caught.value.reason is CopyReason.INTERNAL
    await queue.submit_and_wait(job("fine:1"), 5)
    assert sample(metrics, "swapper_copies_succeeded_total") == 1


async def test_a_hanging_copy_does_not_stall_the_others(queue: WorkerQueue, copier: Copier) -> None:
    copier.hang.add(job("stuck:1").target)
    queue.submit(job("stuck:1"))
    for i in range(4):
        await queue.submit_and_wait(job(f"app{i}:1"), 5)
    assert copier.running == 1  # only the stuck one


async def test_closing_fails_waiters_and_refuses_new_copies(
    queue: WorkerQueue, copier: Copier
) -> None:
    copier.gate = asyncio.Event()
    waiter = asyncio.create_task(queue.submit_and_wait(job(), 5))
    await settle()
    await queue.aclose()
    with pytest.raises(CopyError):
        await waiter
    with pytest.raises(CopyError):
        queue.submit(job("later:1"))


async def test_queue_depth_and_in_flight_are_exported(
    queue: WorkerQueue, copier: Copier, metrics: Metrics
) -> None:
    copier.gate = asyncio.Event()
    for i in range(4):
        queue.submit(job(f"app{i}:1"))
        await settle()
    assert sample(metrics, "swapper_copies_in_flight") == 2
    assert sample(metrics, "swapper_copy_queue_depth") == 2
    copier.gate.set()
    await settle()
    assert sample(metrics, "swapper_copies_in_flight") == 0
    assert sample(metrics, "swapper_copy_queue_depth") == 0


async def test_a_copied_image_that_left_the_mirror_is_copied_again(
    copier: Copier, clock: Clock, metrics: Metrics
) -> None:
    mirror: set[str] = set()

    async def exists(target: str) -> bool:
        return target in mirror

    async def copy(job: CopyJob) -> None:
        await copier(job)
        mirror.add(job.target)

    queue = WorkerQueue(copy, QueueSettings(workers=2, clock=clock), metrics, verify=exists)
    try:
        await queue.submit_and_wait(job(), 5)
        mirror.clear()  # a lifecycle rule expired it
        queue.submit(job())  # recently copied: not started, but verified behind the scenes
        await settle()
        await settle()
        assert len(copier.calls) == 2
        assert job().target in mirror
    finally:
        await queue.aclose()


async def test_a_waiter_is_not_told_copied_recently_when_the_mirror_lost_it(
    copier: Copier, clock: Clock, metrics: Metrics
) -> None:
    mirror: set[str] = set()

    async def exists(target: str) -> bool:
        return target in mirror

    async def copy(job: CopyJob) -> None:
        await copier(job)
        mirror.add(job.target)

    queue = WorkerQueue(copy, QueueSettings(workers=2, clock=clock), metrics, verify=exists)
    try:
        await queue.submit_and_wait(job(), 5)
        mirror.clear()
        await queue.submit_and_wait(job(), 5)
        assert len(copier.calls) == 2
        assert job().target in mirror
    finally:
        await queue.aclose()


async def test_a_target_registry_api_failure_is_counted_as_target(
    queue: WorkerQueue, copier: Copier, metrics: Metrics
) -> None:
    copier.errors[job().target] = RegistryError("CreateRepository: AccessDeniedException")
    with pytest.raises(CopyError) as caught:
        await queue.submit_and_wait(job(), 5)
    assert caught.value.reason is CopyReason.TARGET
    assert sample(metrics, "swapper_copies_failed_total", reason="target") == 1


async def test_every_reason_label_of_failed_copies_is_a_copy_reason(
    queue: WorkerQueue, copier: Copier, metrics: Metrics
) -> None:
    failures: list[Exception] = [
        CopyError("no", CopyReason.DENIED),
        TransientCopyError("slow down", CopyReason.RATE_LIMITED),
        RegistryError("CreateRepository: AccessDeniedException"),
        RuntimeError("bug"),
    ]
    for i, error in enumerate(failures):
        copier.errors[job(f"app{i}:1").target] = error
        with pytest.raises(CopyError):
            await queue.submit_and_wait(job(f"app{i}:1"), 5)
    counted = {
        sample.labels["reason"]
        for family in metrics.registry.collect()
        if family.name == "swapper_copies_failed"
        for sample in family.samples
        if sample.name == "swapper_copies_failed_total"
    }
    assert counted == {"denied", "rate-limited", "target", "internal"}
    assert counted <= set(CopyReason)


async def test_copying_tells_queued_and_running_copies_by_target_and_by_repository(
    queue: WorkerQueue, copier: Copier
) -> None:
    copier.gate = asyncio.Event()
    running, waiting, other = job("nginx:1"), job("nginx:2"), job("redis:7")
    assert not queue.copying(running.target) and not queue.copying_into(running.repository)
    for each in (running, job("busybox:1"), waiting):  # two workers: the third one waits
        queue.submit(each)
    await settle()
    assert queue.queued == 1
    assert queue.copying(running.target) and queue.copying(waiting.target)
    assert queue.copying_into(running.repository)
    assert not queue.copying(other.target) and not queue.copying_into(other.repository)
    copier.gate.set()
    await settle()
    assert not queue.copying(running.target) and not queue.copying(waiting.target)
    assert not queue.copying_into(running.repository)


async def test_a_failed_or_forced_copy_is_counted_until_it_ends(
    queue: WorkerQueue, copier: Copier
) -> None:
    failing, forced = job("nginx:1"), job("redis:7")
    copier.errors[failing.target] = CopyError("refused", CopyReason.REJECTED)
    copier.gate = asyncio.Event()
    queue.submit(failing)
    waiting = asyncio.create_task(queue.copy_now(forced, 5))
    await settle()
    assert queue.copying_into(failing.repository) and queue.copying_into(forced.repository)
    copier.gate.set()
    await waiting
    await settle()
    assert not queue.copying_into(failing.repository)
    assert not queue.copying_into(forced.repository)
    assert not queue._into  # nothing left behind
