"""Copies between two real ``docker-registry`` processes: formats, digests, skips, mounts,
ordering and concurrency. Every successful copy is checked against the source with
``assert_same_image`` (digests all the way down, every blob present, ``skopeo inspect --raw``).
"""

from __future__ import annotations

import json

import pytest
from registries import (
    FAST_RETRY,
    Blob,
    Fault,
    FaultProxy,
    Index,
    Registry,
    assert_same_image,
    get_manifest,
    make_image,
    make_layer,
    multi_arch,
    plain_hosts,
    push_image,
    push_index,
    sha256,
)

from swapper.errors import CopyError
from swapper.oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    CopyEngine,
    ProgressEvent,
    RegistryClient,
)


async def test_an_oci_index_is_copied_with_every_platform_and_the_same_digests(
    engine: CopyEngine, source: Registry, target: Registry, multi: Index, fresh_repo: str
) -> None:
    result = await engine.copy(f"{source.host}/multi:1.0", f"{target.host}/{fresh_repo}:1.0")

    assert result.digest == result.source_digest == multi.digest
    assert result.media_type == OCI_INDEX
    assert result.platforms == ("linux/amd64", "linux/arm64")
    assert (result.manifests_pushed, result.blobs_copied, result.blobs_skipped) == (3, 8, 0)
    assert result.bytes_copied == sum(b.size for image in multi.images for b in image.blobs)
    assert not result.already_present and not result.filtered
    assert_same_image(source, "multi", target, fresh_repo, "1.0", multi.digest)


async def test_a_docker_manifest_list_is_copied_byte_for_byte(
    engine: CopyEngine, source: Registry, target: Registry, fresh_repo: str
) -> None:
    index = multi_arch("dockerlist", ("linux/amd64", "linux/arm/v7"), kind="docker")
    push_index(source, "dockerlist", index, "v1")

    result = await engine.copy(f"{source.host}/dockerlist:v1", f"{target.host}/{fresh_repo}:v1")

    assert result.media_type == DOCKER_MANIFEST_LIST
    assert result.platforms == ("linux/amd64", "linux/arm/v7")
    assert_same_image(source, "dockerlist", target, fresh_repo, "v1", index.digest)


@pytest.mark.parametrize("kind", ["oci", "docker"])
async def test_a_single_manifest_is_copied_with_its_config_and_layers(
    engine: CopyEngine, source: Registry, target: Registry, fresh_repo: str, kind: str
) -> None:
    image = make_image([make_layer(f"single-{kind}-{i}") for i in range(2)], kind=kind)  # type: ignore[arg-type]
    push_image(source, f"single-{kind}", image, "1")

    result = await engine.copy(f"{source.host}/single-{kind}:1", f"{target.host}/{fresh_repo}:1")

    assert result.platforms == ()
    assert (result.manifests_pushed, result.blobs_copied) == (1, 3)
    assert (result.media_type == DOCKER_MANIFEST) is (kind == "docker")
    assert_same_image(source, f"single-{kind}", target, fresh_repo, "1", image.digest)


async def test_an_artifact_with_unknown_media_types_is_passed_through_byte_for_byte(
    engine: CopyEngine, source: Registry, target: Registry, fresh_repo: str
) -> None:
    empty = Blob(sha256(b"{}"), 2, "application/vnd.oci.empty.v1+json", data=b"{}")
    payload = b'{"sbom": "example"}'
    sbom = Blob(sha256(payload), len(payload), "application/vnd.example.sbom.v1+json", payload)
    image = make_image([sbom], extra={"artifactType": "application/vnd.example.sbom.v1"})
    image.config = empty
    document = json.loads(image.data)
    document["config"] = empty.descriptor()
    image.data = json.dumps(document, indent=1).encode()
    push_image(source, "artifact", image, "sbom")

    result = await engine.copy(f"{source.host}/artifact:sbom", f"{target.host}/{fresh_repo}:sbom")

    assert result.blobs_copied == 2
    assert_same_image(source, "artifact", target, fresh_repo, "sbom", image.digest)


async def test_a_tag_and_digest_reference_copies_the_digest_and_keeps_the_tag(
    engine: CopyEngine, source: Registry, target: Registry, fresh_repo: str
) -> None:
    first = make_image([make_layer("tagdigest-1")])
    second = make_image([make_layer("tagdigest-2")])
    push_image(source, "tagdigest", first, "2.0")
    push_image(source, "tagdigest", second, "2.0")  # the tag has moved on since

    result = await engine.copy(
        f"{source.host}/tagdigest:2.0@{first.digest}",
        f"{target.host}/{fresh_repo}:2.0@{first.digest}",
    )

    assert result.digest == first.digest
    assert_same_image(source, "tagdigest", target, fresh_repo, first.digest, first.digest)
    tagged = get_manifest(target, fresh_repo, "2.0")
    assert tagged is not None and sha256(tagged[0]) == first.digest


async def test_a_target_pinned_to_another_digest_is_refused_and_nothing_is_tagged(
    engine: CopyEngine, source: Registry, target: Registry, multi: Index, fresh_repo: str
) -> None:
    other = "sha256:" + "0" * 64
    with pytest.raises(CopyError) as failure:
        await engine.copy(f"{source.host}/multi:1.0", f"{target.host}/{fresh_repo}:1.0@{other}")

    assert failure.value.reason == "digest-mismatch"
    assert get_manifest(target, fresh_repo, "1.0") is None


async def test_an_image_already_at_the_target_costs_one_request_there(
    source: Registry, target: Registry, multi: Index, fresh_repo: str, proxy: FaultProxy
) -> None:
    async with RegistryClient(hosts=plain_hosts(source, proxy), retry=FAST_RETRY) as client:
        engine = CopyEngine(client)
        await engine.copy(f"{source.host}/multi:1.0", f"{proxy.host}/{fresh_repo}:1.0")
        assert_same_image(source, "multi", target, fresh_repo, "1.0", multi.digest)
        proxy.log.clear()

        again = await engine.copy(f"{source.host}/multi:1.0", f"{proxy.host}/{fresh_repo}:1.0")

    assert again.already_present
    assert (again.manifests_pushed, again.blobs_copied, again.bytes_copied) == (0, 0, 0)
    assert [(entry.method, entry.path) for entry in proxy.log] == [
        ("HEAD", f"/v2/{fresh_repo}/manifests/1.0")
    ]


async def test_blobs_the_target_repository_already_has_are_skipped(
    engine: CopyEngine, source: Registry, target: Registry, fresh_repo: str
) -> None:
    base = [make_layer("shared-base-1"), make_layer("shared-base-2")]
    v1 = make_image([*base, make_layer("shared-v1")])
    v2 = make_image([*base, make_layer("shared-v2")], extra={"annotations": {"v": "2"}})
    push_image(source, "shared", v1, "v1")
    push_image(source, "shared", v2, "v2")
    await engine.copy(f"{source.host}/shared:v1", f"{target.host}/{fresh_repo}:v1")

    result = await engine.copy(f"{source.host}/shared:v2", f"{target.host}/{fresh_repo}:v2")

    shared = {b.digest for b in v1.blobs} & {b.digest for b in v2.blobs}
    assert result.blobs_skipped == len(shared) >= 2
    assert result.blobs_copied == len(v2.blobs) - len(shared)
    assert_same_image(source, "shared", target, fresh_repo, "v2", v2.digest)


async def test_blobs_seen_in_another_repository_of_the_target_are_mounted_not_uploaded(
    engine: CopyEngine, source: Registry, target: Registry, multi: Index, fresh_repo: str
) -> None:
    await engine.copy(f"{source.host}/multi:1.0", f"{target.host}/{fresh_repo}:1.0")

    result = await engine.copy(f"{source.host}/multi:1.0", f"{target.host}/{fresh_repo}-b:1.0")

    assert (result.blobs_mounted, result.blobs_copied, result.bytes_copied) == (8, 0, 0)
    assert_same_image(source, "multi", target, f"{fresh_repo}-b", "1.0", multi.digest)


async def test_a_source_on_the_target_registry_is_mounted_from_directly(
    engine: CopyEngine, target: Registry, fresh_repo: str
) -> None:
    image = make_image([make_layer("same-host-1"), make_layer("same-host-2")])
    push_image(target, f"{fresh_repo}-origin", image, "1")

    result = await engine.copy(
        f"{target.host}/{fresh_repo}-origin:1", f"{target.host}/{fresh_repo}:1"
    )

    assert (result.blobs_mounted, result.blobs_copied) == (3, 0)
    assert_same_image(target, f"{fresh_repo}-origin", target, fresh_repo, "1", image.digest)


async def test_no_more_blobs_than_the_limit_are_transferred_at_once(
    source: Registry, target: Registry, multi: Index, fresh_repo: str
) -> None:
    source_proxy = await FaultProxy(source.host).start()
    source_proxy.add(Fault("delay", "/blobs/sha256:", method="GET", times=100, seconds=0.15))
    in_flight: set[str] = set()
    peak = 0

    def track(event: ProgressEvent) -> None:
        nonlocal peak
        if event.kind == "blob-started":
            in_flight.add(event.digest)
            peak = max(peak, len(in_flight))
        elif event.kind == "blob-copied":
            in_flight.discard(event.digest)

    try:
        async with RegistryClient(hosts=plain_hosts(source_proxy, target)) as client:
            engine = CopyEngine(client, max_concurrent_blobs=3)
            await engine.copy(
                f"{source_proxy.host}/multi:1.0", f"{target.host}/{fresh_repo}:1.0", progress=track
            )
    finally:
        await source_proxy.aclose()

    assert peak == 3  # several at once (both platforms share the limit), never more
    assert_same_image(source, "multi", target, fresh_repo, "1.0", multi.digest)


async def test_manifests_are_pushed_after_all_their_blobs_and_the_index_last(
    source: Registry, target: Registry, multi: Index, fresh_repo: str, proxy: FaultProxy
) -> None:
    async with RegistryClient(hosts=plain_hosts(source, proxy)) as client:
        await CopyEngine(client).copy(f"{source.host}/multi:1.0", f"{proxy.host}/{fresh_repo}:1.0")

    puts = [entry for entry in proxy.log if entry.method == "PUT"]
    blob_done = {
        entry.path.split("digest=")[1].replace("%3A", ":"): entry.finished
        for entry in puts
        if "/blobs/uploads/" in entry.path
    }
    manifest_started = {
        entry.path.rsplit("/", 1)[1]: entry.started for entry in puts if "/manifests/" in entry.path
    }
    for image in multi.images:
        assert all(blob_done[b.digest] <= manifest_started[image.digest] for b in image.blobs)
    last_child = max(entry.finished for entry in puts if "/manifests/sha256:" in entry.path)
    assert last_child <= manifest_started["1.0"]
    assert puts[-1].path == f"/v2/{fresh_repo}/manifests/1.0"
    assert_same_image(source, "multi", target, fresh_repo, "1.0", multi.digest)


async def test_progress_reports_every_blob_and_every_byte_sent(
    engine: CopyEngine, source: Registry, target: Registry, multi: Index, fresh_repo: str
) -> None:
    events: list[ProgressEvent] = []

    result = await engine.copy(
        f"{source.host}/multi:1.0", f"{target.host}/{fresh_repo}:1.0", progress=events.append
    )

    copied = [e for e in events if e.kind == "blob-copied"]
    assert len(copied) == 8 == events[-1].blobs_done == events[-1].blobs_total
    assert events[-1].bytes_done == events[-1].bytes_total == result.bytes_copied
    sent = sum(e.size for e in copied)
    assert sent == result.bytes_copied
    assert [e.kind for e in events][-1] == "manifest-pushed"
    assert sum(1 for e in events if e.kind == "manifest-pushed") == 3
    assert_same_image(source, "multi", target, fresh_repo, "1.0", multi.digest)


async def test_a_missing_source_image_fails_with_reason_not_found_and_tags_nothing(
    engine: CopyEngine, source: Registry, target: Registry, fresh_repo: str
) -> None:
    with pytest.raises(CopyError) as failure:
        await engine.copy(f"{source.host}/does-not-exist:1", f"{target.host}/{fresh_repo}:1")

    assert failure.value.reason == "not-found"
    assert get_manifest(target, fresh_repo, "1") is None
