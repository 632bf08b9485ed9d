"""The async building blocks every cache uses: one call per key in flight, and a bounded map."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from helpers import Clock

from swapper.aio import SingleFlight, TTLMap
from swapper.config import AWSRegistry
from swapper.errors import CopyError, CopyReason
from swapper.images import parse
from swapper.mirror.queue import CopyJob
from swapper.mirror.workers import QueueSettings, WorkerQueue
from swapper.oci._auth import TokenCache, TokenKey
from swapper.targets import ecr
from swapper.targets.cache import ExistenceCache
from swapper.targets.memory import MemoryTarget


class Call:
    """A call that counts its runs and finishes (or fails) when the test says so."""

    def __init__(self, result: str = "answer") -> None:
        self.result = result
        self.runs = 0
        self.release = asyncio.Event()
        self.error: Exception | None = None

    async def __call__(self) -> str:
        self.runs += 1
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the running loop's exception handler ("exception was never retrieved")."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# -- SingleFlight ---------------------------------------------------------------------------


async def test_concurrent_callers_of_one_key_share_one_call() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = Call()
    waiters = [asyncio.create_task(flight.do("k", call)) for _ in range(5)]
    await settle()
    call.release.set()
    assert await asyncio.gather(*waiters) == ["answer"] * 5
    assert call.runs == 1


async def test_cancelling_one_waiter_leaves_the_others_results_intact() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = Call()
    first = asyncio.create_task(flight.do("k", call))  # the one that started the call
    others = [asyncio.create_task(flight.do("k", call)) for _ in range(3)]
    await settle()
    first.cancel()
    await settle()
    call.release.set()
    assert await asyncio.gather(*others) == ["answer"] * 3
    assert first.cancelled()
    assert call.runs == 1


async def test_an_error_reaches_every_waiter_and_the_next_call_runs_again() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = Call()
    call.error = ConnectionError("registry down")
    waiters = [asyncio.create_task(flight.do("k", call)) for _ in range(3)]
    await settle()
    call.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    call.error = None
    assert await flight.do("k", call) == "answer"
    assert call.runs == 2


async def test_the_key_is_forgotten_when_the_call_ends() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = Call()
    call.release.set()
    await flight.do("k", call)
    assert "k" not in flight
    await flight.do("k", call)
    assert call.runs == 2


async def test_a_failed_call_whose_waiters_all_gave_up_reports_nothing_to_the_loop(
    loop_errors: list[dict[str, Any]],
) -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = Call()
    call.error = ConnectionError("registry down")
    waiters = [asyncio.create_task(flight.do("k", call)) for _ in range(2)]
    await settle()
    for waiter in waiters:
        waiter.cancel()
    await settle()
    call.release.set()
    await settle()
    del waiters
    gc.collect()  # a never-retrieved exception is reported when its task is collected
    assert loop_errors == []


async def test_a_failed_call_started_without_a_waiter_reports_nothing_to_the_loop(
    loop_errors: list[dict[str, Any]],
) -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = Call()
    call.error = ConnectionError("registry down")
    flight.start("k", call)
    call.release.set()
    await settle()
    gc.collect()
    assert loop_errors == []


async def test_the_task_in_flight_is_found_by_its_key() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = Call()
    task = flight.start("k", call)
    assert flight.get("k") is task
    call.release.set()
    await task
    await settle()
    assert flight.get("k") is None


async def test_keys_are_the_calls_in_flight_now() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    first, second = Call(), Call()
    task = flight.start("a", first)
    flight.start("b", second)
    keys = flight.keys()
    assert sorted(keys) == ["a", "b"]
    first.release.set()
    await task
    await settle()
    assert flight.keys() == ["b"]
    assert sorted(keys) == ["a", "b"]  # a snapshot, not a view
    second.release.set()
    await settle()
    assert flight.keys() == []


async def test_closing_cancels_the_calls_in_flight() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    task = flight.start("k", Call())
    await settle()
    await flight.aclose()
    assert task.cancelled()
    assert len(flight) == 0


# -- TTLMap ---------------------------------------------------------------------------------


def test_the_least_recently_used_entry_is_evicted_beyond_maxsize() -> None:
    items: TTLMap[str, int] = TTLMap(2, Clock(1000.0))
    items.set("a", 1, 60)
    items.set("b", 2, 60)
    items.set("c", 3, 60)
    assert (items.get("a"), items.get("b"), items.get("c")) == (None, 2, 3)
    assert (len(items), items.evictions) == (2, 1)


def test_reading_an_entry_keeps_it_from_eviction() -> None:
    items: TTLMap[str, int] = TTLMap(2, Clock(1000.0))
    items.set("a", 1, 60)
    items.set("b", 2, 60)
    items.get("a")
    items.set("c", 3, 60)
    assert (items.get("a"), items.get("b")) == (1, None)


def test_each_entry_expires_after_its_own_ttl() -> None:
    clock = Clock(1000.0)
    items: TTLMap[str, int] = TTLMap(10, clock)
    items.set("short", 1, 5)
    items.set("long", 2, 60)
    clock.now += 10
    assert (items.get("short"), items.get("long")) == (None, 2)


def test_an_expired_entry_is_still_there_as_stale() -> None:
    clock = Clock(1000.0)
    items: TTLMap[str, int] = TTLMap(10, clock)
    items.set("a", 1, 5)
    assert items.entry("a") == (1, True)
    clock.now += 10
    assert items.entry("a") == (1, False)
    assert items.entry("never") is None


def test_membership_is_for_fresh_entries_only() -> None:
    clock = Clock(1000.0)
    items: TTLMap[str, int] = TTLMap(10, clock)
    items.set("a", 1, 5)
    assert "a" in items
    clock.now += 5
    assert "a" not in items


def test_a_map_of_no_entries_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TTLMap(0)


# -- the adopters' maps are bounded ------------------------------------------------------------


async def test_the_existence_cache_keeps_at_most_max_entries_answers() -> None:
    memory = MemoryTarget("mirror.local/m")
    cache = ExistenceCache(memory, max_entries=10)
    for i in range(100):
        await cache.image_exists(f"mirror.local/m/app{i}:1")
    await cache.image_exists("mirror.local/m/app0:1")  # pushed out by the 99 after it
    assert cache.requests == 101
    assert len(cache._entries) == 10


async def test_the_token_cache_keeps_at_most_size_tokens() -> None:
    tokens = TokenCache(size=10)
    fetched: list[str] = []

    def fetch(repository: str) -> Callable[[], Awaitable[tuple[str, float]]]:
        async def call() -> tuple[str, float]:
            fetched.append(repository)
            return f"token-{repository}", 300.0

        return call

    def key(repository: str) -> TokenKey:
        return ("registry.local", None, (f"repository:{repository}:pull",))

    for i in range(100):
        await tokens.get_or_fetch(key(f"app{i}"), fetch(f"app{i}"))
    await tokens.get_or_fetch(key("app0"), fetch("app0"))
    assert len(fetched) == 101


async def test_a_token_fetch_goes_on_for_the_others_when_the_request_that_started_it_gives_up() -> (
    None
):
    tokens = TokenCache()
    call = Call("token")
    fetches = [0]

    async def fetch() -> tuple[str, float]:
        fetches[0] += 1
        return await call(), 300.0

    key: TokenKey = ("registry.local", None, ("repository:app:pull",))
    first = asyncio.create_task(tokens.get_or_fetch(key, fetch))
    others = [asyncio.create_task(tokens.get_or_fetch(key, fetch)) for _ in range(3)]
    await settle()
    first.cancel()
    await settle()
    call.release.set()
    assert await asyncio.gather(*others) == ["token"] * 3
    assert fetches[0] == 1


async def test_ecr_remembers_a_bounded_number_of_ensured_repositories(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ecr, "ENSURED_REPOSITORIES", 10)
    target = ecr.ECRTarget(
        AWSRegistry.model_validate({"accountId": "123456789012", "region": "eu-west-1"})
    )
    checked: list[str] = []

    async def create(repository: str) -> bool:  # no API: the repository "already exists"
        checked.append(repository)
        return False

    async def reconcile(repository: str) -> None:
        pass

    monkeypatch.setattr(target, "_create", create)
    monkeypatch.setattr(target, "_reconcile", reconcile)
    try:
        for i in range(100):
            await target.ensure_repository(f"mirror/app{i}")
        await target.ensure_repository("mirror/app0")  # forgotten: checked again
    finally:
        await target.aclose()
    assert len(checked) == 101


def queue_of(copier: Callable[[CopyJob], Awaitable[None]], clock: Clock) -> WorkerQueue:
    return WorkerQueue(copier, QueueSettings(workers=1, max_remembered=10, clock=clock))


def copy_job(i: int) -> CopyJob:
    ref = parse(f"registry.local/app{i}:1")
    return CopyJob(ref, f"m.local/{ref.mirror_path()}:1", ref.mirror_path())


async def test_the_copy_queue_remembers_a_bounded_number_of_failed_targets() -> None:
    started: list[str] = []

    async def failing(job: CopyJob) -> None:
        started.append(job.target)
        raise CopyError("refused", CopyReason.DENIED)

    queue = queue_of(failing, Clock(1000.0))
    try:
        for i in range(100):
            with pytest.raises(CopyError):
                await queue.submit_and_wait(copy_job(i), 5)
        # Its backoff (30 s at least) is not over, but it was forgotten: copied again.
        with pytest.raises(CopyError, match="refused"):
            await queue.submit_and_wait(copy_job(0), 5)
    finally:
        await queue.aclose()
    assert len(started) == 101


async def test_the_copy_queue_remembers_a_bounded_number_of_copied_targets() -> None:
    started: list[str] = []

    async def copying(job: CopyJob) -> None:
        started.append(job.target)

    queue = queue_of(copying, Clock(1000.0))
    try:
        for i in range(100):
            await queue.submit_and_wait(copy_job(i), 5)
        await queue.submit_and_wait(copy_job(0), 5)  # fresh for an hour, but forgotten
    finally:
        await queue.aclose()
    assert len(started) == 101


class Held:
    """What a failing copy's frames hold (buffers, connections): weakly referenceable."""


@pytest.mark.parametrize("waits", [False, True], ids=["handed-over", "waited-for"])
@pytest.mark.parametrize("error", [CopyError, RuntimeError])
async def test_a_failed_copy_is_freed_at_once_not_left_to_the_cycle_collector(
    error: type[Exception], waits: bool
) -> None:
    refs: list[weakref.ref[Held]] = []

    async def failing(job: CopyJob) -> None:
        held = Held()  # a local of a frame the error's traceback keeps
        refs.append(weakref.ref(held))
        raise error("refused", "denied")

    queue = queue_of(failing, Clock(1000.0))
    gc.disable()  # what a cycle would keep stays, then
    try:
        if waits:
            with contextlib.suppress(CopyError):
                await queue.submit_and_wait(copy_job(1), 5)
        else:
            queue.submit(copy_job(1))
        await settle()
        assert len(refs) == 1
        assert refs[0]() is None
    finally:
        gc.enable()
        await queue.aclose()
