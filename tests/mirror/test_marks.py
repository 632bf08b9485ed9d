"""Usage marks (:mod:`swapper.mirror.marks`): the format, and the marker against a real
``docker-registry`` (distribution 2.8, which has no referrers API) on loopback.

Pushes are counted on the registry's side, in its access log. Time is a movable clock: the
``used-at`` a mark carries comes from it, so moving it ages the marks without waiting.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from registries import TokenServer, make_image, make_layer, push_image, start_registry
from registry_process import Registry, running_registry

from swapper.config import GenericRegistry
from swapper.credentials import Credentials
from swapper.errors import CopyError, MalformedMark, RegistryError
from swapper.metrics import Metrics
from swapper.mirror.marks import (
    ARTIFACT_TYPE,
    EMPTY_DIGEST,
    Marker,
    OCIMarkStore,
    build_mark,
    mark_tag,
    parse_mark,
    parse_mark_tag,
)
from swapper.oci import OCI_MANIFEST, Descriptor, HostConfig, RegistryClient, static_credentials
from swapper.targets.generic import GenericTarget

IMAGE = "sha256:" + "ab" * 32
SUBJECT = Descriptor(OCI_MANIFEST, IMAGE, 410)
DAY = timedelta(days=1)


class Clock:
    """Wall-clock time that moves only when told."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


# -- the format ---------------------------------------------------------------------------


def test_a_mark_reads_back_as_the_cluster_image_and_time_it_was_written_with() -> None:
    used = datetime(2030, 5, 17, 8, 30, tzinfo=UTC)
    tag = mark_tag("prod-eu", IMAGE)

    mark = parse_mark(build_mark("prod-eu", SUBJECT, used), tag)

    assert tag == "swapper-used-prod-eu-" + "ab" * 16
    assert parse_mark_tag(tag) == ("prod-eu", "ab" * 16)
    assert (mark.cluster, mark.image_digest, mark.used_at) == ("prod-eu", IMAGE, used)


def test_the_longest_cluster_name_still_makes_a_valid_tag() -> None:
    tag = mark_tag("c" * 63, IMAGE)
    assert len(tag) <= 128
    assert parse_mark_tag(tag) == ("c" * 63, "ab" * 16)


@pytest.mark.parametrize("name", ["Prod", "prod_eu", "-prod", "prod-", "", "c" * 64])
def test_a_cluster_name_that_is_not_a_dns_label_makes_no_tag(name: str) -> None:
    with pytest.raises(ValueError, match="DNS label"):
        mark_tag(name, IMAGE)


def test_a_marks_body_holds_no_image_content_only_the_images_descriptor() -> None:
    document = orjson.loads(build_mark("a", SUBJECT, datetime(2030, 1, 1, tzinfo=UTC)))

    assert document["artifactType"] == ARTIFACT_TYPE
    assert document["mediaType"] == OCI_MANIFEST
    # the only blob it references is the 2-byte empty blob "{}"
    blobs = [document["config"], *document["layers"]]
    assert {blob["digest"] for blob in blobs} == {EMPTY_DIGEST}
    assert "sha256:" + hashlib.sha256(b"{}").hexdigest() == EMPTY_DIGEST
    assert document["subject"] == {"mediaType": OCI_MANIFEST, "digest": IMAGE, "size": 410}
    assert document["annotations"] == {
        "io.swapper.cluster": "a",
        "io.swapper.image-digest": IMAGE,
        "io.swapper.used-at": "2030-01-01T00:00:00Z",
    }
    assert set(document) == {
        "schemaVersion",
        "mediaType",
        "artifactType",
        "config",
        "layers",
        "subject",
        "annotations",
    }


def _changed(**changes: object) -> bytes:
    document = orjson.loads(build_mark("a", SUBJECT, datetime(2030, 1, 1, tzinfo=UTC)))
    for key, value in changes.items():
        if key.startswith("annotation:"):
            document["annotations"][key.removeprefix("annotation:")] = value
        else:
            document[key] = value
    return orjson.dumps(document)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not json", "not JSON"),
        (_changed(artifactType="application/vnd.other+json"), "artifact"),
        (
            _changed(layers=[{"mediaType": "x", "digest": "sha256:" + "1" * 64, "size": 9}]),
            "content",
        ),
        (_changed(**{"annotation:io.swapper.cluster": "b"}), "cluster"),
        (_changed(**{"annotation:io.swapper.image-digest": "sha256:" + "cd" * 32}), "image"),
        (_changed(**{"annotation:io.swapper.used-at": "yesterday"}), "used-at|Invalid"),
        (_changed(**{"annotation:io.swapper.used-at": "2030-01-01T00:00:00"}), "time zone"),
        (_changed(subject={"digest": "sha256:" + "cd" * 32}), "names no image"),
    ],
)
def test_a_tag_of_the_scheme_whose_body_is_not_swappers_mark_is_malformed(
    data: bytes, problem: str
) -> None:
    with pytest.raises(MalformedMark, match=problem):
        parse_mark(data, mark_tag("a", IMAGE))


def test_a_mark_stored_under_another_images_tag_is_malformed() -> None:
    other = "sha256:" + "cd" * 32
    with pytest.raises(MalformedMark):
        parse_mark(build_mark("a", SUBJECT, datetime(2030, 1, 1, tzinfo=UTC)), mark_tag("a", other))


# -- the marker against a real docker-registry ---------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry"), access_log=True) as reg:
        yield reg


@dataclass
class Setup:
    registry: Registry
    marker: Marker
    clock: Clock
    metrics: Metrics
    repository: str  # a repository of its own per test
    target: GenericTarget

    def mark_puts(self) -> int:
        time.sleep(0.1)  # the access log line is written right after the answer
        return self.registry.requests("PUT", f"/v2/{self.repository}/manifests/swapper-used-")

    def tags(self) -> list[str]:
        answer = httpx.get(f"{self.registry.url}/v2/{self.repository}/tags/list", timeout=5)
        return sorted(answer.json()["tags"] or [])


@pytest.fixture
async def setup(registry: Registry) -> AsyncIterator[Setup]:
    base = f"m-{uuid.uuid4().hex[:8]}"
    client = RegistryClient(hosts={registry.host: HostConfig(plain_http=True)})
    target = GenericTarget(GenericRegistry(registry=f"{registry.host}/{base}", insecure=True))
    clock, metrics = Clock(), Metrics()
    marker = Marker(
        "prod-eu",
        OCIMarkStore(client, registry.host),
        target,
        mark_every=DAY.total_seconds(),
        clock=clock,
        metrics=metrics,
    )
    try:
        yield Setup(registry, marker, clock, metrics, f"{base}/docker.io/library/app", target)
    finally:
        await client.aclose()
        await target.aclose()


def marks_counted(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("swapper_cleanup_marks_total", {"result": result}) or 0


async def test_a_mark_is_written_beside_the_image_and_reads_back(setup: Setup) -> None:
    digest = setup.registry.push_image(setup.repository, "1.25")

    assert await setup.marker.mark(setup.repository, "1.25") is True

    tag = mark_tag("prod-eu", digest)
    assert setup.tags() == sorted(["1.25", tag])
    mark = await setup.marker.read(setup.repository, tag)
    assert (mark.cluster, mark.image_digest, mark.used_at) == ("prod-eu", digest, setup.clock.now)
    assert setup.mark_puts() == 1


async def test_a_mark_is_rewritten_at_most_once_per_mark_every(setup: Setup) -> None:
    setup.registry.push_image(setup.repository, "1.25")
    reference = f"{setup.registry.host}/{setup.repository}:1.25"

    for _ in range(5):
        await setup.marker.mark_targets([reference, reference])
        setup.clock.advance(timedelta(hours=4))  # 20 hours in all: within markEvery
    assert setup.mark_puts() == 1

    setup.clock.advance(timedelta(hours=5))  # a day and an hour after the first
    await setup.marker.mark_targets([reference])
    assert setup.mark_puts() == 2
    assert marks_counted(setup.metrics, "written") == 2
    assert marks_counted(setup.metrics, "fresh") == 4  # a reference twice in one call: once


async def test_a_rewritten_mark_carries_the_new_time_and_replaces_the_old(setup: Setup) -> None:
    digest = setup.registry.push_image(setup.repository, "1.25")
    tag = mark_tag("prod-eu", digest)
    await setup.marker.mark(setup.repository, "1.25")
    first = await setup.marker.store.head(setup.repository, tag)

    setup.clock.advance(2 * DAY)
    assert await setup.marker.mark(setup.repository, "1.25") is True

    mark = await setup.marker.read(setup.repository, tag)
    assert mark.used_at == setup.clock.now
    assert first is not None
    # the replaced mark is deleted, not left behind untagged
    assert await setup.marker.store.head(setup.repository, first.digest) is None


async def test_an_image_pinned_by_digest_is_marked_too(setup: Setup) -> None:
    digest = setup.registry.push_image(setup.repository, "1.25")

    await setup.marker.mark_targets([f"{setup.registry.host}/{setup.repository}@{digest}"])

    assert mark_tag("prod-eu", digest) in setup.tags()


async def test_an_image_the_mirror_does_not_have_gets_no_mark(setup: Setup) -> None:
    assert await setup.marker.mark(setup.repository, "missing") is False

    assert marks_counted(setup.metrics, "absent") == 1
    assert setup.mark_puts() == 0


async def test_a_tag_of_the_scheme_another_tool_pushed_reads_as_malformed(setup: Setup) -> None:
    digest = setup.registry.push_image(setup.repository, "1.25")
    tag = mark_tag("prod-eu", digest)
    setup.registry.push_image(setup.repository, tag, payload=b"not a mark")

    with pytest.raises(MalformedMark, match="artifact"):
        await setup.marker.read(setup.repository, tag)


# -- a private image ------------------------------------------------------------------------


async def test_a_private_images_mark_is_readable_only_by_who_could_read_the_image(
    tmp_path: Path,
) -> None:
    tokens = TokenServer(tmp_path / "tokens", users={"alice": "alice-secret"}, public=("public/",))
    tokens.start()
    mirror = start_registry(tmp_path / "mirror", token_server=tokens)
    alice = Credentials(username="alice", password="alice-secret")
    pusher = RegistryClient(
        hosts={mirror.host: HostConfig(plain_http=True)},
        credentials=static_credentials({mirror.host: alice}),
    )
    anonymous = RegistryClient(hosts={mirror.host: HostConfig(plain_http=True)})
    target = GenericTarget(GenericRegistry(registry=f"{mirror.host}/m", insecure=True))
    try:
        for repository in ("private/app", "public/app"):
            push_image(mirror, repository, make_image([make_layer(repository)]), "1.0")
        marker = Marker("prod-eu", OCIMarkStore(pusher, mirror.host), target)
        assert await marker.mark("private/app", "1.0")
        assert await marker.mark("public/app", "1.0")

        # Anyone may read the public image's mark, as they may read the image ...
        readable = OCIMarkStore(anonymous, mirror.host)
        public = Marker("prod-eu", readable, target)
        digest = (await readable.head("public/app", "1.0")).digest  # type: ignore[union-attr]
        assert (await public.read("public/app", mark_tag("prod-eu", digest))).cluster == "prod-eu"
        # ... and nobody new the private one's: it lives in the image's own repository.
        private_digest = (await marker.store.head("private/app", "1.0")).digest  # type: ignore[union-attr]
        with pytest.raises((RegistryError, CopyError)):
            await readable.get("private/app", mark_tag("prod-eu", private_digest))
        with mirror.client() as admin:  # the mark's only place: beside the image
            tags = admin.get("/v2/private/app/tags/list").json()["tags"]
        assert sorted(tags) == sorted(["1.0", mark_tag("prod-eu", private_digest)])
    finally:
        await pusher.aclose()
        await anonymous.aclose()
        await target.aclose()
        mirror.stop()
        tokens.stop()
