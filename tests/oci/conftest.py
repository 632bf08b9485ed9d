"""Registries for the copy tests, started once per session (the token and TLS ones once per
module) and stopped at teardown.

Each test copies into repositories of its own (``fresh_repo``), so tests sharing a registry do
not see each other's images.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import pytest
from registries import (
    FAST_RETRY,
    FaultProxy,
    Index,
    Registry,
    TokenServer,
    multi_arch,
    plain_hosts,
    push_index,
    start_registry,
)

from swapper.oci import CopyEngine, RegistryClient

_counter = itertools.count()


@pytest.fixture
def fresh_repo() -> str:
    """A repository path no other test uses."""
    return f"mirror/t{next(_counter)}/app"


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Plain HTTP, anonymous: where the test images come from."""
    registry = start_registry(tmp_path_factory.mktemp("source"))
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Plain HTTP, anonymous: where copies go."""
    registry = start_registry(tmp_path_factory.mktemp("target"))
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def multi(source: Registry) -> Index:
    """An OCI index (linux/amd64, linux/arm64, 3 layers each) at ``source/multi:1.0``."""
    index = multi_arch("multi", layers=3)
    push_index(source, "multi", index, "1.0")
    return index


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = TokenServer(
        tmp_path_factory.mktemp("tokens"),
        users={"alice": "alice-secret", "bob": "bob-secret"},
        public=("public/",),
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[Registry]:
    """Bearer tokens: anonymous pull under ``public/``, everything else needs a user."""
    registry = start_registry(tmp_path_factory.mktemp("token-registry"), token_server=token_server)
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """TLS with its own CA and htpasswd basic auth (user ``carol``)."""
    registry = start_registry(
        tmp_path_factory.mktemp("tls-registry"), tls=True, users={"carol": "carol-secret"}
    )
    yield registry
    registry.stop()


@pytest.fixture
async def client(source: Registry, target: Registry) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(
        hosts=plain_hosts(source, target), retry=FAST_RETRY
    ) as registry_client:
        yield registry_client


@pytest.fixture
def engine(client: RegistryClient) -> CopyEngine:
    return CopyEngine(client, max_concurrent_blobs=4)


@pytest.fixture
async def proxy(target: Registry) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the target registry."""
    fault_proxy = await FaultProxy(target.host).start()
    yield fault_proxy
    await fault_proxy.aclose()


@pytest.fixture
async def source_proxy(source: Registry) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the source registry."""
    fault_proxy = await FaultProxy(source.host).start()
    yield fault_proxy
    await fault_proxy.aclose()
