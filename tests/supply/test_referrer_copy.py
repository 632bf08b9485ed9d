"""The copy engine copies what refers to an image with it: OCI 1.1 referrers found with the
referrers API or the referrers tag fallback, cosign's tags, referrers of referrers; digests
unchanged, the target's fallback index kept up to date, bad referrers counted, never fatal.

Real registries on loopback: go-containerregistry's with the referrers API, and Debian's
docker-registry without it. The artifacts are built here (the real cosign: test_cosign.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from helpers import run_swapper
from registries import (
    FAST_RETRY,
    OCI_INDEX,
    OCI_MANIFEST,
    Index,
    Registry,
    get_manifest,
    multi_arch,
    plain_hosts,
    push_blob,
    push_index,
    push_manifest,
)
from supply.artifacts import (
    Artifact,
    artifact,
    cosign_shaped,
    fallback_index,
    fallback_listed,
    push_artifact,
    referrers_listed,
    subject_of,
)
from supply.tools import RunningRegistry

from swapper.errors import CopyError, CopyReason
from swapper.oci import CopyEngine, CopyResult, ReferrerSettings, RegistryClient

SBOM = "application/spdx+json"
SIGNATURE = "application/vnd.example.signature"


@pytest.fixture
async def client(
    referrers_registry: RunningRegistry,
    referrers_target: RunningRegistry,
    lenient_registry: RunningRegistry,
    plain_source: Registry,
    plain_target: Registry,
) -> AsyncIterator[RegistryClient]:
    hosts = plain_hosts(
        referrers_registry.host,
        referrers_target.host,
        lenient_registry.host,
        plain_source,
        plain_target,
    )
    async with RegistryClient(hosts=hosts, retry=FAST_RETRY) as registry_client:
        yield registry_client


def engine_for(client: RegistryClient, **settings: object) -> CopyEngine:
    return CopyEngine(client, referrers=ReferrerSettings(**settings))  # type: ignore[arg-type]


def http(host: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://{host}", timeout=30)


def push_signed(host: str, repo: str, name: str) -> tuple[Index, dict[str, Artifact]]:
    """A two-platform index at ``repo:1.0`` with an SBOM on the index, a signature on the SBOM
    (level 2) and a signature on the arm64 manifest, all OCI 1.1 referrers (subject set)."""
    index = multi_arch(name)
    with http(host) as client:
        push_index_to(client, repo, index)
        on_index = subject_of(index.data, OCI_INDEX)
        sbom = artifact(on_index, SBOM, b'{"spdxVersion":"SPDX-2.3"}', SBOM)
        sbom_signature = artifact(
            subject_of(sbom.data, OCI_MANIFEST), SIGNATURE, b"sig-of-sbom", SIGNATURE
        )
        arm = index.images[1]
        arm_signature = artifact(
            subject_of(arm.data, arm.media_type), SIGNATURE, b"sig-of-arm64", SIGNATURE
        )
        for item in (sbom, sbom_signature, arm_signature):
            push_artifact(client, repo, item)
    return index, {"sbom": sbom, "sbom-signature": sbom_signature, "arm-signature": arm_signature}


def push_index_to(client: httpx.Client, repo: str, index: Index) -> None:

    for image in index.images:
        for blob in image.blobs:
            push_blob(client, repo, blob)
        push_manifest(client, repo, image.digest, image.data, image.media_type)
    push_manifest(client, repo, "1.0", index.data, index.media_type)


def counts(result: CopyResult) -> dict[str, int]:
    return {name: count for name, count in result.referrers.counts if count}


async def test_oci_referrers_found_with_the_api_are_copied_with_their_digests_and_listed_there(
    client: RegistryClient,
    referrers_registry: RunningRegistry,
    referrers_target: RunningRegistry,
    fresh_repo: str,
) -> None:
    index, made = push_signed(referrers_registry.host, fresh_repo, "api")
    result = await engine_for(client).copy(
        f"{referrers_registry.host}/{fresh_repo}:1.0", f"{referrers_target.host}/{fresh_repo}:1.0"
    )
    assert result.digest == index.digest
    assert counts(result) == {"copied": 3}, result.referrers.problems
    with http(referrers_target.host) as target:
        assert referrers_listed(target, fresh_repo, index.digest) == [made["sbom"].digest]
        assert referrers_listed(target, fresh_repo, made["sbom"].digest) == [
            made["sbom-signature"].digest
        ]
        assert referrers_listed(target, fresh_repo, index.images[1].digest) == [
            made["arm-signature"].digest
        ]
        for item in made.values():
            stored = target.get(
                f"/v2/{fresh_repo}/manifests/{item.digest}", headers={"Accept": OCI_MANIFEST}
            )
            assert stored.content == item.data  # byte for byte: the digest is unchanged


async def test_a_second_copy_finds_the_referrers_present_and_pushes_nothing(
    client: RegistryClient,
    referrers_registry: RunningRegistry,
    referrers_target: RunningRegistry,
    fresh_repo: str,
) -> None:
    push_signed(referrers_registry.host, fresh_repo, "again")
    source = f"{referrers_registry.host}/{fresh_repo}:1.0"
    engine = engine_for(client)
    await engine.copy(source, f"{referrers_target.host}/{fresh_repo}:1.0")
    # A new tag for the same image: the copy runs (the tag is missing), its referrers are there.
    again = await engine.copy(source, f"{referrers_target.host}/{fresh_repo}:2.0")
    assert counts(again) == {"present": 3}


async def test_the_type_allow_list_copies_only_the_artifact_types_it_names(
    client: RegistryClient,
    referrers_registry: RunningRegistry,
    referrers_target: RunningRegistry,
    fresh_repo: str,
) -> None:
    index, made = push_signed(referrers_registry.host, fresh_repo, "types")
    result = await engine_for(client, types=("application/vnd.example.*",)).copy(
        f"{referrers_registry.host}/{fresh_repo}:1.0", f"{referrers_target.host}/{fresh_repo}:1.0"
    )
    # The SBOM is left out, so the signature hanging from it is never reached.
    assert counts(result) == {"copied": 1, "filtered": 1}
    with http(referrers_target.host) as target:
        assert referrers_listed(target, fresh_repo, index.digest) == []
        assert referrers_listed(target, fresh_repo, index.images[1].digest) == [
            made["arm-signature"].digest
        ]


async def test_platform_filtering_keeps_the_referrers_of_the_manifests_it_keeps(
    client: RegistryClient,
    referrers_registry: RunningRegistry,
    referrers_target: RunningRegistry,
    fresh_repo: str,
) -> None:
    index, made = push_signed(referrers_registry.host, fresh_repo, "platforms")
    amd_only = await engine_for(client).copy(
        f"{referrers_registry.host}/{fresh_repo}:1.0",
        f"{referrers_target.host}/{fresh_repo}:amd64",
        platforms=["linux/amd64"],
    )
    # The index's SBOM and its signature (the source index is signed, whatever was kept); the
    # arm64 manifest was not copied, nor its signature.
    assert counts(amd_only) == {"copied": 2}
    arm_only = await engine_for(client).copy(
        f"{referrers_registry.host}/{fresh_repo}:1.0",
        f"{referrers_target.host}/{fresh_repo}:arm64",
        platforms=["linux/arm64"],
    )
    assert counts(arm_only) == {"copied": 1, "present": 2}
    with http(referrers_target.host) as target:
        assert referrers_listed(target, fresh_repo, index.images[1].digest) == [
            made["arm-signature"].digest
        ]


def push_fallback_signed(
    registry: Registry, repo: str, name: str
) -> tuple[Index, Artifact, Artifact]:
    """A two-platform index at ``repo:1.0`` in docker-registry: an SBOM on the index listed in
    the referrers tag fallback, and a cosign-shaped signature under ``sha256-<hex>.sig``."""
    index = multi_arch(name)
    push_index(registry, repo, index, "1.0")
    sbom = artifact(subject_of(index.data, OCI_INDEX), SBOM, b'{"spdxVersion":"SPDX-2.3"}', SBOM)
    signature = cosign_shaped(
        b'{"critical":{"image":{"docker-manifest-digest":"' + index.digest.encode() + b'"}}}'
    )
    with registry.client() as client:
        push_artifact(client, repo, sbom)

        push_manifest(
            client,
            repo,
            index.digest.replace(":", "-"),
            fallback_index([sbom.descriptor()]),
            OCI_INDEX,
        )
        push_artifact(client, repo, signature, index.digest.replace(":", "-") + ".sig")
    return index, sbom, signature


async def test_fallback_and_cosign_tag_referrers_are_copied_into_a_registry_without_the_api(
    client: RegistryClient, plain_source: Registry, plain_target: Registry, fresh_repo: str
) -> None:
    index, sbom, signature = push_fallback_signed(plain_source, fresh_repo, "fallback")
    result = await engine_for(client).copy(
        f"{plain_source.host}/{fresh_repo}:1.0", f"{plain_target.host}/{fresh_repo}:1.0"
    )
    assert counts(result) == {"copied": 2}, result.referrers.problems
    assert result.referrers.problems == ()
    sig_tag = index.digest.replace(":", "-") + ".sig"
    copied = get_manifest(plain_target, fresh_repo, sig_tag)
    assert copied is not None and copied[0] == signature.data
    with plain_target.client() as target:
        # The target has no referrers API: its fallback index lists the SBOM.
        assert fallback_listed(target, fresh_repo, index.digest) == [sbom.digest]
        assert target.get(f"/v2/{fresh_repo}/referrers/{index.digest}").status_code == 404


async def test_referrers_from_the_tag_fallback_are_listed_by_the_api_of_a_target_that_has_one(
    client: RegistryClient,
    plain_source: Registry,
    referrers_target: RunningRegistry,
    fresh_repo: str,
) -> None:
    index, sbom, _ = push_fallback_signed(plain_source, fresh_repo, "fallback-to-api")
    result = await engine_for(client).copy(
        f"{plain_source.host}/{fresh_repo}:1.0", f"{referrers_target.host}/{fresh_repo}:1.0"
    )
    assert counts(result) == {"copied": 2}
    with http(referrers_target.host) as target:
        assert referrers_listed(target, fresh_repo, index.digest) == [sbom.digest]
        # No fallback tag is written where the API answers.
        assert fallback_listed(target, fresh_repo, index.digest) is None


def requests_logged(registry: Registry, method: str, pattern: str) -> int:
    needle = re.compile(rf'"{method} {pattern}')
    return sum(bool(needle.search(line)) for line in registry.logs().splitlines())


async def test_an_image_without_referrers_costs_one_referrers_request_per_manifest_at_most(
    client: RegistryClient,
    referrers_registry: RunningRegistry,
    referrers_target: RunningRegistry,
    plain_source: Registry,
    fresh_repo: str,
) -> None:
    index = multi_arch("bare")
    with http(referrers_registry.host) as api_source:
        push_index_to(api_source, fresh_repo, index)
    push_index(plain_source, fresh_repo, index, "1.0")
    engine = engine_for(client)
    before = referrers_registry.requests("GET", f"/v2/{fresh_repo}/referrers/")
    result = await engine.copy(
        f"{referrers_registry.host}/{fresh_repo}:1.0", f"{referrers_target.host}/{fresh_repo}:1.0"
    )
    assert counts(result) == {}
    # The index and its two manifests: one referrers request each, and one tag list.
    assert referrers_registry.requests("GET", f"/v2/{fresh_repo}/referrers/") - before == 3
    assert referrers_registry.requests("GET", f"/v2/{fresh_repo}/tags/list") == 1
    # docker-registry answers 404: one request, then the engine knows it has no such API.
    result = await engine.copy(
        f"{plain_source.host}/{fresh_repo}:1.0", f"{referrers_target.host}/{fresh_repo}:2.0"
    )
    assert counts(result) == {}
    assert requests_logged(plain_source, "GET", f"/v2/{fresh_repo}/referrers/") == 1
    assert requests_logged(plain_source, "GET", f"/v2/{fresh_repo}/tags/list") == 1
    assert requests_logged(plain_source, "HEAD", f"/v2/{fresh_repo}/manifests/sha256-") == 0


def put_as_json(host: str, repo: str, tag: str, data: bytes) -> None:
    """Store ``data`` under ``tag`` with a Content-Type the registry does not check."""
    with http(host) as client:
        client.put(
            f"/v2/{repo}/manifests/{tag}",
            content=data,
            headers={"Content-Type": "application/json"},
        ).raise_for_status()


async def test_a_malformed_fallback_index_is_reported_and_the_image_is_still_copied(
    client: RegistryClient,
    lenient_registry: RunningRegistry,
    plain_target: Registry,
    fresh_repo: str,
) -> None:
    index = multi_arch("malformed")
    with http(lenient_registry.host) as source:
        push_index_to(source, fresh_repo, index)
    bad = (
        b'{"schemaVersion":2,"mediaType":"' + OCI_INDEX.encode() + b'","manifests":'
        b'[{"mediaType":"x","digest":"sha256:nothex","size":-1}, 7]}'
    )
    put_as_json(lenient_registry.host, fresh_repo, index.digest.replace(":", "-"), bad)
    # and the arm64 manifest's fallback tag is not JSON at all
    put_as_json(lenient_registry.host, fresh_repo, index.images[1].digest.replace(":", "-"), b"{")
    result = await engine_for(client).copy(
        f"{lenient_registry.host}/{fresh_repo}:1.0", f"{plain_target.host}/{fresh_repo}:1.0"
    )
    assert result.digest == index.digest
    # One problem per malformed index, each naming the tag it came from.
    assert counts(result) == {"malformed": 2}, result.referrers.problems
    assert all("is malformed" in problem for problem in result.referrers.problems)
    named = " ".join(result.referrers.problems)
    assert index.digest.replace(":", "-") in named
    assert index.images[1].digest.replace(":", "-") in named
    assert get_manifest(plain_target, fresh_repo, "1.0") is not None


async def test_a_referrer_loop_ends_with_a_loop_counted_and_the_image_copied(
    client: RegistryClient, plain_source: Registry, plain_target: Registry, fresh_repo: str
) -> None:
    # The index's fallback lists a signature, and the signature's fallback lists the index
    # again (a hostile or broken registry: no real subject chain can loop).
    index = multi_arch("loop")
    push_index(plain_source, fresh_repo, index, "1.0")
    signature = artifact(subject_of(index.data, OCI_INDEX), SIGNATURE, b"loop-sig", SIGNATURE)
    with plain_source.client() as source:
        push_artifact(source, fresh_repo, signature)
        index_entry = {"mediaType": OCI_INDEX, "digest": index.digest, "size": len(index.data)}
        push_manifest(
            source,
            fresh_repo,
            index.digest.replace(":", "-"),
            fallback_index([signature.descriptor()]),
            OCI_INDEX,
        )
        push_manifest(
            source,
            fresh_repo,
            signature.digest.replace(":", "-"),
            fallback_index([index_entry]),
            OCI_INDEX,
        )
    result = await engine_for(client).copy(
        f"{plain_source.host}/{fresh_repo}:1.0", f"{plain_target.host}/{fresh_repo}:1.0"
    )
    assert result.digest == index.digest
    assert counts(result) == {"copied": 1, "loop": 1}
    assert any("referrer loop" in problem for problem in result.referrers.problems)


async def test_referrers_deeper_than_the_bound_are_counted_and_not_copied(
    client: RegistryClient,
    referrers_registry: RunningRegistry,
    referrers_target: RunningRegistry,
    fresh_repo: str,
) -> None:
    push_signed(referrers_registry.host, fresh_repo, "deep")
    result = await engine_for(client, depth=1).copy(
        f"{referrers_registry.host}/{fresh_repo}:1.0", f"{referrers_target.host}/{fresh_repo}:1.0"
    )
    assert counts(result) == {"copied": 2, "too-deep": 1}


async def test_a_referrer_that_cannot_be_read_fails_alone_and_the_image_is_copied(
    client: RegistryClient,
    lenient_registry: RunningRegistry,
    plain_target: Registry,
    fresh_repo: str,
) -> None:
    # The fallback lists a referrer the registry does not have.
    index = multi_arch("missing")
    with http(lenient_registry.host) as source:
        push_index_to(source, fresh_repo, index)
    ghost = artifact(subject_of(index.data, OCI_INDEX), SIGNATURE, b"never pushed", SIGNATURE)
    fallback = fallback_index([ghost.descriptor()])
    put_as_json(lenient_registry.host, fresh_repo, index.digest.replace(":", "-"), fallback)
    result = await engine_for(client).copy(
        f"{lenient_registry.host}/{fresh_repo}:1.0", f"{plain_target.host}/{fresh_repo}:1.0"
    )
    assert result.digest == index.digest
    assert counts(result) == {"failed": 1}
    (problem,) = result.referrers.problems
    assert ghost.digest in problem and "not-found" in problem
    assert get_manifest(plain_target, fresh_repo, "1.0") is not None


async def test_an_engine_without_referrer_settings_copies_none(
    client: RegistryClient,
    referrers_registry: RunningRegistry,
    referrers_target: RunningRegistry,
    fresh_repo: str,
) -> None:
    index, _ = push_signed(referrers_registry.host, fresh_repo, "off")
    result = await CopyEngine(client).copy(
        f"{referrers_registry.host}/{fresh_repo}:1.0", f"{referrers_target.host}/{fresh_repo}:1.0"
    )
    assert result.referrers.counts == ()
    with http(referrers_target.host) as target:
        assert referrers_listed(target, fresh_repo, index.digest) == []


async def test_an_image_copy_that_fails_stops_its_referrers_and_tags_nothing(
    client: RegistryClient,
    lenient_registry: RunningRegistry,
    plain_target: Registry,
    fresh_repo: str,
) -> None:
    # The registry stores a manifest whose layers it does not have: the copy fails on them.
    index = multi_arch("broken")
    with http(lenient_registry.host) as source:
        for image in index.images:
            push_blob(source, fresh_repo, image.config)  # config only: no layers
            push_manifest(source, fresh_repo, image.digest, image.data, image.media_type)
        push_manifest(source, fresh_repo, "1.0", index.data, index.media_type)
        signature = artifact(subject_of(index.data, OCI_INDEX), SIGNATURE, b"sig", SIGNATURE)
        push_artifact(source, fresh_repo, signature)
        put_fallback = fallback_index([signature.descriptor()])
    put_as_json(lenient_registry.host, fresh_repo, index.digest.replace(":", "-"), put_fallback)
    with pytest.raises(CopyError) as failed:
        await engine_for(client).copy(
            f"{lenient_registry.host}/{fresh_repo}:1.0", f"{plain_target.host}/{fresh_repo}:1.0"
        )
    assert failed.value.reason == CopyReason.NOT_FOUND
    assert get_manifest(plain_target, fresh_repo, "1.0") is None
    # Nothing of the copy is left running.
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in pending if "_Referrers" in repr(t.get_coro())]


def test_swapper_mirror_passes_its_referrer_type_allow_list_to_the_copy(
    referrers_registry: RunningRegistry, referrers_target: RunningRegistry, fresh_repo: str
) -> None:
    push_signed(referrers_registry.host, fresh_repo, "cli-types")
    done = run_swapper(
        "mirror",
        f"{referrers_registry.host}/{fresh_repo}:1.0",
        f"{referrers_target.host}/{fresh_repo}:1.0",
        "--insecure",
        f"{referrers_registry.host},{referrers_target.host}",
        "--referrer-type",
        "application/vnd.example.*",
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^referrers 1 copied, 1 filtered in [0-9.]+s$", done.stdout, re.M), (
        done.stdout
    )
