"""What a source serves now: one contract over the registry probe (a real ``docker-registry``
with bearer tokens, only ``public/`` anonymous) and its memory double."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from registries import (
    FAST_RETRY,
    Fault,
    FaultProxy,
    Registry,
    TokenServer,
    make_image,
    make_layer,
    plain_hosts,
    push_image,
    start_registry,
)
from webhook_process import free_port

from swapper.access.keyring import Keyring
from swapper.credentials import Credentials
from swapper.images import parse
from swapper.mirror.memory import MemoryProbe
from swapper.mirror.probe import RegistryProbe, SourceProbe, SourceState
from swapper.mirror.queue import Requester
from swapper.oci import RegistryClient


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, str]]:
    tokens = TokenServer(
        tmp_path_factory.mktemp("tokens"), users={"alice": "alice-secret"}, public=("public/",)
    ).start()
    started = start_registry(Path(tmp_path_factory.mktemp("registry")), token_server=tokens)
    image = make_image([make_layer("probe")])
    push_image(started, "public/app", image, "1.0")
    push_image(started, "private/app", image, "1.0")
    yield started, image.digest
    started.stop()
    tokens.stop()


@dataclass
class Sources:
    probe: SourceProbe
    public: str
    private: str
    missing: str
    digest: str


READER = Requester("team", ("with-alice",))
STRANGER = Requester("other", ("nothing",))


@pytest.fixture(params=["registry", "memory"])
async def sources(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Sources]:
    if request.param == "memory":
        memory = MemoryProbe()
        digest = "sha256:" + "1" * 64
        public, private = "r.local/public/app:1.0", "r.local/private/app:1.0"
        memory.served |= {public: digest, private: digest}
        memory.private[private] = {"team"}
        yield Sources(memory, public, private, "r.local/public/app:9.9", digest)
        return
    registry, digest = request.getfixturevalue("registry")
    alice = Credentials("alice", "alice-secret", source="team/with-alice")

    def keyrings(who: Requester) -> Keyring:
        return Keyring([(registry.host, alice)] if "with-alice" in who.pull_secrets else [])

    client = RegistryClient(hosts=plain_hosts(registry), retry=FAST_RETRY)
    host = registry.host
    yield Sources(
        RegistryProbe(client, keyrings),
        f"{host}/public/app:1.0",
        f"{host}/private/app:1.0",
        f"{host}/public/app:9.9",
        digest,
    )
    await client.aclose()


async def test_a_served_tag_gives_the_digest_it_points_at_now(sources: Sources) -> None:
    probe = await sources.probe.probe(parse(sources.public), [STRANGER])
    assert (probe.state, probe.digest, probe.asker) == (SourceState.SERVED, sources.digest, None)


async def test_a_missing_tag_is_gone(sources: Sources) -> None:
    probe = await sources.probe.probe(parse(sources.missing), [READER])
    assert probe.state is SourceState.GONE


async def test_a_private_image_is_served_only_with_the_credentials_of_a_pod_that_runs_it(
    sources: Sources,
) -> None:
    refused = await sources.probe.probe(parse(sources.private), [STRANGER])
    assert refused.state is SourceState.DENIED
    served = await sources.probe.probe(parse(sources.private), [STRANGER, READER])
    assert (served.state, served.digest, served.asker) == (SourceState.SERVED, sources.digest, 1)


async def test_a_registry_that_does_not_answer_is_unreachable() -> None:
    closed = f"127.0.0.1:{free_port()}"
    client = RegistryClient(hosts=plain_hosts(closed), retry=FAST_RETRY)
    probe = await RegistryProbe(client).probe(parse(f"{closed}/x/y:1"), [])
    assert probe.state is SourceState.UNREACHABLE and probe.reason == "connection"
    await client.aclose()


async def test_a_429_gives_the_retry_after_the_registry_asked_for(
    registry: tuple[Registry, str],
) -> None:
    proxy = await FaultProxy(registry[0].host).start()
    proxy.add(
        Fault("status", "/manifests/", method="HEAD", status=429, headers={"Retry-After": "120"})
    )
    client = RegistryClient(hosts=plain_hosts(proxy), retry=FAST_RETRY)
    try:
        probe = await RegistryProbe(client).probe(parse(f"{proxy.host}/public/app:1.0"), [])
    finally:
        await client.aclose()
        await proxy.aclose()
    assert probe.state is SourceState.UNREACHABLE and probe.retry_after == 120
