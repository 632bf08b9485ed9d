"""Private images stay private: access checks against a real registry with bearer tokens.

The registry (Debian ``docker-registry``) trusts a token server that gives anonymous callers
``pull`` under ``public/`` only, and users with the right password everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from helpers import Clock
from registries import (
    FAST_RETRY,
    Fault,
    FaultProxy,
    Registry,
    TokenServer,
    hanging_server,
    make_image,
    make_layer,
    plain_hosts,
    push_image,
    start_registry,
)
from webhook_process import free_port

from swapper.access.checker import RegistryAccess
from swapper.access.keyring import Keyring
from swapper.access.remembered import MemoryPublicAnswers
from swapper.access.verdicts import ANONYMOUS_REFUSED, READABLE, Access, Verdict
from swapper.credentials import Credentials
from swapper.images import ImageReference, parse
from swapper.mirror.queue import Requester
from swapper.oci import RegistryClient


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tokens = TokenServer(
        tmp_path_factory.mktemp("tokens"),
        users={"alice": "alice-secret"},
        public=("public/",),
    ).start()
    started = start_registry(Path(tmp_path_factory.mktemp("registry")), token_server=tokens)
    image = make_image([make_layer("access")])
    push_image(started, "public/app", image, "1.0")
    push_image(started, "private/app", image, "1.0")
    yield started
    started.stop()
    tokens.stop()


SECRETS = {
    "with-alice": Credentials("alice", "alice-secret", source="team/with-alice"),
    "wrong-password": Credentials("alice", "guess", source="team/wrong-password"),
}


@pytest.fixture
async def access(registry: Registry) -> AsyncIterator[tuple[RegistryAccess, Clock]]:
    clock = Clock()

    def keyrings(who: Requester) -> Keyring:
        return Keyring((registry.host, SECRETS[n]) for n in who.pull_secrets if n in SECRETS)

    client = RegistryClient(hosts=plain_hosts(registry), retry=FAST_RETRY)
    remembered = MemoryPublicAnswers(clock=clock)
    yield (
        RegistryAccess(client, keyrings, remembered=remembered, clock=clock, wall_clock=clock),
        clock,
    )
    await client.aclose()


def pod(*secrets: str) -> Requester:
    return Requester("team", tuple(secrets))


def soon(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def readable(checker: RegistryAccess, source: ImageReference, who: Requester) -> bool:
    return (await checker.check(source, who, soon())).readable


def verdict(access: Access | None) -> Verdict | None:
    return None if access is None else access.verdict


async def test_a_public_image_is_readable_by_any_pod(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    assert await readable(checker, parse(f"{registry.host}/public/app:1.0"), pod()) is True


async def test_a_private_image_is_not_readable_by_a_pod_without_secrets(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    assert await readable(checker, parse(f"{registry.host}/private/app:1.0"), pod()) is False


async def test_a_private_image_is_readable_by_a_pod_whose_secret_can_read_it(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    source = parse(f"{registry.host}/private/app:1.0")
    assert await readable(checker, source, pod("with-alice")) is True


async def test_a_pod_with_a_wrong_secret_is_refused(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    source = parse(f"{registry.host}/private/app:1.0")
    assert await readable(checker, source, pod("wrong-password")) is False


async def test_a_later_working_secret_of_the_pod_is_tried_too(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    source = parse(f"{registry.host}/private/app:1.0")
    assert await readable(checker, source, pod("wrong-password", "with-alice")) is True


async def test_answers_are_cached_without_asking_the_registry_again(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, clock = access
    public = parse(f"{registry.host}/public/app:1.0")
    private = parse(f"{registry.host}/private/app:1.0")
    assert checker.known(public, pod()) is None
    await readable(checker, public, pod())
    await readable(checker, private, pod("with-alice"))
    asked = checker.requests
    assert checker.known(public, pod()) == READABLE
    assert checker.known(private, pod("with-alice")) == READABLE
    assert verdict(checker.known(private, pod())) is Verdict.PRIVATE
    assert await readable(checker, private, pod("with-alice")) is True
    assert checker.requests == asked
    clock.now += 3601
    assert checker.known(public, pod()) is None


async def test_the_cached_answer_for_one_pods_secret_is_not_used_for_another_pod(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    private = parse(f"{registry.host}/private/app:1.0")
    await readable(checker, private, pod("with-alice"))
    assert checker.known(private, pod("wrong-password")) is None
    assert await readable(checker, private, pod("wrong-password")) is False


async def test_a_refused_connection_is_unverified_and_says_the_source_is_unreachable(
    access: tuple[RegistryAccess, Clock],
) -> None:
    checker, _ = access
    port = free_port()  # nothing listens: connections are refused
    checker.client = RegistryClient(hosts=plain_hosts(f"127.0.0.1:{port}"), retry=FAST_RETRY)
    try:
        found = await checker.check(parse(f"127.0.0.1:{port}/app:1.0"), pod("with-alice"), soon())
    finally:
        await checker.client.aclose()
    assert found.verdict is Verdict.UNVERIFIED
    assert found.reason.startswith("source unreachable: connect")


async def test_an_anonymous_refusal_is_worded_as_private_or_not_there(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    found = await checker.check(parse(f"{registry.host}/private/app:1.0"), pod(), soon())
    assert found == Access(Verdict.PRIVATE, ANONYMOUS_REFUSED)


async def test_a_hanging_source_is_answered_unverified_at_the_deadline(
    access: tuple[RegistryAccess, Clock],
) -> None:
    checker, _ = access
    with hanging_server() as url:
        host = url.removeprefix("https://")
        checker.client = RegistryClient(hosts=plain_hosts(host), retry=FAST_RETRY)
        loop = asyncio.get_running_loop()
        started = loop.time()
        found = await checker.check(parse(f"{host}/app:1.0"), pod(), started + 0.3)
        waited = loop.time() - started
        await checker.aclose()
        await checker.client.aclose()
    assert found == Access(Verdict.UNVERIFIED, "source unreachable: no answer in time")
    assert 0.25 <= waited < 1.0


async def test_while_a_source_hangs_later_checks_neither_wait_nor_ask_again(
    access: tuple[RegistryAccess, Clock],
) -> None:
    checker, _ = access
    with hanging_server() as url:
        host = url.removeprefix("https://")
        checker.client = RegistryClient(hosts=plain_hosts(host), retry=FAST_RETRY)
        source = parse(f"{host}/app:1.0")
        loop = asyncio.get_running_loop()
        first = await asyncio.gather(
            *(checker.check(source, pod(), loop.time() + 0.2) for _ in range(5))
        )
        started = loop.time()
        again = await checker.check(source, pod(), started + 5)
        waited = loop.time() - started
        known = checker.known(source, pod())
        await checker.aclose()
        await checker.client.aclose()
    assert {a.verdict for a in first} == {Verdict.UNVERIFIED}
    assert again.verdict is Verdict.UNVERIFIED and waited < 0.1
    assert known is not None and known.verdict is Verdict.UNVERIFIED
    assert checker.requests == 1  # one lookup in flight for all six


async def test_a_registry_answering_503_is_unverified(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    proxy = await FaultProxy(registry.host).start()
    proxy.add(Fault("status", "/manifests/", status=503, times=100))
    checker.client = RegistryClient(hosts=plain_hosts(proxy), retry=FAST_RETRY)
    try:
        found = await checker.check(parse(f"{proxy.host}/public/app:1.0"), pod(), soon())
    finally:
        await checker.client.aclose()
        await proxy.aclose()
    assert found.verdict is Verdict.UNVERIFIED
    assert found.reason.startswith("source unreachable: server-error")


async def test_during_an_outage_the_last_readable_answer_still_counts(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, clock = access
    proxy = await FaultProxy(registry.host).start()
    checker.client = RegistryClient(hosts=plain_hosts(proxy), retry=FAST_RETRY)
    source = parse(f"{proxy.host}/public/app:1.0")
    try:
        assert await readable(checker, source, pod()) is True
        clock.now += 3601  # the answer is stale, and the source goes down
        proxy.add(Fault("status", "/manifests/", status=503, times=100))
        assert await readable(checker, source, pod()) is True
    finally:
        await checker.client.aclose()
        await proxy.aclose()


async def test_cancelling_one_check_leaves_the_others_answer_intact(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    proxy = await FaultProxy(registry.host).start()
    proxy.add(Fault("delay", "/manifests/", seconds=0.3))
    checker.client = RegistryClient(hosts=plain_hosts(proxy), retry=FAST_RETRY)
    source = parse(f"{proxy.host}/public/app:1.0")
    try:
        cancelled = asyncio.create_task(checker.check(source, pod(), soon()))
        waiting = asyncio.create_task(checker.check(source, pod(), soon()))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        assert (await waiting).readable is True
    finally:
        await checker.client.aclose()
        await proxy.aclose()
    assert cancelled.cancelled()
    assert checker.requests == 1


async def test_answers_in_memory_are_bounded(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    _, clock = access
    client = RegistryClient(hosts=plain_hosts(registry), retry=FAST_RETRY)
    checker = RegistryAccess(client, lambda _: Keyring(), cache_size=100, clock=clock)
    try:
        for n in range(300):
            await checker.check(parse(f"{registry.host}/public/app:missing-{n}"), pod(), soon())
    finally:
        await client.aclose()
    assert len(checker._answers) == 100
    assert checker._answers.evictions == 200


async def test_registries_shared_by_the_operator_are_readable_by_every_pod(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    checker.shared = frozenset({registry.host})
    source = parse(f"{registry.host}/private/app:1.0")
    assert checker.known(source, pod()) == READABLE
    assert await readable(checker, source, pod()) is True
    assert checker.requests == 0


async def test_a_missing_tag_does_not_make_the_public_repository_look_private(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    assert await readable(checker, parse(f"{registry.host}/public/app:no-such-tag"), pod()) is False
    assert checker.known(parse(f"{registry.host}/public/app:1.0"), pod()) is None  # not cached
    assert await readable(checker, parse(f"{registry.host}/public/app:1.0"), pod()) is True


async def test_a_missing_tag_is_remembered_for_that_tag(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    missing = parse(f"{registry.host}/public/app:no-such-tag")
    assert await readable(checker, missing, pod()) is False
    asked = checker.requests
    assert verdict(checker.known(missing, pod())) is Verdict.PRIVATE
    assert await readable(checker, missing, pod()) is False
    assert checker.requests == asked
