"""One contract for the admin protocol (:class:`~swapper.targets.admin.RegistryAdmin`), run over
every target: memory, generic (a real ``docker-registry`` on loopback with its access log on,
one with deletes enabled and one without), Artifact Registry (the gRPC wire fake of
``tests/gar_fake.py``) and ECR (moto in server mode, taught to page as AWS does).

Page requests and delete requests are counted on the registry's side where it can tell: the
registry's access log, the fake's call log, the boto3 client's sent operations, MemoryTarget's
call counts. Distribution 2.8 (Debian's ``docker-registry``) ignores ``n`` on tag listings
(one answer holds every tag) and deletes by digest only; the generic cases assert exactly that.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import grpc
import pytest
from gar_fake import FakeArtifactRegistry, TokenEndpoint, service_account_info
from google.oauth2 import service_account
from moto_ecr import ACCOUNT, REGION, CallLog, MotoServer
from registry_process import Registry

from swapper.config import AWSRegistry, GCPRegistry, GenericRegistry
from swapper.errors import DeleteRefused
from swapper.targets.admin import MAX_PAGE_SIZE, RegistryAdmin, StoredManifest
from swapper.targets.ecr import ECRTarget
from swapper.targets.gar import CLOUD_PLATFORM_SCOPE, GARTarget
from swapper.targets.generic import GenericTarget
from swapper.targets.memory import MemoryTarget

pytest_plugins = ["admin_fixtures"]  # registry, registry_without_deletes, moto

GAR_REPOSITORY = "projects/proj/locations/us/repositories/mirror"


@dataclass
class Admin:
    """A target under test and the registry-side view the assertions need."""

    admin: RegistryAdmin
    base: str  # every repository path under the target's endpoint starts with base + "/"
    outside: str  # a repository path of the same registry outside the endpoint
    seed: Callable[[str, Sequence[str], str], str]  # (repository, tags, content) -> digest
    pages: Callable[[str], int]  # page requests so far, of "repositories" or of "tags"
    deletes: Callable[[], int]  # delete requests so far
    tag_pages: bool = True  # the registry honours a page size on tag listings
    deletes_tags: bool = True  # the registry deletes a tag on its own
    knows_push_times: bool = True
    deletes_repositories: bool = True  # an empty repository can be deleted in one safe step

    @property
    def app(self) -> str:
        return f"{self.base}/docker.io/library/app"


def digest_of(content: str) -> str:
    return "sha256:" + hashlib.sha256(content.encode()).hexdigest()


def settled(count: Callable[..., int]) -> Callable[..., int]:
    """``count`` read after the registry has written its access log line (it does so right
    after answering)."""

    def read(*args: str) -> int:
        time.sleep(0.1)
        return count(*args)

    return read


async def tags_of(admin: RegistryAdmin, repository: str, page_size: int = 100) -> dict[str, str]:
    return {tag.name: tag.digest async for tag in admin.list_tags(repository, page_size=page_size)}


# -- the backends -------------------------------------------------------------------------


def memory_admin(refuse_deletes: bool = False) -> Admin:
    target = MemoryTarget("mirror.local/m")
    target.refuse_deletes = refuse_deletes

    def seed(repository: str, tags: Sequence[str], content: str) -> str:
        digest = digest_of(content)
        target.repositories.add(repository)
        for tag in tags:
            target.add_image(f"mirror.local/{repository}:{tag}", digest)
        return digest

    return Admin(
        target,
        "m",
        "other/app",
        seed,
        pages=lambda kind: target.calls.get(f"list_{kind}_page", 0),
        deletes=lambda: target.calls.get("delete_tag", 0) + target.calls.get("delete_manifest", 0),
    )


async def generic_admin(registry: Registry) -> AsyncIterator[Admin]:
    """A prefix of its own per test: the registry is shared by the module's tests."""
    base = f"m-{uuid.uuid4().hex[:8]}"
    target = GenericTarget(GenericRegistry(registry=f"{registry.host}/{base}", insecure=True))

    def seed(repository: str, tags: Sequence[str], content: str) -> str:
        digests = {registry.push_image(repository, tag, payload=content.encode()) for tag in tags}
        (digest,) = digests
        return digest

    def pages(kind: str) -> int:
        if kind == "repositories":
            return registry.requests("GET", "/v2/_catalog")
        return registry.requests("GET", f"/v2/{base}/docker.io/library/app/tags/list")

    try:
        yield Admin(
            target,
            base,
            f"other-{base}/app",
            seed,
            pages=settled(pages),
            deletes=settled(lambda: registry.requests("DELETE", f"/v2/{base}/")),
            tag_pages=False,  # distribution 2.8 sends every tag in one answer
            deletes_tags=False,  # distribution 2.8 deletes by digest only
            knows_push_times=False,
            deletes_repositories=False,  # the distribution API has no repository delete
        )
    finally:
        await target.aclose()


async def gar_admin(deny_deletes: bool = False) -> AsyncIterator[Admin]:
    """``deny_deletes``: the API answers PERMISSION_DENIED to the next deletes."""
    tokens = TokenEndpoint().start()
    api = FakeArtifactRegistry(valid_token=lambda token: token in tokens.issued).start()
    api.add_repository(GAR_REPOSITORY)
    if deny_deletes:
        denied = [grpc.StatusCode.PERMISSION_DENIED] * 3
        api.fail.update({"DeleteTag": list(denied), "DeleteVersion": list(denied)})
    credentials = service_account.Credentials.from_service_account_info(
        service_account_info(tokens.url), scopes=[CLOUD_PLATFORM_SCOPE]
    )
    config = GCPRegistry.model_validate(
        {
            "location": "us",
            "projectId": "proj",
            "repositoryId": "mirror",
            "prefix": "m",
            "endpoint": api.endpoint,
            "registryHost": "127.0.0.1:9",  # the data plane is not used by the admin calls
        }
    )
    target = GARTarget(config, credentials=credentials)

    def seed(repository: str, tags: Sequence[str], content: str) -> str:
        digest = digest_of(content)
        api.add_image(GAR_REPOSITORY, repository.removeprefix("proj/mirror/"), digest, tags)
        return digest

    kinds = {"repositories": "ListPackages", "tags": "ListTags"}
    try:
        yield Admin(
            target,
            "proj/mirror/m",
            "proj/mirror/other/app",
            seed,
            pages=lambda kind: api.count(kinds[kind]),
            deletes=lambda: api.count("DeleteTag") + api.count("DeleteVersion"),
            deletes_repositories=False,  # a package delete takes its versions: never risked
        )
    finally:
        await target.aclose()
        api.stop()
        tokens.stop()


async def ecr_admin(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Admin]:
    for name, value in moto.environment().items():
        monkeypatch.setenv(name, value)
    moto.reset()
    config = AWSRegistry.model_validate(
        {"accountId": ACCOUNT, "region": REGION, "endpointUrl": moto.url, "prefix": "m"}
    )
    target = ECRTarget(config)
    calls = CallLog(target.client)
    ecr = moto.client()

    def seed(repository: str, tags: Sequence[str], content: str) -> str:
        with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
            ecr.create_repository(repositoryName=repository)
        digests = {moto.put_image(repository, tag, seed=content) for tag in tags}
        (digest,) = digests
        return digest

    kinds = {"repositories": "DescribeRepositories", "tags": "DescribeImages"}
    try:
        yield Admin(
            target,
            "m",
            "other/app",
            seed,
            pages=lambda kind: calls[kinds[kind]],
            deletes=lambda: calls["BatchDeleteImage"],
        )
    finally:
        await target.aclose()


@pytest.fixture(params=["memory", "generic", "gar", "ecr"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Admin]:
    if request.param == "memory":
        yield memory_admin()
    elif request.param == "generic":
        async for admin in generic_admin(request.getfixturevalue("registry")):
            yield admin
    elif request.param == "gar":
        async for admin in gar_admin():
            yield admin
    else:
        moto, monkeypatch = request.getfixturevalue("moto"), request.getfixturevalue("monkeypatch")
        async for admin in ecr_admin(moto, monkeypatch):
            yield admin


@pytest.fixture(params=["memory", "generic", "gar"])
async def refusing(request: pytest.FixtureRequest) -> AsyncIterator[Admin]:
    """Targets whose registry refuses every delete: MemoryTarget told to, a docker-registry
    without ``storage.delete.enabled`` (405 UNSUPPORTED), Artifact Registry denying the
    identity (PERMISSION_DENIED). (moto does not enforce IAM, so ECR is not among them.)"""
    if request.param == "memory":
        yield memory_admin(refuse_deletes=True)
    elif request.param == "generic":
        registry = request.getfixturevalue("registry_without_deletes")
        async for admin in generic_admin(registry):
            yield admin
    else:
        async for admin in gar_admin(deny_deletes=True):
            yield admin


# -- the contract ---------------------------------------------------------------------------


async def test_repositories_under_the_endpoint_are_listed_and_others_are_not(
    backend: Admin,
) -> None:
    redis = f"{backend.base}/docker.io/library/redis"
    backend.seed(backend.app, ["1.0"], "app")
    backend.seed(redis, ["7"], "redis")
    backend.seed(backend.outside, ["1"], "outside")

    listed = [name async for name in backend.admin.list_repositories()]

    assert sorted(listed) == sorted([backend.app, redis])


async def test_repositories_are_listed_a_page_at_a_time(backend: Admin) -> None:
    names = [f"{backend.base}/docker.io/library/app-{n}" for n in range(5)]
    for n, name in enumerate(names):
        backend.seed(name, ["1.0"], f"app-{n}")
    before = backend.pages("repositories")

    listed = [name async for name in backend.admin.list_repositories(page_size=2)]

    assert sorted(listed) == names
    assert backend.pages("repositories") - before >= 3


async def test_tags_are_listed_with_their_digests_a_page_at_a_time(backend: Admin) -> None:
    expected = {f"v{n}": backend.seed(backend.app, [f"v{n}"], f"image-{n}") for n in range(25)}
    before = backend.pages("tags")

    listed = await tags_of(backend.admin, backend.app, page_size=10)

    assert listed == expected
    assert len(set(listed.values())) == 25
    if backend.tag_pages:
        assert backend.pages("tags") - before >= 3
    else:
        assert backend.pages("tags") - before == 1


async def test_the_tags_of_a_repository_that_does_not_exist_are_none(backend: Admin) -> None:
    assert await tags_of(backend.admin, f"{backend.base}/docker.io/library/none") == {}


async def test_manifests_are_listed_with_their_tags(backend: Admin) -> None:
    first = backend.seed(backend.app, ["1.0", "1"], "first")
    second = backend.seed(backend.app, ["2.0"], "second")

    manifests: dict[str, StoredManifest] = {
        manifest.digest: manifest
        async for manifest in backend.admin.list_manifests(backend.app, page_size=1)
    }

    assert {digest: m.tags for digest, m in manifests.items()} == {
        first: ("1", "1.0"),
        second: ("2.0",),
    }
    pushed = {m.pushed_at is not None for m in manifests.values()}
    assert pushed == {backend.knows_push_times}


async def test_deleting_a_tag_removes_only_that_tag(backend: Admin) -> None:
    first = backend.seed(backend.app, ["1.0", "1"], "first")
    second = backend.seed(backend.app, ["2.0"], "second")
    before = backend.deletes()

    if not backend.deletes_tags:
        with pytest.raises(DeleteRefused, match="delete by digest only"):
            await backend.admin.delete_tag(backend.app, "1.0")
        assert backend.deletes() - before == 1
        assert await tags_of(backend.admin, backend.app) == {
            "1.0": first,
            "1": first,
            "2.0": second,
        }
        return

    assert await backend.admin.delete_tag(backend.app, "1.0") is True

    assert await tags_of(backend.admin, backend.app) == {"1": first, "2.0": second}
    assert backend.deletes() - before == 1


async def test_deleting_a_manifest_removes_the_image_and_its_tags(backend: Admin) -> None:
    first = backend.seed(backend.app, ["1.0", "1"], "first")
    second = backend.seed(backend.app, ["2.0"], "second")

    assert await backend.admin.delete_manifest(backend.app, first) is True

    assert await tags_of(backend.admin, backend.app) == {"2.0": second}
    remaining = [m.digest async for m in backend.admin.list_manifests(backend.app)]
    assert remaining == [second]


async def test_deleting_what_is_not_there_answers_false(backend: Admin) -> None:
    backend.seed(backend.app, ["1.0"], "first")

    assert await backend.admin.delete_manifest(backend.app, digest_of("never pushed")) is False
    if backend.deletes_tags:
        assert await backend.admin.delete_tag(backend.app, "9.9") is False


async def test_an_empty_repository_is_deleted_only_where_that_cannot_take_an_image(
    backend: Admin,
) -> None:
    digest = backend.seed(backend.app, ["1.0"], "first")

    if not backend.deletes_repositories:
        with pytest.raises(DeleteRefused):
            await backend.admin.delete_repository(backend.app)
        assert await tags_of(backend.admin, backend.app) == {"1.0": digest}
        return
    assert await backend.admin.delete_repository(backend.app) is False  # an image is there
    assert await tags_of(backend.admin, backend.app) == {"1.0": digest}

    assert await backend.admin.delete_manifest(backend.app, digest) is True
    assert await backend.admin.delete_repository(backend.app) is True
    assert backend.app not in [r async for r in backend.admin.list_repositories()]
    assert await backend.admin.delete_repository(backend.app) is False  # gone already


async def test_a_registry_refusing_deletes_says_so_once_without_retrying(refusing: Admin) -> None:
    digest = refusing.seed(refusing.app, ["1.0"], "kept")
    before = refusing.deletes()

    with pytest.raises(DeleteRefused) as refused:
        await refusing.admin.delete_manifest(refusing.app, digest)

    assert refusing.deletes() - before == 1
    assert "refuse" in str(refused.value)
    assert await tags_of(refusing.admin, refusing.app) == {"1.0": digest}


async def test_page_sizes_are_bounded(backend: Admin) -> None:
    for size in (0, MAX_PAGE_SIZE + 1):
        with pytest.raises(ValueError, match="page_size"):
            await anext(aiter(backend.admin.list_tags(backend.app, page_size=size)))
    assert isinstance(backend.admin, RegistryAdmin)
