"""One contract, run over every TargetRegistry implementation.

The generic target runs against a real ``docker-registry`` on loopback; so does the Artifact
Registry target's data plane (``registryHost``), with its API and token endpoint faked on
loopback (``tests/gar_fake.py``). The ECR target runs against moto in server mode on loopback
(``tests/moto_ecr.py``), which answers both its API calls and its existence checks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from gar_fake import FakeArtifactRegistry, TokenEndpoint, service_account_info
from google.oauth2 import service_account
from moto_ecr import ACCOUNT, REGION, MotoServer, running_moto
from registry_process import Registry, running_registry

from swapper.config import AWSRegistry, GCPRegistry, GenericRegistry
from swapper.images import parse
from swapper.oci import HostConfig
from swapper.targets.base import TargetRegistry
from swapper.targets.ecr import ECRTarget
from swapper.targets.gar import CLOUD_PLATFORM_SCOPE, GARTarget
from swapper.targets.generic import GenericTarget
from swapper.targets.memory import MemoryTarget


@dataclass
class Backend:
    target: TargetRegistry
    present: str  # a full reference the registry has
    absent: str
    digest_ref: str  # the present image by digest
    remove: object  # callable deleting ``present``
    pull_username: str | None = None  # None: pulls are anonymous


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@asynccontextmanager
async def gar_backend(registry: Registry, tmp_path: Path) -> AsyncIterator[Backend]:
    """Artifact Registry: its API and token endpoint faked, images in ``registry``."""
    tokens = TokenEndpoint().start()
    api = FakeArtifactRegistry(valid_token=lambda token: token in tokens.issued).start()
    api.add_repository("projects/proj/locations/us/repositories/mirror")
    credentials = service_account.Credentials.from_service_account_info(
        service_account_info(tokens.url), scopes=[CLOUD_PLATFORM_SCOPE]
    )
    config = GCPRegistry.model_validate(
        {
            "location": "us",
            "projectId": "proj",
            "repositoryId": "mirror",
            "endpoint": api.endpoint,
            "registryHost": registry.host,
        }
    )
    target = GARTarget(
        config,
        hosts={registry.host: HostConfig(plain_http=True)},
        credentials=credentials,
    )
    repo = f"proj/mirror/docker.io/library/app-{tmp_path.name[-8:].lower().strip('_')}"
    digest = registry.push_image(repo, "1.0", payload=tmp_path.name.encode())
    try:
        yield Backend(
            target,
            f"{registry.host}/{repo}:1.0",
            f"{registry.host}/{repo}:9.9",
            f"{registry.host}/{repo}@{digest}",
            lambda: registry.delete_manifest(repo, digest),
            pull_username="oauth2accesstoken",
        )
    finally:
        await target.aclose()
        api.stop()
        tokens.stop()


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with running_moto() as server:
        yield server


@asynccontextmanager
async def ecr_backend(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Backend]:
    """ECR: moto's ECR API, reached through ``endpointUrl`` with dummy credentials."""
    for name, value in moto.environment().items():
        monkeypatch.setenv(name, value)
    moto.reset()
    config = AWSRegistry.model_validate(
        {"accountId": ACCOUNT, "region": REGION, "endpointUrl": moto.url, "prefix": "m"}
    )
    target = ECRTarget(config)
    repo = "m/docker.io/library/app"
    moto.client().create_repository(repositoryName=repo)
    digest = moto.put_image(repo, "1.0")
    try:
        yield Backend(
            target,
            f"{config.endpoint}/docker.io/library/app:1.0",
            f"{config.endpoint}/docker.io/library/app:9.9",
            f"{config.endpoint}/docker.io/library/app@{digest}",
            lambda: moto.client().batch_delete_image(
                repositoryName=repo, imageIds=[{"imageDigest": digest}]
            ),
            pull_username="AWS",
        )
    finally:
        await target.aclose()


@pytest.fixture(params=["memory", "generic", "gar", "ecr"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "memory":
        endpoint = "mirror.local/m"
        present = f"{endpoint}/docker.io/library/nginx:1.27"
        digest = "sha256:" + "b" * 64
        memory = MemoryTarget(endpoint, {present, f"{endpoint}/docker.io/library/nginx@{digest}"})
        memory.digests[present] = digest
        yield Backend(
            memory,
            present,
            f"{endpoint}/docker.io/library/nginx:0.1",
            f"{endpoint}/docker.io/library/nginx@{digest}",
            lambda: memory.delete_image(present),
        )
        return
    if request.param == "gar":
        async with gar_backend(request.getfixturevalue("registry"), tmp_path) as gar:
            yield gar
        return
    if request.param == "ecr":
        moto, monkeypatch = request.getfixturevalue("moto"), request.getfixturevalue("monkeypatch")
        async with ecr_backend(moto, monkeypatch) as ecr:
            yield ecr
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


async def test_the_digest_of_a_present_tag_is_the_one_the_registry_serves(
    backend: Backend,
) -> None:
    served = backend.digest_ref.rsplit("@", 1)[1]
    assert await backend.target.image_digest(backend.present) == served
    assert await backend.target.image_digest(backend.absent) is None
    backend.remove()  # type: ignore[operator]
    assert await backend.target.image_digest(backend.present) is None


async def test_a_deleted_image_no_longer_exists(backend: Backend) -> None:
    backend.remove()  # type: ignore[operator]
    assert await backend.target.image_exists(backend.present) is False


async def test_references_under_the_endpoint_are_origin(backend: Backend) -> None:
    assert backend.target.is_origin(parse(backend.present)) is True
    assert backend.target.is_origin(parse("nginx:1.27")) is False


async def test_ensure_repository_succeeds_and_is_repeatable(backend: Backend) -> None:
    await backend.target.ensure_repository("m/docker.io/library/redis")
    await backend.target.ensure_repository("m/docker.io/library/redis")


async def test_pull_credentials_are_none_for_anonymous_targets_else_the_expected_user(
    backend: Backend,
) -> None:
    credentials = await backend.target.pull_credentials()
    assert (credentials.username if credentials else None) == backend.pull_username
