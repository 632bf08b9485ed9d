"""Private images stay private: access checks against a real registry with bearer tokens.

The registry (Debian ``docker-registry``) trusts a token server that gives anonymous callers
``pull`` under ``public/`` only, and users with the right password everything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from registries import (
    FAST_RETRY,
    Registry,
    TokenServer,
    make_image,
    make_layer,
    plain_hosts,
    push_image,
    start_registry,
)

from swapper.images import parse
from swapper.kube.keyring import Keyring, RegistryAuth
from swapper.mirror.access import RegistryAccess
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


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


SECRETS = {
    "with-alice": RegistryAuth("alice", "alice-secret", source="team/with-alice"),
    "wrong-password": RegistryAuth("alice", "guess", source="team/wrong-password"),
}


@pytest.fixture
async def access(registry: Registry) -> AsyncIterator[tuple[RegistryAccess, Clock]]:
    clock = Clock()

    def keyrings(who: Requester) -> Keyring:
        return Keyring((registry.host, SECRETS[n]) for n in who.pull_secrets if n in SECRETS)

    client = RegistryClient(hosts=plain_hosts(registry), retry=FAST_RETRY)
    yield RegistryAccess(client, keyrings, clock=clock), clock
    await client.aclose()


def pod(*secrets: str) -> Requester:
    return Requester("team", tuple(secrets))


async def test_a_public_image_is_readable_by_any_pod(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    assert await checker.allows(parse(f"{registry.host}/public/app:1.0"), pod()) is True


async def test_a_private_image_is_not_readable_by_a_pod_without_secrets(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    assert await checker.allows(parse(f"{registry.host}/private/app:1.0"), pod()) is False


async def test_a_private_image_is_readable_by_a_pod_whose_secret_can_read_it(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    source = parse(f"{registry.host}/private/app:1.0")
    assert await checker.allows(source, pod("with-alice")) is True


async def test_a_pod_with_a_wrong_secret_is_refused(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    source = parse(f"{registry.host}/private/app:1.0")
    assert await checker.allows(source, pod("wrong-password")) is False


async def test_a_later_working_secret_of_the_pod_is_tried_too(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    source = parse(f"{registry.host}/private/app:1.0")
    assert await checker.allows(source, pod("wrong-password", "with-alice")) is True


async def test_answers_are_cached_without_asking_the_registry_again(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, clock = access
    public = parse(f"{registry.host}/public/app:1.0")
    private = parse(f"{registry.host}/private/app:1.0")
    assert checker.known(public, pod()) is None
    await checker.allows(public, pod())
    await checker.allows(private, pod("with-alice"))
    asked = checker.requests
    assert checker.known(public, pod()) is True
    assert checker.known(private, pod("with-alice")) is True
    assert checker.known(private, pod()) is False
    assert await checker.allows(private, pod("with-alice")) is True
    assert checker.requests == asked
    clock.now += 3601
    assert checker.known(public, pod()) is None


async def test_the_cached_answer_for_one_pods_secret_is_not_used_for_another_pod(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    private = parse(f"{registry.host}/private/app:1.0")
    await checker.allows(private, pod("with-alice"))
    assert checker.known(private, pod("wrong-password")) is None
    assert await checker.allows(private, pod("wrong-password")) is False


async def test_an_unreachable_source_is_not_swapped_to_when_nothing_is_known(
    access: tuple[RegistryAccess, Clock],
) -> None:
    checker, _ = access
    # Port 9 on loopback: nothing listens, connections are refused.
    source = parse("127.0.0.1:9/private/app:1.0")
    checker.client = RegistryClient(hosts=plain_hosts("127.0.0.1:9"), retry=FAST_RETRY)
    try:
        assert await checker.allows(source, pod("with-alice")) is False
    finally:
        await checker.client.aclose()


async def test_registries_shared_by_the_operator_are_readable_by_every_pod(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    checker.shared = frozenset({registry.host})
    source = parse(f"{registry.host}/private/app:1.0")
    assert checker.known(source, pod()) is True
    assert await checker.allows(source, pod()) is True
    assert checker.requests == 0


async def test_a_missing_tag_does_not_make_the_public_repository_look_private(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    assert await checker.allows(parse(f"{registry.host}/public/app:no-such-tag"), pod()) is False
    assert checker.known(parse(f"{registry.host}/public/app:1.0"), pod()) is None  # not cached
    assert await checker.allows(parse(f"{registry.host}/public/app:1.0"), pod()) is True


async def test_a_missing_tag_is_remembered_for_that_tag(
    registry: Registry, access: tuple[RegistryAccess, Clock]
) -> None:
    checker, _ = access
    missing = parse(f"{registry.host}/public/app:no-such-tag")
    assert await checker.allows(missing, pod()) is False
    asked = checker.requests
    assert checker.known(missing, pod()) is False
    assert await checker.allows(missing, pod()) is False
    assert checker.requests == asked
