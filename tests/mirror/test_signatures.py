"""The signature check against a real registry (Debian's ``docker-registry``, which has no
referrers API: referrers are found through the distribution spec's tag fallback), with
signatures laid out as cosign writes them, made here so that bad input can be shaped too.
Signatures made by cosign itself: tests/supply/test_verify_cosign.py.

And the decisions built on it: admission (:class:`~swapper.mutation.Mutator`) neither copies nor
swaps an image a rule applies to unless a signature verifies, and copies a verified tag by the
digest that verified; the copier refuses an unverified source whoever asks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from registries import (
    FAST_RETRY,
    Blob,
    Fault,
    FaultProxy,
    Registry,
    make_image,
    make_layer,
    plain_hosts,
    push_blob,
    push_image,
    push_manifest,
    start_registry,
)
from signing import (
    OCI_MANIFEST,
    Artifact,
    Signer,
    bundle_referrer,
    dsse_bundle,
    sha256,
    signature_manifest,
    simple_signing_payload,
    statement,
)

from swapper.config import CopyPolicy, SwapPolicy, load_config
from swapper.errors import CopyError, CopyReason
from swapper.filters import Filters
from swapper.images import parse
from swapper.metrics import Metrics
from swapper.mirror.engine import EngineCopier
from swapper.mirror.memory import MemoryCopyQueue
from swapper.mirror.queue import CopyJob, Requester
from swapper.mirror.signatures import SignatureVerifier
from swapper.mirror.trust import SignatureState, VerifyRules
from swapper.mutation import CopyState, Mutator, Outcome, Policy
from swapper.oci import CopyEngine, RegistryClient
from swapper.targets.memory import MemoryTarget

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
WHO = Requester("team")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = start_registry(tmp_path_factory.mktemp("signed-source"), access_log=True)
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.new()


@pytest.fixture(scope="module")
def stranger() -> Signer:
    return Signer.new()


@pytest.fixture(scope="module")
def rules(
    tmp_path_factory: pytest.TempPathFactory, source: Registry, signer: Signer
) -> VerifyRules:
    """One rule: every image under ``<source>/signed/`` needs a signature by ``signer``."""
    key = signer.write_public(tmp_path_factory.mktemp("keys") / "cosign.pub")
    config = load_config(
        {
            "target": {"type": "generic", "generic": {"registry": "mirror.local:5000"}},
            "mirror": {"verify": [{"keys": [key], "images": [f"{source.host}/signed/"]}]},
        }
    )
    return VerifyRules(config.mirror.verify)


@pytest.fixture
async def client(source: Registry) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(hosts=plain_hosts(source), retry=FAST_RETRY) as registry_client:
        yield registry_client


@pytest.fixture
def verifier(client: RegistryClient, rules: VerifyRules) -> SignatureVerifier:
    return SignatureVerifier(client, rules, metrics=Metrics())


_images = iter(range(10_000))


def new_image(source: Registry, tag: str = "1.0") -> tuple[str, str]:
    """A fresh image under ``signed/``: its repository and digest."""
    n = next(_images)
    repo = f"signed/app{n}"
    image = make_image([make_layer(f"signed-{n}", 512)])
    return repo, push_image(source, repo, image, tag)


def push_artifact(source: Registry, repo: str, artifact: Artifact, ref: str) -> str:
    with source.client() as client:
        for digest, data in artifact.blobs.items():
            push_blob(client, repo, Blob(digest, len(data), "application/octet-stream", data=data))
        return push_manifest(client, repo, ref, artifact.manifest, OCI_MANIFEST)


def push_referrers_tag(source: Registry, repo: str, digest: str, referrers: list[Artifact]) -> None:
    """The referrers tag ``sha256-<hex>``: an index of the referrers (the spec's fallback)."""
    manifests = []
    for artifact in referrers:
        document = json.loads(artifact.manifest)
        push_artifact(source, repo, artifact, artifact.digest)
        manifests.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": artifact.digest,
                "size": len(artifact.manifest),
                "artifactType": document.get("artifactType", ""),
                "annotations": document.get("annotations", {}),
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    with source.client() as client:
        push_manifest(client, repo, digest.replace(":", "-"), index.encode(), OCI_INDEX)


def sign_tag_scheme(source: Registry, repo: str, digest: str, *signers: Signer) -> None:
    payload = simple_signing_payload(digest, f"{source.host}/{repo}")
    artifact = signature_manifest([(payload, s.sign(payload)) for s in signers])
    push_artifact(source, repo, artifact, digest.replace(":", "-") + ".sig")


def requests(registry: Registry, method: str, path_start: str) -> int:
    """How many ``method`` requests to paths starting with ``path_start`` the access log shows."""
    needle = f'"{method} {path_start}'
    return sum(needle in line for line in registry.logs().splitlines())


def subject(digest: str, size: int = 1) -> dict[str, Any]:
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": size}


def ref(source: Registry, repo: str, tag: str = "1.0") -> Any:
    return parse(f"{source.host}/{repo}:{tag}")


# -- the check ----------------------------------------------------------------------------------


async def test_an_image_signed_in_the_tag_scheme_by_the_key_is_verified_by_its_digest(
    source: Registry, verifier: SignatureVerifier, signer: Signer
) -> None:
    repo, digest = new_image(source)
    sign_tag_scheme(source, repo, digest, signer)
    signed = await verifier.check(ref(source, repo), (0,), WHO, None)
    assert signed.state is SignatureState.VERIFIED, signed.reason
    assert signed.digest == digest
    assert signed.key.endswith("cosign.pub")
    assert verifier.metrics.signature_verifications.labels("verified")._value.get() == 1


async def test_an_image_signed_only_by_another_key_is_invalid(
    source: Registry, verifier: SignatureVerifier, stranger: Signer
) -> None:
    repo, digest = new_image(source)
    sign_tag_scheme(source, repo, digest, stranger)
    signed = await verifier.check(ref(source, repo), (0,), WHO, None)
    assert signed.state is SignatureState.INVALID
    assert "signed by none of the keys" in signed.reason
    assert "mirror.verify[0]" in signed.reason


async def test_one_good_signature_among_others_by_other_keys_is_enough(
    source: Registry, verifier: SignatureVerifier, signer: Signer, stranger: Signer
) -> None:
    repo, digest = new_image(source)
    sign_tag_scheme(source, repo, digest, stranger, signer)
    assert (await verifier.check(ref(source, repo), (0,), WHO, None)).verified


async def test_an_unsigned_image_is_unsigned_after_asking_the_tag_and_the_referrers(
    source: Registry, verifier: SignatureVerifier
) -> None:
    repo, digest = new_image(source)
    before = requests(source, "GET", f"/v2/{repo}/referrers/")
    signed = await verifier.check(ref(source, repo), (0,), WHO, None)
    assert signed.state is SignatureState.UNSIGNED
    assert signed.reason.startswith(f"no cosign signature for {digest}")
    # docker-registry has no referrers API: asked once, then the tag fallback.
    assert requests(source, "GET", f"/v2/{repo}/referrers/") == before + 1
    assert requests(source, "GET", f"/v2/{repo}/manifests/sha256-") >= 2  # .sig and the fallback


async def test_a_signature_by_the_key_over_another_digest_is_invalid_and_says_so(
    source: Registry, verifier: SignatureVerifier, signer: Signer
) -> None:
    repo, digest = new_image(source)
    other = sha256(b"some other image")
    payload = simple_signing_payload(other)
    artifact = signature_manifest([(payload, signer.sign(payload))])
    push_artifact(source, repo, artifact, digest.replace(":", "-") + ".sig")
    signed = await verifier.check(ref(source, repo), (0,), WHO, None)
    assert signed.state is SignatureState.INVALID
    assert f"the signature is for {other}, not for this image ({digest})" in signed.reason


async def test_a_cosign_oci_1_1_signature_referrer_is_found_through_the_referrers_tag(
    source: Registry, verifier: SignatureVerifier, signer: Signer
) -> None:
    repo, digest = new_image(source)
    payload = simple_signing_payload(digest)
    referrer = signature_manifest([(payload, signer.sign(payload))], subject=subject(digest))
    push_referrers_tag(source, repo, digest, [referrer])
    signed = await verifier.check(ref(source, repo), (0,), WHO, None)
    assert signed.state is SignatureState.VERIFIED, signed.reason


async def test_a_sigstore_bundle_referrer_verifies_and_one_by_another_key_does_not(
    source: Registry, verifier: SignatureVerifier, signer: Signer, stranger: Signer
) -> None:
    good_repo, good = new_image(source)
    bundle = bundle_referrer(dsse_bundle(signer, statement(good)), subject(good))
    push_referrers_tag(source, good_repo, good, [bundle])
    assert (await verifier.check(ref(source, good_repo), (0,), WHO, None)).verified

    bad_repo, bad = new_image(source)
    other = bundle_referrer(dsse_bundle(stranger, statement(bad)), subject(bad))
    push_referrers_tag(source, bad_repo, bad, [other])
    signed = await verifier.check(ref(source, bad_repo), (0,), WHO, None)
    assert signed.state is SignatureState.INVALID
    assert "signed by none of the keys" in signed.reason


async def test_an_attestation_bundle_alone_does_not_sign_the_image_and_is_not_even_fetched(
    source: Registry, verifier: SignatureVerifier, signer: Signer
) -> None:
    repo, digest = new_image(source)
    attestation = bundle_referrer(
        dsse_bundle(signer, statement(digest, "https://spdx.dev/Document")),
        subject(digest),
        predicate_type="https://spdx.dev/Document",
    )
    push_referrers_tag(source, repo, digest, [attestation])
    before = requests(source, "GET", f"/v2/{repo}/manifests/{attestation.digest}")
    signed = await verifier.check(ref(source, repo), (0,), WHO, None)
    assert signed.state is SignatureState.UNSIGNED
    assert requests(source, "GET", f"/v2/{repo}/manifests/{attestation.digest}") == before


async def test_a_referrers_tag_that_is_not_an_index_is_an_invalid_answer_not_a_crash(
    source: Registry, verifier: SignatureVerifier
) -> None:
    repo, digest = new_image(source)
    junk = make_image([make_layer(f"junk-{digest}", 64)])
    push_image(source, repo, junk, digest.replace(":", "-"))
    signed = await verifier.check(ref(source, repo), (0,), WHO, None)
    assert signed.state is SignatureState.INVALID
    assert "not an OCI index" in signed.reason


async def test_a_malformed_signature_layer_is_an_invalid_answer_not_a_crash(
    source: Registry, verifier: SignatureVerifier, signer: Signer
) -> None:
    repo, digest = new_image(source)
    artifact = signature_manifest([(b"not json at all", signer.sign(b"not json at all"))])
    push_artifact(source, repo, artifact, digest.replace(":", "-") + ".sig")
    signed = await verifier.check(ref(source, repo), (0,), WHO, None)
    assert signed.state is SignatureState.INVALID
    assert "not JSON" in signed.reason


async def test_an_answer_is_cached_per_digest_and_the_next_check_asks_the_registry_nothing(
    source: Registry, verifier: SignatureVerifier, signer: Signer
) -> None:
    repo, digest = new_image(source)
    sign_tag_scheme(source, repo, digest, signer)
    first = await verifier.check(ref(source, repo), (0,), WHO, None)
    asked = requests(source, "GET", f"/v2/{repo}/") + requests(source, "HEAD", f"/v2/{repo}/")
    assert verifier.known(ref(source, repo), (0,)) == first
    by_digest = parse(f"{source.host}/{repo}@{digest}")
    assert verifier.known(by_digest, (0,)) == first
    again = await verifier.check(by_digest, (0,), WHO, None)
    assert again == first
    assert (
        requests(source, "GET", f"/v2/{repo}/") + requests(source, "HEAD", f"/v2/{repo}/") == asked
    )
    assert verifier.metrics.signature_verifications.labels("verified")._value.get() == 1


async def test_an_unreachable_source_is_an_error_answer_kept_briefly_never_an_exception(
    rules: VerifyRules,
) -> None:
    async with RegistryClient(
        hosts=plain_hosts("127.0.0.1:9"), retry=FAST_RETRY, timeout=2
    ) as client:
        verifier = SignatureVerifier(client, rules, metrics=Metrics())
        source = parse("127.0.0.1:9/signed/app:1.0")
        signed = await verifier.check(source, (0,), WHO, None)
        assert signed.state is SignatureState.ERROR
        assert signed.reason.startswith("could not read signatures")
        assert verifier.known(source, (0,)) == signed
        assert verifier.metrics.signature_verifications.labels("error")._value.get() == 1


# -- admission and the copier -------------------------------------------------------------------


def mutator(
    source: Registry, rules: VerifyRules, verifier: SignatureVerifier
) -> tuple[Mutator, MemoryCopyQueue]:
    target = MemoryTarget("mirror.local:5000")
    queue = MemoryCopyQueue(target)
    policy = Policy(
        endpoint="mirror.local:5000",
        swap=SwapPolicy.ALWAYS,
        copy=CopyPolicy.DELAYED,
        copy_deadline=5.0,
        pull_secret=None,
        filters=Filters(()),
        verify=rules,
    )
    return Mutator(policy, target, queue, signatures=verifier), queue


def pod(*images: str) -> dict[str, Any]:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return {"metadata": {"name": "p", "namespace": "team"}, "spec": {"containers": containers}}


async def test_admission_swaps_a_signed_image_copying_the_digest_that_verified_and_no_other(
    source: Registry,
    rules: VerifyRules,
    verifier: SignatureVerifier,
    signer: Signer,
    stranger: Signer,
) -> None:
    signed_repo, signed_digest = new_image(source)
    sign_tag_scheme(source, signed_repo, signed_digest, signer)
    unsigned_repo, _ = new_image(source)
    foreign_repo, foreign_digest = new_image(source)
    sign_tag_scheme(source, foreign_repo, foreign_digest, stranger)
    free = f"{source.host}/free/app:1.0"  # no rule applies
    m, queue = mutator(source, rules, verifier)
    images = [str(ref(source, r)) for r in (signed_repo, unsigned_repo, foreign_repo)] + [free]
    _, candidates = m.plan(pod(*images), "team")
    decisions = await m.resolve(candidates, WHO, side_effects=True)
    outcomes = [d.outcome for d in decisions]
    assert outcomes == [
        Outcome.SWAPPED,
        Outcome.UNVERIFIED_SIGNATURE,
        Outcome.UNVERIFIED_SIGNATURE,
        Outcome.SWAPPED,
    ]
    assert "no cosign signature" in decisions[1].detail
    assert "signed by none of the keys" in decisions[2].detail
    copied = {str(job.source.name): job for job in queue.jobs}
    assert set(copied) == {f"{source.host}/{signed_repo}", f"{source.host}/free/app"}
    assert copied[f"{source.host}/{signed_repo}"].source.digest == signed_digest
    assert copied[f"{source.host}/{signed_repo}"].source.tag == "1.0"
    assert copied[f"{source.host}/free/app"].source.digest is None

    # The next pod with the same images is decided from the cached answers, asking nothing.
    asked = requests(source, "GET", "/v2/") + requests(source, "HEAD", "/v2/")
    _, candidates = m.plan(pod(*images), "team")
    again = await m.resolve(candidates, WHO, side_effects=True)
    assert [(d.outcome, d.detail) for d in again] == [(d.outcome, d.detail) for d in decisions]
    assert requests(source, "GET", "/v2/") + requests(source, "HEAD", "/v2/") == asked
    signed_target = decisions[0].target
    assert [t for t, _ in queue.submitted].count(signed_target) == 2  # handed over again
    signed_jobs = [j for j in queue.jobs if j.target == signed_target]
    assert signed_jobs and {j.source.digest for j in signed_jobs} == {signed_digest}


async def test_admission_without_a_signature_checker_swaps_nothing_a_rule_applies_to(
    source: Registry, rules: VerifyRules
) -> None:
    target = MemoryTarget("mirror.local:5000")
    queue = MemoryCopyQueue(target)
    policy = Policy(
        "mirror.local:5000", SwapPolicy.ALWAYS, CopyPolicy.DELAYED, 5.0, None, verify=rules
    )
    m = Mutator(policy, target, queue)
    _, candidates = m.plan(pod(f"{source.host}/signed/x:1"), "team")
    (decision,) = await m.resolve(candidates, WHO, side_effects=True)
    assert decision.outcome is Outcome.UNVERIFIED_SIGNATURE
    assert queue.jobs == []


async def test_the_copier_refuses_an_unverified_source_and_copies_a_verified_one_by_digest(
    tmp_path: Path,
    source: Registry,
    rules: VerifyRules,
    client: RegistryClient,
    verifier: SignatureVerifier,
    signer: Signer,
) -> None:
    mirror = start_registry(tmp_path / "mirror")
    try:
        async with RegistryClient(
            hosts=plain_hosts(source, mirror), retry=FAST_RETRY
        ) as copy_client:
            target = MemoryTarget(mirror.host)
            copier = EngineCopier(CopyEngine(copy_client), target, signatures=verifier, rules=rules)
            unsigned_repo, _ = new_image(source)
            job = CopyJob(
                ref(source, unsigned_repo), f"{mirror.host}/{unsigned_repo}:1.0", unsigned_repo
            )
            with pytest.raises(CopyError) as refused:
                await copier(job)
            assert refused.value.reason is CopyReason.UNVERIFIED_SIGNATURE
            with mirror.client() as http:
                assert http.get(f"/v2/{unsigned_repo}/tags/list").status_code == 404

            signed_repo, digest = new_image(source)
            sign_tag_scheme(source, signed_repo, digest, signer)
            job = CopyJob(ref(source, signed_repo), f"{mirror.host}/{signed_repo}:1.0", signed_repo)
            result = await copier(job)
            assert result is not None and result.digest == digest
    finally:
        mirror.stop()


async def test_a_check_past_its_deadline_answers_error_and_its_result_serves_the_next_pod(
    source: Registry, rules: VerifyRules, signer: Signer
) -> None:
    repo, digest = new_image(source)
    sign_tag_scheme(source, repo, digest, signer)
    proxy = await FaultProxy(source.host).start()
    try:
        proxy.add(Fault("delay", f"/v2/{repo}/manifests/sha256-", seconds=1.0))
        async with RegistryClient(hosts=plain_hosts(proxy), retry=FAST_RETRY) as client:
            verifier = SignatureVerifier(client, rules, metrics=Metrics())
            slow = parse(f"{proxy.host}/{repo}:1.0")
            # The rule names the source's host, not the proxy's: ask for rule 0 directly.
            loop = asyncio.get_running_loop()
            started = loop.time()
            first = await verifier.check(slow, (0,), WHO, loop.time() + 0.2)
            assert loop.time() - started < 0.8
            assert first.state is SignatureState.ERROR
            assert "did not finish in time" in first.reason
            for _ in range(50):  # the check goes on in the background
                if verifier.known(slow, (0,)) is not None:
                    break
                await asyncio.sleep(0.05)
            later = verifier.known(slow, (0,))
            assert later is not None and later.verified, later
    finally:
        await proxy.aclose()


async def test_in_audit_mode_the_check_still_decides_and_nothing_is_copied(
    source: Registry, rules: VerifyRules, verifier: SignatureVerifier, signer: Signer
) -> None:
    signed_repo, signed_digest = new_image(source)
    sign_tag_scheme(source, signed_repo, signed_digest, signer)
    unsigned_repo, _ = new_image(source)
    m, queue = mutator(source, rules, verifier)
    _, candidates = m.plan(pod(str(ref(source, signed_repo)), str(ref(source, unsigned_repo))), "t")
    decisions = await m.resolve(candidates, WHO, side_effects=False)
    assert [(d.outcome, d.copy) for d in decisions] == [
        (Outcome.SWAPPED, CopyState.WOULD_COPY),
        (Outcome.UNVERIFIED_SIGNATURE, CopyState.NONE),
    ]
    assert queue.jobs == []


async def test_a_source_that_cannot_be_asked_leaves_the_container_unswapped_and_the_pod_allowed(
    rules: VerifyRules,
) -> None:
    async with RegistryClient(
        hosts=plain_hosts("127.0.0.1:9"), retry=FAST_RETRY, timeout=2
    ) as client:
        config = load_config(
            {
                "target": {"type": "generic", "generic": {"registry": "mirror.local:5000"}},
                "mirror": {
                    "verify": [{"keys": list(rules.rules[0].keys), "images": ["127.0.0.1:9/"]}]
                },
            }
        )
        nowhere = VerifyRules(config.mirror.verify)  # nothing listens on port 9
        verifier = SignatureVerifier(client, nowhere, metrics=Metrics())
        target = MemoryTarget("mirror.local:5000")
        queue = MemoryCopyQueue(target)
        policy = Policy(
            "mirror.local:5000", SwapPolicy.ALWAYS, CopyPolicy.DELAYED, 5.0, None, verify=nowhere
        )
        m = Mutator(policy, target, queue, signatures=verifier)
        image = "127.0.0.1:9/signed/app:1"
        _, candidates = m.plan(pod(image), "team")
        (decision,) = await m.resolve(candidates, WHO, side_effects=True)
    assert decision.outcome is Outcome.UNVERIFIED_SIGNATURE
    assert decision.detail.startswith(f"the signature of {parse(image)} could not be checked")
    assert queue.jobs == []
