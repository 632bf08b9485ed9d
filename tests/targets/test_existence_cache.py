"""Existence checks from a cache that notices when a mirrored image disappears."""

from __future__ import annotations

import asyncio

import pytest
from helpers import Clock

from swapper.targets.cache import ExistenceCache
from swapper.targets.memory import MemoryTarget

IMAGE = "mirror.local/m/docker.io/library/nginx:1.27"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory() -> MemoryTarget:
    return MemoryTarget("mirror.local/m", {IMAGE})


@pytest.fixture
def cache(memory: MemoryTarget, clock: Clock) -> ExistenceCache:
    return ExistenceCache(memory, ttl=60, negative_ttl=5, clock=clock)


async def test_a_thousand_checks_within_the_ttl_ask_the_registry_once(
    cache: ExistenceCache, memory: MemoryTarget, clock: Clock
) -> None:
    for _ in range(1000):
        assert await cache.image_exists(IMAGE)
        clock.now += 0.05  # 50 s in all: inside the 60 s (-10% jitter) ttl
    assert memory.calls["image_exists"] == 1


async def test_a_deleted_image_is_noticed_after_the_ttl(
    cache: ExistenceCache, memory: MemoryTarget, clock: Clock
) -> None:
    missing: list[str] = []
    cache.on_missing = missing.append
    assert await cache.image_exists(IMAGE)
    memory.delete_image(IMAGE)
    clock.now += 67  # past the ttl, jitter included
    assert await cache.image_exists(IMAGE) is False
    assert missing == [IMAGE]


async def test_a_negative_answer_is_kept_only_briefly(
    cache: ExistenceCache, memory: MemoryTarget, clock: Clock
) -> None:
    absent = IMAGE.replace("1.27", "9.9")
    assert await cache.image_exists(absent) is False
    memory.add_image(absent)
    assert await cache.image_exists(absent) is False
    clock.now += 6
    assert await cache.image_exists(absent) is True


async def test_concurrent_checks_of_one_image_share_one_request(
    cache: ExistenceCache, memory: MemoryTarget
) -> None:
    answers = await asyncio.gather(*(cache.image_exists(IMAGE) for _ in range(20)))
    assert all(answers)
    assert memory.calls["image_exists"] == 1


async def test_a_finished_copy_needs_no_check(cache: ExistenceCache, memory: MemoryTarget) -> None:
    copied = IMAGE.replace("1.27", "1.28")
    memory.add_image(copied)
    cache.record_present(copied)
    assert await cache.image_exists(copied)
    assert memory.calls.get("image_exists", 0) == 0


async def test_a_failing_check_reaches_the_caller_and_is_not_cached(
    cache: ExistenceCache, memory: MemoryTarget
) -> None:
    memory.fail_with = ConnectionError("registry down")
    with pytest.raises(ConnectionError):
        await cache.image_exists(IMAGE)
    memory.fail_with = None
    assert await cache.image_exists(IMAGE)


async def test_everything_else_is_the_wrapped_targets(
    cache: ExistenceCache, memory: MemoryTarget
) -> None:
    await cache.ensure_repository("m/docker.io/library/nginx")
    assert memory.repositories == {"m/docker.io/library/nginx"}
    assert cache.endpoint == memory.endpoint
