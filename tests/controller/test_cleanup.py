"""Cleanup of mirrored images nobody runs (:mod:`swapper.controller.cleanup`), with two clusters
sharing one registry: a real ``docker-registry`` (distribution 2.8, deletes on; and one with
deletes off) and, separately, ECR (moto in server mode).

Each "cluster" is a :class:`~swapper.mirror.marks.Marker` and a
:class:`~swapper.controller.cleanup.Cleanup` with its own ``clusterName``, the pods it runs
(``used``: full mirror references) and the repositories it copies into (``flying``). Time is
one movable clock: the marks' ``used-at`` comes from it, so moving it forward ages them.

moto has no OCI data plane (``/v2/``), so on ECR the marks go through the ECR API
(``PutImage``, ``BatchGetImage``: :class:`ECRApiMarkStore`, a test-side store); in production
swapper pushes them to ECR over OCI like its copies (:class:`~swapper.mirror.marks.OCIMarkStore`,
which the docker-registry cases run). Listing and deleting are the real ECR target's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from moto_ecr import ACCOUNT, REGION, MotoServer
from registry_process import Registry

from swapper.config import AWSRegistry, CleanupSettings, GenericRegistry
from swapper.controller.cleanup import (
    DRY_RUN,
    IN_FLIGHT,
    IN_USE,
    MALFORMED_MARK,
    NOT_SWAPPERS,
    REFUSED,
    YOUNG,
    YOUNG_MARK,
    Cleanup,
    CleanupOptions,
    references_in_use,
)
from swapper.controller.runner import forget_deleted
from swapper.metrics import Metrics
from swapper.mirror.marks import Mark, Marker, MarkStore, OCIMarkStore, mark_tag
from swapper.oci import Descriptor, HostConfig, RegistryClient
from swapper.targets.admin import RegistryAdmin
from swapper.targets.base import TargetRegistry
from swapper.targets.cache import ExistenceCache
from swapper.targets.ecr import ECRTarget
from swapper.targets.generic import GenericTarget
from swapper.targets.memory import MemoryTarget

pytest_plugins = ["admin_fixtures"]  # registry, registry_without_deletes, moto

DAY = timedelta(days=1)
RETENTION = 30 * DAY


class Clock:
    """Wall-clock time that moves only when told."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@dataclass
class Cluster:
    """One cluster's marker and cleanup over the shared registry."""

    name: str
    marker: Marker
    cleanup: Cleanup
    metrics: Metrics
    used: set[str] = field(default_factory=set)
    flying: set[str] = field(default_factory=set)

    async def mark(self) -> None:
        await self.marker.mark_targets(sorted(self.used))

    def kept(self, reason: str) -> float:
        sample = self.metrics.registry.get_sample_value(
            "swapper_cleanup_kept_total", {"reason": reason}
        )
        return sample or 0

    def deleted(self, kind: str = "image") -> float:
        sample = self.metrics.registry.get_sample_value(
            "swapper_cleanup_deleted_total", {"kind": kind}
        )
        return sample or 0


@dataclass
class World:
    """The shared registry, seen through its admin protocol and a mark store."""

    admin: RegistryAdmin
    store: MarkStore
    host: str  # the registry host in image references
    base: str  # the endpoint's path: every repository of the test lies under it
    push: Callable[[str, str, str], str]  # (repository, tag, content) -> digest
    clock: Clock

    @property
    def repository(self) -> str:
        return f"{self.base}/docker.io/library/app"

    def reference(self, tag: str, repository: str = "") -> str:
        return f"{self.host}/{repository or self.repository}:{tag}"

    async def exists(self, reference: str, repository: str = "") -> bool:
        return await self.store.head(repository or self.repository, reference) is not None

    async def tags(self, repository: str = "") -> set[str]:
        return {tag.name async for tag in self.admin.list_tags(repository or self.repository)}

    def cluster(self, name: str, **options: Any) -> Cluster:
        metrics = Metrics()
        marker = Marker(
            name, self.store, self.admin, mark_every=DAY.total_seconds(), clock=self.clock
        )
        settings = {"retention": RETENTION.total_seconds(), "dry_run": False, **options}
        holder: dict[str, Cluster] = {}
        cleanup = Cleanup(
            self.admin,
            marker,
            lambda: holder["cluster"].used,
            lambda repository: repository in holder["cluster"].flying,
            metrics,
            CleanupOptions(**settings),
            clock=self.clock,
        )
        holder["cluster"] = Cluster(name, marker, cleanup, metrics)
        return holder["cluster"]


# -- the registries -------------------------------------------------------------------------


async def docker_registry_world(registry: Registry) -> AsyncIterator[World]:
    """A prefix of its own per test: the registry is shared by the module's tests."""
    base = f"m-{uuid.uuid4().hex[:8]}"
    target = GenericTarget(GenericRegistry(registry=f"{registry.host}/{base}", insecure=True))
    client = RegistryClient(hosts={registry.host: HostConfig(plain_http=True)})

    def push(repository: str, tag: str, content: str) -> str:
        return registry.push_image(repository, tag, payload=content.encode())

    try:
        yield World(target, OCIMarkStore(client, registry.host), registry.host, base, push, Clock())
    finally:
        await client.aclose()
        await target.aclose()


class ECRApiMarkStore:
    """A :class:`~swapper.mirror.marks.MarkStore` over the ECR API (moto has no ``/v2/``)."""

    def __init__(self, ecr: Any) -> None:
        self.ecr = ecr

    def _image(self, repository: str, reference: str) -> dict[str, Any] | None:
        image_id = {"imageDigest": reference} if ":" in reference else {"imageTag": reference}
        try:
            found = self.ecr.batch_get_image(repositoryName=repository, imageIds=[image_id])
        except self.ecr.exceptions.RepositoryNotFoundException:
            return None
        images: list[dict[str, Any]] = found["images"]
        return images[0] if images else None

    async def head(self, repository: str, reference: str) -> Descriptor | None:
        image = await asyncio.to_thread(self._image, repository, reference)
        if image is None:
            return None
        manifest = str(image["imageManifest"])
        media_type = str(image.get("imageManifestMediaType") or "")
        return Descriptor(media_type, str(image["imageId"]["imageDigest"]), len(manifest))

    async def get(self, repository: str, reference: str) -> bytes | None:
        image = await asyncio.to_thread(self._image, repository, reference)
        return None if image is None else str(image["imageManifest"]).encode()

    async def put(self, repository: str, tag: str, manifest: bytes) -> str:
        import hashlib

        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()

        def put() -> None:
            with contextlib.suppress(self.ecr.exceptions.ImageAlreadyExistsException):
                self.ecr.put_image(
                    repositoryName=repository,
                    imageManifest=manifest.decode(),
                    imageManifestMediaType="application/vnd.oci.image.manifest.v1+json",
                    imageTag=tag,
                    imageDigest=digest,
                )

        await asyncio.to_thread(put)
        return digest


async def ecr_world(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    for name, value in moto.environment().items():
        monkeypatch.setenv(name, value)
    moto.reset()
    config = AWSRegistry.model_validate(
        {"accountId": ACCOUNT, "region": REGION, "endpointUrl": moto.url, "prefix": "m"}
    )
    target = ECRTarget(config)
    ecr = moto.client()

    def push(repository: str, tag: str, content: str) -> str:
        with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
            ecr.create_repository(repositoryName=repository)
        return moto.put_image(repository, tag, seed=content)

    # moto stamps pushes with the real time: the clock starts there
    clock = Clock(datetime.now(UTC))
    host = config.endpoint.split("/", 1)[0]
    try:
        yield World(target, ECRApiMarkStore(ecr), host, "m", push, clock)
    finally:
        await target.aclose()
        moto.reset()  # moto's state is the process's: later tests' moto servers would see it


@pytest.fixture(params=["docker-registry", "ecr"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    if request.param == "docker-registry":
        async for made in docker_registry_world(request.getfixturevalue("registry")):
            yield made
    else:
        moto, monkeypatch = request.getfixturevalue("moto"), request.getfixturevalue("monkeypatch")
        async for made in ecr_world(moto, monkeypatch):
            yield made


@pytest.fixture
async def generic(registry: Registry) -> AsyncIterator[World]:
    async for made in docker_registry_world(registry):
        yield made


@pytest.fixture
async def ecr(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    async for made in ecr_world(moto, monkeypatch):
        yield made


def settled() -> None:
    time.sleep(0.1)  # docker-registry writes its access log line right after answering


# -- two clusters, one registry ---------------------------------------------------------------


async def test_an_image_one_cluster_still_marks_is_kept_until_every_mark_is_old(
    world: World,
) -> None:
    digest = world.push(world.repository, "1.0", "app 1.0")
    a, b = world.cluster("cluster-a"), world.cluster("cluster-b")
    a.used = b.used = {world.reference("1.0")}
    await a.mark()
    await b.mark()
    assert {mark_tag("cluster-a", digest), mark_tag("cluster-b", digest)} <= await world.tags()

    # Ten days on, cluster B no longer runs it; A does, and marks it again.
    world.clock.advance(10 * DAY)
    b.used = set()
    await a.mark()
    report = await b.cleanup.run_pass()
    assert report.deleted == []
    assert await world.exists(digest)

    # A stops running it too. 25 days later A's last mark is still young: kept, for both.
    a.used = set()
    world.clock.advance(25 * DAY)
    for cluster in (a, b):
        report = await cluster.cleanup.run_pass()
        assert report.deleted == []
        assert report.kept == {YOUNG_MARK: 1}
    assert await world.exists(digest)

    # Once every mark is older than the retention, B's pass deletes it, its tag and its marks.
    world.clock.advance(6 * DAY)
    report = await b.cleanup.run_pass()
    assert report.deleted == [(world.repository, digest)]
    assert report.marks_deleted == 2
    assert not await world.exists(digest)
    assert await world.tags() == set()
    assert b.deleted("image") == 1
    assert b.deleted("mark") == 2

    # Nothing left to do on the next pass, from either cluster.
    assert (await a.cleanup.run_pass()).deleted == []


async def test_an_image_cleanup_deleted_is_forgotten_by_the_existence_cache(world: World) -> None:
    world.push(world.repository, "1.0", "cached")
    a = world.cluster("cluster-a")
    a.used = {world.reference("1.0")}
    await a.mark()
    assert isinstance(world.admin, TargetRegistry)
    cache = ExistenceCache(world.admin, ttl=3600)
    assert await cache.image_exists(world.reference("1.0"))  # cached for an hour from now on
    a.cleanup.on_deleted = forget_deleted(cache, world.host)

    a.used = set()
    world.clock.advance(RETENTION + DAY)
    assert len((await a.cleanup.run_pass()).deleted) == 1

    # Admission asks the registry again, and is told the image is gone: no pod is swapped to it.
    assert not await cache.image_exists(world.reference("1.0"))


async def test_a_repository_the_pass_empties_is_deleted_on_ecr_and_kept_where_it_cannot_be(
    world: World,
) -> None:
    world.push(world.repository, "1.0", "last image")
    a = world.cluster("cluster-a", delete_empty_repositories=True)
    a.used = {world.reference("1.0")}
    await a.mark()
    a.used = set()
    world.clock.advance(RETENTION + DAY)

    with structlog.testing.capture_logs() as logs:
        report = await a.cleanup.run_pass()

    assert len(report.deleted) == 1 and report.marks_deleted == 1
    kept = [line for line in logs if line["event"] == "cleanup_empty_repositories_kept"]
    repositories = [r async for r in world.admin.list_repositories()]
    if isinstance(world.admin, ECRTarget):  # DeleteRepository without force: one safe step
        assert report.repositories_deleted == 1
        assert a.deleted("repository") == 1
        assert world.repository not in repositories
        assert kept == []
    else:  # the distribution API has no repository delete: said once, nothing else tried
        assert report.repositories_deleted == 0
        assert a.deleted("repository") == 0
        assert len(kept) == 1
        assert "no repository delete" in kept[0]["reason"]


async def test_a_repository_with_an_image_left_is_never_deleted(ecr: World) -> None:
    ecr.push(ecr.repository, "1.0", "goes")
    ecr.push(ecr.repository, "2.0", "stays: nobody marked it")
    a = ecr.cluster("cluster-a", delete_empty_repositories=True)
    a.used = {ecr.reference("1.0")}
    await a.mark()
    a.used = set()
    ecr.clock.advance(RETENTION + DAY)

    report = await a.cleanup.run_pass()

    assert len(report.deleted) == 1 and report.repositories_deleted == 0
    assert await ecr.tags() == {"2.0"}


async def test_an_images_signatures_attestations_and_sboms_go_with_it_and_no_others(
    world: World,
) -> None:
    gone = world.push(world.repository, "1.0", "unused image")
    kept = world.push(world.repository, "2.0", "image someone runs")

    def hung_off(digest: str, suffix: str, content: str) -> str:
        return world.push(world.repository, f"sha256-{digest[7:]}{suffix}", content)

    signature = hung_off(gone, ".sig", "signature of 1.0")
    sbom = hung_off(gone, ".sbom", "sbom of 1.0")
    hung_off(sbom, ".sig", "signature of the sbom of 1.0")  # a referrer of a referrer
    hung_off(gone, "", "referrers index of 1.0")  # the OCI referrers tag fallback
    hung_off(kept, ".sig", "signature of 2.0")
    a = world.cluster("cluster-a")
    a.used = {world.reference("1.0"), world.reference("2.0")}
    await a.mark()
    a.used = {world.reference("2.0")}
    world.clock.advance(RETENTION + DAY)

    report = await a.cleanup.run_pass()

    assert report.deleted == [(world.repository, gone)]
    assert report.referrers_deleted == 4
    assert a.deleted("referrer") == 4
    assert not await world.exists(signature)
    remaining = {tag for tag in await world.tags() if not tag.startswith("swapper-used-")}
    assert remaining == {"2.0", f"sha256-{kept[7:]}.sig"}
    assert report.kept == {IN_USE: 1}  # referrers are neither judged nor counted


async def test_an_image_this_cluster_runs_is_kept_whatever_its_marks_say(world: World) -> None:
    digest = world.push(world.repository, "1.0", "in use")
    a = world.cluster("cluster-a")
    a.used = {world.reference("1.0")}
    await a.mark()

    world.clock.advance(90 * DAY)  # the marker did not run since: only the pods say so
    report = await a.cleanup.run_pass()

    assert report.kept == {IN_USE: 1}
    assert await world.exists(digest)


async def test_an_image_pinned_by_digest_in_a_pod_counts_as_in_use(world: World) -> None:
    digest = world.push(world.repository, "1.0", "pinned")
    a = world.cluster("cluster-a")
    a.used = {f"{world.host}/{world.repository}@{digest}"}
    await a.mark()

    world.clock.advance(90 * DAY)
    assert (await a.cleanup.run_pass()).kept == {IN_USE: 1}


async def test_an_image_with_a_copy_in_flight_is_never_deleted(world: World) -> None:
    digest = world.push(world.repository, "1.0", "in flight")
    a = world.cluster("cluster-a")
    a.used = {world.reference("1.0")}
    await a.mark()
    a.used = set()
    a.flying = {world.repository}

    world.clock.advance(90 * DAY)
    report = await a.cleanup.run_pass()
    assert report.kept == {IN_FLIGHT: 1}
    assert await world.exists(digest)

    a.flying = set()
    assert (await a.cleanup.run_pass()).deleted == [(world.repository, digest)]


async def test_an_image_without_any_swapper_mark_is_not_swappers_and_kept(world: World) -> None:
    digest = world.push(world.repository, "1.0", "pushed by someone else")
    a = world.cluster("cluster-a")

    world.clock.advance(365 * DAY)
    report = await a.cleanup.run_pass()

    assert report.kept == {NOT_SWAPPERS: 1}
    assert a.kept(NOT_SWAPPERS) == 1
    assert await world.exists(digest)


async def test_a_dry_run_reports_what_it_would_delete_and_deletes_nothing(world: World) -> None:
    digest = world.push(world.repository, "1.0", "dry run")
    a = world.cluster("cluster-a", dry_run=True)
    a.used = {world.reference("1.0")}
    await a.mark()
    a.used = set()
    world.clock.advance(40 * DAY)

    with structlog.testing.capture_logs() as logs:
        report = await a.cleanup.run_pass()

    assert report.deleted == []
    assert report.would_delete == [(world.repository, digest)]
    assert a.kept(DRY_RUN) == 1
    assert a.deleted() == 0
    would = [line for line in logs if line["event"] == "cleanup_would_delete"]
    assert [(line["repository"], line["digest"], line["tags"]) for line in would] == [
        (world.repository, digest, ["1.0"])
    ]
    assert await world.exists(digest)
    assert mark_tag("cluster-a", digest) in await world.tags()


async def test_a_malformed_mark_keeps_its_image_and_is_itself_never_deleted(
    world: World,
) -> None:
    digest = world.push(world.repository, "1.0", "odd mark")
    a = world.cluster("cluster-a")
    # Another tool pushed an image under the tag a mark of cluster-b would have.
    junk = mark_tag("cluster-b", digest)
    world.push(world.repository, junk, "not a mark")
    world.clock.advance(365 * DAY)

    with structlog.testing.capture_logs() as logs:
        report = await a.cleanup.run_pass()

    assert report.kept == {MALFORMED_MARK: 1}
    assert [line["tag"] for line in logs if line["event"] == "cleanup_malformed_mark"] == [junk]
    assert await world.exists(digest)
    assert {"1.0", junk} <= await world.tags()


async def test_only_images_under_swappers_prefix_are_looked_at(world: World) -> None:
    outside = f"other-{world.base}/app"
    digest = world.push(outside, "1.0", "outside the endpoint")
    a = world.cluster("cluster-a")
    a.used = {world.reference("1.0", outside)}
    await a.mark()  # even a mark there (written by hand) does not make it swapper's to delete
    a.used = set()
    world.clock.advance(365 * DAY)

    report = await a.cleanup.run_pass()

    assert report.deleted == [] and report.kept == {}
    assert await world.exists(digest, outside)


# -- per registry -----------------------------------------------------------------------------


async def test_an_image_pushed_within_the_retention_is_young_where_the_registry_says_when(
    ecr: World,
) -> None:
    digest = ecr.push(ecr.repository, "1.0", "fresh copy")
    a = ecr.cluster("cluster-a")
    a.used = {ecr.reference("1.0")}
    ecr.clock.advance(-60 * DAY)  # a mark written (as if) long ago; the push is from now
    await a.mark()
    ecr.clock.advance(60 * DAY)
    a.used = set()

    report = await a.cleanup.run_pass()

    assert report.kept == {YOUNG: 1}
    assert await ecr.exists(digest)


async def test_a_registry_that_refuses_deletes_gets_one_log_line_and_metric_per_pass(
    registry_without_deletes: Registry,
) -> None:
    async for world in docker_registry_world(registry_without_deletes):
        first = world.push(world.repository, "1.0", "first")
        second = world.push(world.repository, "2.0", "second")
        a = world.cluster("cluster-a")
        a.used = {world.reference("1.0"), world.reference("2.0")}
        await a.mark()
        a.used = set()
        world.clock.advance(40 * DAY)
        settled()
        before = registry_without_deletes.requests("DELETE", f"/v2/{world.base}/")

        for passes in (1, 2):
            with structlog.testing.capture_logs() as logs:
                report = await a.cleanup.run_pass()
            assert "405" in report.refused or "UNSUPPORTED" in report.refused
            assert [line["event"] for line in logs if line["log_level"] == "warning"] == [
                "cleanup_delete_refused"
            ]
            assert a.kept(REFUSED) == passes
            sample = a.metrics.registry.get_sample_value(
                "swapper_cleanup_passes_total", {"result": "refused"}
            )
            assert sample == passes

        settled()
        # per pass: the tag delete (refused), the manifest delete (refused), and no more
        assert registry_without_deletes.requests("DELETE", f"/v2/{world.base}/") - before == 4
        assert await world.exists(first) and await world.exists(second)


async def test_on_a_digest_only_registry_the_manifest_delete_takes_its_tags(
    generic: World,
) -> None:
    digest = generic.push(generic.repository, "1.0", "two tags")
    generic.push(generic.repository, "latest", "two tags")
    a = generic.cluster("cluster-a")
    a.used = {generic.reference("latest")}
    await a.mark()
    a.used = set()
    generic.clock.advance(40 * DAY)

    report = await a.cleanup.run_pass()

    assert report.deleted == [(generic.repository, digest)]
    assert await generic.tags() == set()


# -- the loop and its parts -----------------------------------------------------------------


class Stop(Exception):
    """Ends a loop under test."""


class NoMarks:
    """A mark reader for registries without marks (never asked)."""

    async def read(self, repository: str, tag: str) -> Mark:
        raise AssertionError("no mark to read")


async def test_the_loop_runs_a_pass_at_most_once_per_interval_and_only_once_ready() -> None:
    clock = Clock()
    metrics = Metrics()
    ready = {"now": False}
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 6:
            raise Stop
        ready["now"] = True
        clock.advance(timedelta(seconds=seconds))

    cleanup = Cleanup(
        MemoryTarget("mirror.local/m"),
        NoMarks(),
        set,
        lambda _: False,
        metrics,
        CleanupOptions.of(CleanupSettings(interval="6h")),
        ready=lambda: ready["now"],
        clock=clock,
        sleep=sleep,
    )
    with pytest.raises(Stop):
        await cleanup.run()

    assert waits == [30.0, 6 * 3600.0, 6 * 3600.0, 6 * 3600.0, 6 * 3600.0, 6 * 3600.0]
    assert (
        metrics.registry.get_sample_value("swapper_cleanup_passes_total", {"result": "done"}) == 5
    )


def test_references_in_use_are_grouped_by_repository_as_tags_and_digests() -> None:
    pinned = "sha256:" + "1" * 64
    found = references_in_use(
        [
            "mirror.local/m/docker.io/library/nginx:1.25",
            f"mirror.local/m/docker.io/library/nginx@{pinned}",
            "mirror.local/m/ghcr.io/org/app",
            "not a reference!",
        ]
    )
    assert found == {
        "m/docker.io/library/nginx": {"1.25", pinned},
        "m/ghcr.io/org/app": {"latest"},
    }


def test_marks_and_cleanup_are_off_by_default_and_a_dry_run_when_turned_on() -> None:
    settings = CleanupSettings()
    assert settings.enabled is False and settings.dry_run is True
    options = CleanupOptions.of(CleanupSettings(enabled=True, retention=3600, mark_every=60))
    assert options.dry_run is True and options.retention == 3600.0


async def test_a_pass_over_an_empty_registry_does_nothing_and_says_so() -> None:
    metrics = Metrics()
    cleanup = Cleanup(
        MemoryTarget("mirror.local/m"), NoMarks(), set, lambda _: False, metrics, CleanupOptions()
    )
    with structlog.testing.capture_logs() as logs:
        report = await cleanup.run_pass()
    assert report.deleted == [] and not report.refused and not report.error
    assert [line["event"] for line in logs] == ["cleanup_pass"]


async def test_a_pod_watch_that_stops_being_ready_mid_pass_ends_the_pass_before_any_delete() -> (
    None
):
    target = MemoryTarget("mirror.local/m")
    for name in ("a", "b"):
        target.add_image(f"mirror.local/m/docker.io/library/{name}:1", "sha256:" + name * 64)
    looks = {"ready": 0}

    def ready() -> bool:  # ready when the pass starts, then the pod watch restarts
        looks["ready"] += 1
        return looks["ready"] == 1

    metrics = Metrics()
    cleanup = Cleanup(
        target,
        NoMarks(),
        set,
        lambda _: False,
        metrics,
        CleanupOptions(dry_run=False),
        ready=ready,
    )
    assert ready()
    with structlog.testing.capture_logs() as logs:
        report = await cleanup.run_pass()
    assert report.deleted == [] and report.error == "the pod watch is listing again"
    assert cleanup.last_pass is None  # the next pass starts as soon as the watch is ready
    assert [line["event"] for line in logs] == ["cleanup_pass_failed", "cleanup_pass"]
    assert metrics.registry.get_sample_value("swapper_cleanup_passes_total", {"result": "error"})
