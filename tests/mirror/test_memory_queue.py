from __future__ import annotations

import asyncio

import pytest

from swapper.errors import CopyDeadlineExceeded, CopyError, QueueFull
from swapper.images import parse
from swapper.mirror.memory import MemoryCopyQueue
from swapper.mirror.queue import CopyJob
from swapper.targets.memory import MemoryTarget


def job(name: str = "nginx:1") -> CopyJob:
    ref = parse(name)
    return CopyJob(ref, f"m.local/{ref.mirror_path()}:{ref.tag}", ref.mirror_path())


async def test_two_waiters_for_the_same_image_share_one_copy() -> None:
    queue = MemoryCopyQueue(MemoryTarget("m.local"), delay=0.05)
    await asyncio.gather(queue.submit_and_wait(job(), 1), queue.submit_and_wait(job(), 1))
    assert len(queue.jobs) == 1


async def test_a_waiter_past_its_deadline_does_not_cancel_the_shared_copy() -> None:
    target = MemoryTarget("m.local")
    queue = MemoryCopyQueue(target, delay=0.1)
    with pytest.raises(CopyDeadlineExceeded):
        await queue.submit_and_wait(job(), 0.01)
    await queue.submit_and_wait(job(), 1)
    assert job().target in target.images
    assert len(queue.jobs) == 1


async def test_a_full_queue_refuses_new_jobs() -> None:
    queue = MemoryCopyQueue(MemoryTarget("m.local"), bound=1, delay=1)
    queue.submit(job("a:1"))
    with pytest.raises(QueueFull):
        queue.submit(job("b:1"))
    await queue.aclose()


async def test_a_failed_copy_raises_copy_error_to_its_waiter() -> None:
    queue = MemoryCopyQueue(MemoryTarget("m.local"))
    queue.fail.add(job().target)
    with pytest.raises(CopyError):
        await queue.copy_now(job(), 1)


async def test_copying_tells_copies_in_flight_by_target_and_by_repository() -> None:
    queue = MemoryCopyQueue(MemoryTarget("m.local"), delay=0.05)
    queued, forced, other = job("nginx:1"), job("redis:7"), job("busybox:1")
    queue.submit(queued)
    waiting = asyncio.create_task(queue.copy_now(forced, 1))
    await asyncio.sleep(0)
    assert queue.copying(queued.target) and queue.copying_into(queued.repository)
    assert queue.copying(forced.target) and queue.copying_into(forced.repository)
    assert not queue.copying(other.target) and not queue.copying_into(other.repository)
    await waiting
    await asyncio.sleep(0.1)
    assert not queue.copying(queued.target) and not queue.copying_into(queued.repository)
    assert not queue.copying_into(forced.repository)
