"""The copy queue's two priorities: admission's copies go first, backfill keeps a worker free."""

from __future__ import annotations

import asyncio
import gc
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from helpers import Clock

from swapper.errors import CopyError, CopyReason, QueueFull
from swapper.images import parse
from swapper.metrics import Metrics
from swapper.mirror.memory import MemoryCopyQueue
from swapper.mirror.queue import CopyJob, CopyQueue, Priority
from swapper.mirror.workers import QueueSettings, WorkerQueue
from swapper.targets.memory import MemoryTarget

BACKFILL = Priority.BACKFILL


def job(name: str) -> CopyJob:
    ref = parse(f"{name}:1")
    return CopyJob(ref, f"m.local/{ref.mirror_path()}:1", ref.mirror_path())


def target(name: str) -> str:
    return job(name).target


class Copier:
    """Each copy runs until the test releases it (or :attr:`open` lets every copy through)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.running: set[str] = set()
        self.most_running = 0
        self.finished = 0
        self.open = False
        self.fail: set[str] = set()
        self._release: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._finished: dict[int, asyncio.Event] = {}

    async def __call__(self, job: CopyJob) -> None:
        self.started.append(job.target)
        self.running.add(job.target)
        self.most_running = max(self.most_running, len(self.running))
        self._started[job.target].set()
        try:
            if not self.open:
                await self._release[job.target].wait()
            if job.target in self.fail:
                raise CopyError("refused", CopyReason.DENIED)
        finally:
            self.running.discard(job.target)
            self.finished += 1
            if self.finished in self._finished:
                self._finished[self.finished].set()

    def release(self, *names: str) -> None:
        for name in names:
            self._release[target(name)].set()

    def release_all(self) -> None:
        self.open = True
        for event in self._release.values():
            event.set()

    async def started_copy(self, name: str) -> None:
        await asyncio.wait_for(self._started[target(name)].wait(), 5)

    async def finished_copies(self, count: int) -> None:
        if self.finished < count:
            await asyncio.wait_for(self._finished.setdefault(count, asyncio.Event()).wait(), 5)


@pytest.fixture
def copier() -> Copier:
    return Copier()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def make_queue(copier: Copier, metrics: Metrics) -> AsyncIterator[Callable[..., WorkerQueue]]:
    """Makes worker queues over ``copier`` (settings as keywords); closes them afterwards."""
    made: list[WorkerQueue] = []

    def make(**settings: Any) -> WorkerQueue:
        made.append(WorkerQueue(copier, QueueSettings(clock=Clock(1000.0), **settings), metrics))
        return made[-1]

    yield make
    copier.release_all()
    for queue in made:
        await queue.aclose()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def settle() -> None:
    """Let every task that can run, run (to see that something did not start)."""
    for _ in range(20):
        await asyncio.sleep(0)


def backfill(queue: WorkerQueue, count: int) -> None:
    for i in range(count):
        queue.submit(job(f"bf{i}"), BACKFILL)


async def test_an_admission_copy_starts_before_waiting_backfill_without_waiting_for_one(
    make_queue: Callable[..., WorkerQueue], copier: Copier
) -> None:
    queue = make_queue(workers=4)
    backfill(queue, 100)
    await copier.started_copy("bf2")
    queue.submit(job("urgent"))
    await copier.started_copy("urgent")
    assert copier.started == [target("bf0"), target("bf1"), target("bf2"), target("urgent")]
    assert copier.running == {target("bf0"), target("bf1"), target("bf2"), target("urgent")}
    assert queue.queued_backfill == 97


async def test_waiting_admission_jobs_are_taken_before_every_waiting_backfill_job(
    make_queue: Callable[..., WorkerQueue], copier: Copier
) -> None:
    queue = make_queue(workers=4)
    backfill(queue, 100)
    for name in ("a1", "a2", "a3"):
        queue.submit(job(name))
    await copier.started_copy("a1")
    await settle()
    assert queue.queued == 2
    copier.release("bf0")
    await copier.started_copy("a2")
    copier.release("bf1")
    await copier.started_copy("a3")
    copier.release("bf2")
    await copier.started_copy("bf3")
    assert copier.started[3:] == [target(n) for n in ("a1", "a2", "a3", "bf3")]


async def test_backfill_never_uses_the_last_worker(
    make_queue: Callable[..., WorkerQueue], copier: Copier, metrics: Metrics
) -> None:
    queue = make_queue(workers=4)
    backfill(queue, 100)
    await settle()
    assert len(copier.running) == 3
    assert sample(metrics, "swapper_copy_queue_depth") == 97
    copier.release_all()
    await copier.finished_copies(100)
    assert copier.most_running == 3
    assert len(set(copier.started)) == 100
    assert queue.queued_backfill == 0


async def test_with_one_worker_backfill_waits_for_admission_and_admission_runs_beside_it(
    make_queue: Callable[..., WorkerQueue], copier: Copier
) -> None:
    queue = make_queue(workers=1)
    backfill(queue, 2)
    await copier.started_copy("bf0")
    queue.submit(job("a1"))
    await copier.started_copy("a1")  # beside the backfill copy, not behind it
    queue.submit(job("a2"))
    await settle()
    assert copier.running == {target("bf0"), target("a1")}
    copier.release("a1")
    await copier.started_copy("a2")
    copier.release("a2")
    await copier.finished_copies(2)
    await settle()
    assert target("bf1") not in copier.started  # the one worker is still the backfill copy's
    copier.release("bf0")
    await copier.started_copy("bf1")


async def test_a_waiting_backfill_job_that_admission_asks_for_moves_to_the_admission_line(
    make_queue: Callable[..., WorkerQueue], copier: Copier, metrics: Metrics
) -> None:
    queue = make_queue(workers=2)
    backfill(queue, 3)  # bf0 runs; bf1, bf2 wait
    queue.submit(job("a1"))
    queue.submit(job("a2"))  # waits
    await copier.started_copy("a1")
    queue.submit(job("bf2"))  # promoted, behind a2
    assert (queue.queued, queue.queued_backfill) == (2, 1)
    assert sample(metrics, "swapper_copies_not_started_total", reason="deduplicated") == 1
    copier.release("a1")
    await copier.started_copy("a2")
    copier.release("a2")
    await copier.started_copy("bf2")
    assert target("bf1") not in copier.started
    copier.release("bf2")
    await copier.finished_copies(3)
    assert copier.started.count(target("bf2")) == 1


async def test_a_waiter_for_a_waiting_backfill_job_promotes_it_and_shares_its_copy(
    make_queue: Callable[..., WorkerQueue], copier: Copier
) -> None:
    queue = make_queue(workers=2)
    backfill(queue, 3)
    await copier.started_copy("bf0")
    waiter = asyncio.create_task(queue.submit_and_wait(job("bf2"), 5))
    await copier.started_copy("bf2")  # on the worker backfill leaves free
    copier.release("bf2")
    await waiter
    assert copier.started == [target("bf0"), target("bf2")]


async def test_force_starts_a_waiting_backfill_job_at_once(
    make_queue: Callable[..., WorkerQueue], copier: Copier
) -> None:
    queue = make_queue(workers=2)
    backfill(queue, 3)
    queue.submit(job("a1"))
    await copier.started_copy("a1")
    forced = asyncio.create_task(queue.copy_now(job("bf2"), 5))
    await copier.started_copy("bf2")
    assert (queue.queued, queue.queued_backfill) == (0, 1)
    copier.release("bf2")
    await forced
    copier.release("bf0")  # backfill's one worker (of two) is free again
    await copier.started_copy("bf1")
    assert copier.started.count(target("bf2")) == 1


async def test_backfill_has_its_own_bound_with_its_own_message_and_count(
    make_queue: Callable[..., WorkerQueue], copier: Copier, metrics: Metrics
) -> None:
    queue = make_queue(workers=2, max_queued=2, max_backfill_queued=5)
    backfill(queue, 6)  # one runs, five wait
    with pytest.raises(QueueFull, match="backfill copy queue is full"):
        queue.submit(job("bf6"), BACKFILL)
    assert queue.queued_backfill == 5
    assert sample(metrics, "swapper_copies_not_started_total", reason="backfill-queue-full") == 1
    assert sample(metrics, "swapper_copies_not_started_total", reason="queue-full") == 0


async def test_admissions_bound_is_unaffected_by_waiting_backfill_jobs(
    make_queue: Callable[..., WorkerQueue], copier: Copier, metrics: Metrics
) -> None:
    queue = make_queue(workers=2, max_queued=2, max_backfill_queued=5)
    backfill(queue, 6)
    for name in ("a0", "a1", "a2"):  # one runs, two wait
        queue.submit(job(name))
    with pytest.raises(QueueFull) as refused:
        queue.submit(job("a3"))
    assert "backfill" not in str(refused.value)
    assert (queue.queued, queue.queued_backfill) == (2, 5)
    assert sample(metrics, "swapper_copies_not_started_total", reason="queue-full") == 1
    assert sample(metrics, "swapper_copy_queue_depth") == 7


async def test_a_promotion_into_a_full_admission_line_is_refused_and_keeps_its_place(
    make_queue: Callable[..., WorkerQueue], copier: Copier
) -> None:
    queue = make_queue(workers=2, max_queued=1)
    backfill(queue, 3)
    queue.submit(job("a0"))
    queue.submit(job("a1"))  # waits: the admission line is full
    with pytest.raises(QueueFull):
        queue.submit(job("bf2"))
    assert (queue.queued, queue.queued_backfill) == (1, 2)
    copier.release_all()
    await copier.finished_copies(5)
    assert sorted(copier.started) == sorted(target(n) for n in ("bf0", "bf1", "bf2", "a0", "a1"))


async def test_closing_drops_waiting_backfill_jobs_and_fails_their_waiters_cleanly(
    make_queue: Callable[..., WorkerQueue], copier: Copier, metrics: Metrics
) -> None:
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    queue = make_queue(workers=4)
    backfill(queue, 100)
    queue.submit(job("a1"))
    waiter = asyncio.create_task(queue.submit_and_wait(job("bf50"), 5))  # promoted, waits
    await copier.started_copy("a1")
    await settle()
    await queue.aclose()
    with pytest.raises(CopyError) as caught:
        await waiter
    assert caught.value.reason is CopyReason.SHUTDOWN
    await settle()
    assert len(copier.started) == 4
    assert copier.running == set()
    assert (queue.queued, queue.queued_backfill, queue.in_flight) == (0, 0, 0)
    assert sample(metrics, "swapper_copy_queue_depth") == 0
    with pytest.raises(CopyError):
        queue.submit(job("later"), BACKFILL)
    gc.collect()
    loop.set_exception_handler(handler)
    assert unretrieved == []


async def test_requests_at_either_priority_share_one_copy(
    make_queue: Callable[..., WorkerQueue], copier: Copier, metrics: Metrics
) -> None:
    queue = make_queue(workers=2)
    queue.submit(job("shared"), BACKFILL)
    await copier.started_copy("shared")
    queue.submit(job("shared"))  # running at backfill: shared, not started again
    queue.submit(job("waiting"))
    queue.submit(job("queued"))  # waits at admission
    queue.submit(job("queued"), BACKFILL)  # stays at admission
    assert (queue.queued, queue.queued_backfill) == (1, 0)
    assert sample(metrics, "swapper_copies_not_started_total", reason="deduplicated") == 2
    copier.release_all()
    await copier.finished_copies(3)
    queue.submit(job("shared"))  # copied recently, whoever asked
    queue.submit(job("queued"), BACKFILL)
    await settle()
    assert sorted(copier.started) == sorted(target(n) for n in ("shared", "waiting", "queued"))
    assert sample(metrics, "swapper_copies_not_started_total", reason="fresh") == 2


async def test_a_failed_backfill_copy_holds_admission_back_too(
    make_queue: Callable[..., WorkerQueue], copier: Copier
) -> None:
    queue = make_queue(workers=2)
    copier.fail.add(target("broken"))
    copier.open = True
    queue.submit(job("broken"), BACKFILL)
    await copier.finished_copies(1)
    with pytest.raises(CopyError) as caught:
        await queue.submit_and_wait(job("broken"), 5)
    assert caught.value.reason is CopyReason.DENIED
    assert copier.started == [target("broken")]


@pytest.mark.parametrize("priority", list(Priority))
async def test_an_image_gone_from_the_mirror_is_copied_again_at_the_priority_that_asked(
    copier: Copier, metrics: Metrics, priority: Priority
) -> None:
    async def exists(target: str) -> bool:
        return False

    queue = WorkerQueue(copier, QueueSettings(workers=2, clock=Clock(1000.0)), metrics, exists)
    try:
        copier.open = True
        queue.submit(job("gone"), BACKFILL)
        await copier.finished_copies(1)
        copier.open = False
        queue.submit(job("busy-backfill"), BACKFILL)
        queue.submit(job("busy"))
        await copier.started_copy("busy")
        queue.submit(job("gone"), priority)  # fresh, but verified and found gone
        await settle()
        waiting = (queue.queued, queue.queued_backfill)
        assert waiting == ((1, 0) if priority is Priority.ADMISSION else (0, 1))
    finally:
        copier.release_all()
        await queue.aclose()


async def test_the_memory_double_records_each_hand_overs_priority() -> None:
    queue = MemoryCopyQueue(MemoryTarget("m.local"))
    assert isinstance(queue, CopyQueue)
    queue.submit(job("a"))
    queue.submit(job("b"), BACKFILL)
    await queue.aclose()
    assert queue.submitted == [(target("a"), Priority.ADMISSION), (target("b"), BACKFILL)]
