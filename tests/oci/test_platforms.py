"""Platform selection: what is copied, and which index digest the target ends up with."""

from __future__ import annotations

import json

import pytest
from registries import (
    Index,
    Registry,
    assert_same_image,
    get_manifest,
    make_image,
    make_index,
    make_layer,
    multi_arch,
    push_index,
    sha256,
    skopeo_raw,
    tree,
)

from swapper.errors import CopyError
from swapper.oci import CopyEngine


@pytest.fixture(scope="module")
def three(source: Registry) -> Index:
    """linux/amd64, linux/arm64 and linux/s390x, at ``source/three:1``."""
    index = multi_arch("three", ("linux/amd64", "linux/arm64", "linux/s390x"), layers=2)
    push_index(source, "three", index, "1")
    return index


def manifest_exists(registry: Registry, repo: str, digest: str) -> bool:
    return get_manifest(registry, repo, digest) is not None


async def test_only_the_selected_platforms_are_copied_under_a_filtered_index(
    engine: CopyEngine, source: Registry, target: Registry, three: Index, fresh_repo: str
) -> None:
    result = await engine.copy(
        f"{source.host}/three:1",
        f"{target.host}/{fresh_repo}:1",
        platforms=["linux/amd64", "linux/arm64"],
    )

    assert result.filtered and not result.digest_preserved
    assert result.platforms == ("linux/amd64", "linux/arm64")
    amd64, arm64, s390x = three.images
    assert not manifest_exists(target, fresh_repo, s390x.digest)
    pushed = get_manifest(target, fresh_repo, "1")
    assert pushed is not None and sha256(pushed[0]) == result.digest
    children = [m["digest"] for m in json.loads(pushed[0])["manifests"]]
    assert children == [amd64.digest, arm64.digest]
    assert skopeo_raw(target, f"{fresh_repo}:1") == pushed[0]
    # the children themselves are the source's, byte for byte
    copied = tree(target, fresh_repo, "1")["children"]
    assert copied == tree(source, "three", "1")["children"][:2]


async def test_a_filtered_index_already_at_the_target_is_not_pushed_again(
    engine: CopyEngine, source: Registry, target: Registry, three: Index, fresh_repo: str
) -> None:
    first = await engine.copy(
        f"{source.host}/three:1", f"{target.host}/{fresh_repo}:1", platforms=["linux/amd64"]
    )

    again = await engine.copy(
        f"{source.host}/three:1", f"{target.host}/{fresh_repo}:1", platforms=["linux/amd64"]
    )

    assert first.filtered and again.already_present
    assert again.digest == first.digest and again.manifests_pushed == 0
    source_children = tree(source, "three", "1")["children"]
    assert tree(target, fresh_repo, "1")["children"] == source_children[:1]


async def test_the_original_index_is_pushed_when_the_target_already_has_every_child(
    engine: CopyEngine, source: Registry, target: Registry, three: Index, fresh_repo: str
) -> None:
    await engine.copy(f"{source.host}/three:1", f"{target.host}/{fresh_repo}:full")

    result = await engine.copy(
        f"{source.host}/three:1", f"{target.host}/{fresh_repo}:1", platforms=["linux/arm64"]
    )

    assert not result.filtered and result.digest == three.digest
    assert result.platforms == ("linux/arm64",)
    assert result.manifests_skipped == 1  # arm64 was there already
    assert_same_image(source, "three", target, fresh_repo, "1", three.digest)


async def test_a_target_pinned_by_digest_gets_every_platform_whatever_the_selection(
    engine: CopyEngine, source: Registry, target: Registry, three: Index, fresh_repo: str
) -> None:
    result = await engine.copy(
        f"{source.host}/three:1@{three.digest}",
        f"{target.host}/{fresh_repo}:1@{three.digest}",
        platforms=["linux/amd64"],
    )

    assert result.digest_preserved and len(result.platforms) == 3
    assert_same_image(source, "three", target, fresh_repo, "1", three.digest)


async def test_attestations_follow_the_platform_they_describe(
    engine: CopyEngine, source: Registry, target: Registry, fresh_repo: str
) -> None:
    amd64 = make_image([make_layer("attest-amd64")], "linux/amd64")
    arm64 = make_image([make_layer("attest-arm64")], "linux/arm64")
    attestations = [
        make_image([make_layer(f"attest-statement-{image.platform}")], "unknown/unknown")
        for image in (amd64, arm64)
    ]
    extra = [
        {
            "mediaType": statement.media_type,
            "digest": statement.digest,
            "size": len(statement.data),
            "platform": {"architecture": "unknown", "os": "unknown"},
            "annotations": {
                "vnd.docker.reference.digest": image.digest,
                "vnd.docker.reference.type": "attestation-manifest",
            },
        }
        for statement, image in zip(attestations, (amd64, arm64), strict=True)
    ]
    index = make_index([amd64, arm64], extra_manifests=extra)
    index.images += attestations
    push_index(source, "attested", index, "1")

    result = await engine.copy(
        f"{source.host}/attested:1", f"{target.host}/{fresh_repo}:1", platforms=["linux/arm64"]
    )

    assert result.platforms == ("linux/arm64",)
    assert manifest_exists(target, fresh_repo, attestations[1].digest)
    assert not manifest_exists(target, fresh_repo, attestations[0].digest)
    assert not manifest_exists(target, fresh_repo, amd64.digest)
    pushed = get_manifest(target, fresh_repo, "1")
    assert pushed is not None
    children = [m["digest"] for m in json.loads(pushed[0])["manifests"]]
    assert children == [arm64.digest, attestations[1].digest]
    assert skopeo_raw(target, f"{fresh_repo}:1") == pushed[0]
    source_children = tree(source, "attested", "1")["children"]
    assert tree(target, fresh_repo, "1")["children"] == [source_children[i] for i in (1, 3)]


async def test_a_selection_matching_no_platform_fails_and_tags_nothing(
    engine: CopyEngine, source: Registry, target: Registry, three: Index, fresh_repo: str
) -> None:
    with pytest.raises(CopyError) as failure:
        await engine.copy(
            f"{source.host}/three:1", f"{target.host}/{fresh_repo}:1", platforms=["windows/amd64"]
        )

    assert failure.value.reason == "platform-not-found"
    assert get_manifest(target, fresh_repo, "1") is None
