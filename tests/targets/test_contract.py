"""One contract, run over every TargetRegistry implementation.

The generic target runs against a real ``docker-registry`` on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from registry_process import Registry, running_registry

from swapper.config import GenericRegistry
from swapper.images import parse
from swapper.targets.base import TargetRegistry
from swapper.targets.generic import GenericTarget
from swapper.targets.memory import MemoryTarget


@dataclass
class Backend:
    target: TargetRegistry
    present: str  # a full reference the registry has
    absent: str
    digest_ref: str  # the present image by digest
    remove: object  # callable deleting ``present``


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(params=["memory", "generic"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "memory":
        endpoint = "mirror.local/m"
        present = f"{endpoint}/docker.io/library/nginx:1.27"
        digest = "sha256:" + "b" * 64
        memory = MemoryTarget(endpoint, {present, f"{endpoint}/docker.io/library/nginx@{digest}"})
        yield Backend(
            memory,
            present,
            f"{endpoint}/docker.io/library/nginx:0.1",
            f"{endpoint}/docker.io/library/nginx@{digest}",
            lambda: memory.delete_image(present),
        )
        return
    registry: Registry = request.getfixturevalue("registry")
    repo = f"m/docker.io/library/app-{tmp_path.name[-8:].lower().strip('_')}"
    digest = registry.push_image(repo, "1.0", payload=tmp_path.name.encode())
    endpoint = f"{registry.host}/m"
    target = GenericTarget(GenericRegistry(registry=endpoint, insecure=True))
    yield Backend(
        target,
        f"{registry.host}/{repo}:1.0",
        f"{registry.host}/{repo}:9.9",
        f"{registry.host}/{repo}@{digest}",
        lambda: registry.delete_manifest(repo, digest),
    )
    await target.aclose()


async def test_a_present_image_exists_by_tag_and_by_digest(backend: Backend) -> None:
    assert await backend.target.image_exists(backend.present) is True
    assert await backend.target.image_exists(backend.digest_ref) is True


async def test_an_absent_tag_does_not_exist(backend: Backend) -> None:
    assert await backend.target.image_exists(backend.absent) is False


async def test_a_deleted_image_no_longer_exists(backend: Backend) -> None:
    backend.remove()  # type: ignore[operator]
    assert await backend.target.image_exists(backend.present) is False


async def test_references_under_the_endpoint_are_origin(backend: Backend) -> None:
    assert backend.target.is_origin(parse(backend.present)) is True
    assert backend.target.is_origin(parse("nginx:1.27")) is False


async def test_ensure_repository_succeeds_and_is_repeatable(backend: Backend) -> None:
    await backend.target.ensure_repository("m/docker.io/library/redis")
    await backend.target.ensure_repository("m/docker.io/library/redis")


async def test_anonymous_targets_need_no_pull_credentials(backend: Backend) -> None:
    assert await backend.target.pull_credentials() is None
