"""Signatures, attestations and SBOMs made by the real cosign travel with a mirrored image, and
the real cosign verifies them against the mirror reference.

A two-platform image is signed with a generated key, offline (``--tlog-upload=false``), in every
form cosign 2.x writes:

- cosign's tag scheme: a signature on the index and, ``--recursive``, on each platform
  manifest (``sha256-<hex>.sig``), an SLSA provenance attestation (``.att``), an SBOM
  attached with ``cosign attach sbom`` (``.sbom``), and a signature on that SBOM (a referrer of
  a referrer);
- the OCI 1.1 form (``--new-bundle-format``): a Sigstore bundle signature and attestation
  pushed as referrers (found with the referrers API, or the referrers tag fallback cosign
  writes into a registry without it);
- an artifact attached with the real ``oras attach`` (an OCI 1.1 referrer of another tool).

Each is copied by ``swapper mirror`` and by a served admission (``immediate`` copy) from both
kinds of source (a registry with the referrers API, Debian's docker-registry without it) into
both kinds of mirror, then ``cosign verify --key``, ``cosign verify-attestation --key`` and
``oras discover`` are run against the mirror reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from helpers import make_pod, post_review, review_body, run_swapper
from registries import Index, Registry, multi_arch, push_blob, push_index, push_manifest
from supply.tools import RunningRegistry
from webhook_process import start_webhook, stop

from swapper.images import parse

ORAS_TYPE = "application/vnd.example.scan-report+json"
PASSWORD = "swapper-tests"  # the generated key's, given to cosign as COSIGN_PASSWORD


@dataclass
class Cosign:
    binary: Path
    oras: Path
    home: Path  # cosign's HOME and TUF_ROOT: nothing is written outside the test's folder

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "COSIGN_PASSWORD": PASSWORD,
            "HOME": str(self.home),
            "TUF_ROOT": str(self.home / "tuf"),
            "DOCKER_CONFIG": str(self.home / "docker"),
        }

    def _tool(
        self, binary: Path, name: str, args: tuple[str, ...], check: bool
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(binary), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.home,
            timeout=120,
            check=False,
        )
        if check:
            assert done.returncode == 0, f"{name} {' '.join(args)}:\n{done.stderr[-3000:]}"
        return done

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._tool(self.binary, "cosign", args, check)

    def oras_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._tool(self.oras, "oras", args, True)

    # What a user of the mirror runs: offline, plain HTTP on loopback. The bundle form is
    # key-based too, with an empty trusted root (no Fulcio, no Rekor).
    def _verify(
        self, command: str, reference: str, *extra: str, key: str = "cosign.pub"
    ) -> subprocess.CompletedProcess[str]:
        offline = ("--key", key, "--insecure-ignore-tlog=true", "--allow-http-registry")
        return self.run(command, *offline, *extra, reference, check=False)

    def verify(self, reference: str, key: str = "cosign.pub") -> subprocess.CompletedProcess[str]:
        return self._verify("verify", reference, key=key)

    def verify_attestation(self, reference: str) -> subprocess.CompletedProcess[str]:
        return self._verify("verify-attestation", reference, "--type", "slsaprovenance")

    def verify_bundle(self, reference: str) -> subprocess.CompletedProcess[str]:
        return self._verify("verify", reference, *_BUNDLE)

    def verify_bundle_attestation(self, reference: str) -> subprocess.CompletedProcess[str]:
        return self._verify("verify-attestation", reference, *_BUNDLE, "--type", "slsaprovenance")


_BUNDLE = ("--new-bundle-format", "--trusted-root", "trusted_root.json")


@dataclass
class Signed:
    """Two images in ``host/repo``: ``index`` at ``:1.0`` signed in cosign's tag scheme (and
    --recursive), attested, with an SBOM signed in turn and an ORAS artifact; ``bundled`` at
    ``:bundle`` signed and attested in the OCI 1.1 bundle form. (cosign 2.x verifies a bundle
    when it finds one, so each form has an image of its own.)"""

    host: str
    repo: str
    index: Index
    bundled: Index
    sbom_digest: str
    oras_digest: str

    @property
    def reference(self) -> str:
        return f"{self.host}/{self.repo}:1.0"

    @property
    def bundle_reference(self) -> str:
        return f"{self.host}/{self.repo}:bundle"


@pytest.fixture(scope="module")
def cosign(cosign_bin: Path, oras_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Cosign:
    home = tmp_path_factory.mktemp("cosign")
    tool = Cosign(cosign_bin, oras_bin, home)
    tool.run("generate-key-pair")
    # A second key pair, whose signatures must not verify against the first.
    (home / "other").mkdir()
    subprocess.run(
        [str(cosign_bin), "generate-key-pair"],
        cwd=home / "other",
        env=tool.env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    (home / "trusted_root.json").write_text(
        json.dumps({"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"})
    )
    (home / "provenance.json").write_text(
        json.dumps({"buildType": "https://example.org/swapper-tests", "builder": {"id": "tests"}})
    )
    (home / "sbom.spdx.json").write_text(
        json.dumps({"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "app"})
    )
    (home / "report.json").write_text(json.dumps({"findings": []}))
    return tool


OFFLINE = ("--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "--yes")


def sign_everything(cosign: Cosign, host: str, repo: str, index: Index, bundled: Index) -> Signed:
    ref = f"{host}/{repo}@{index.digest}"
    cosign.run("sign", *OFFLINE, "--recursive", ref)
    cosign.run(
        "attest", *OFFLINE, "--type", "slsaprovenance", "--predicate", "provenance.json", ref
    )
    cosign.run(
        "attach", "sbom", "--sbom", "sbom.spdx.json", "--type", "spdx", "--allow-http-registry", ref
    )
    sbom_tag = f"{index.digest.replace(':', '-')}.sbom"
    sbom_digest = httpx.head(
        f"http://{host}/v2/{repo}/manifests/{sbom_tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    ).headers["docker-content-digest"]
    cosign.run("sign", *OFFLINE, f"{host}/{repo}@{sbom_digest}")  # a signature on the SBOM
    attached = cosign.oras_run(
        "attach",
        "--plain-http",
        "--artifact-type",
        ORAS_TYPE,
        "--format",
        "json",
        ref,
        "report.json:application/json",
    )
    oras_digest = json.loads(attached.stdout)["digest"]
    bundle_ref = f"{host}/{repo}@{bundled.digest}"
    cosign.run("sign", *OFFLINE, "--new-bundle-format", bundle_ref)
    cosign.run(
        "attest",
        *OFFLINE,
        "--new-bundle-format",
        "--type",
        "slsaprovenance",
        "--predicate",
        "provenance.json",
        bundle_ref,
    )
    signed = Signed(host, repo, index, bundled, sbom_digest, oras_digest)
    assert_everything_verifies(cosign, signed, f"{host}/{repo}")  # at the source first
    return signed


def push_index_plain(host: str, repo: str, index: Index, tag: str) -> None:
    with httpx.Client(base_url=f"http://{host}", timeout=30) as client:
        for image in index.images:
            for blob in image.blobs:
                push_blob(client, repo, blob)
            push_manifest(client, repo, image.digest, image.data, image.media_type)
        push_manifest(client, repo, tag, index.data, index.media_type)


@pytest.fixture(scope="module")
def signed_with_api(cosign: Cosign, referrers_registry: RunningRegistry) -> Signed:
    """Signed in a registry with the referrers API."""
    index, bundled = multi_arch("cosign-api"), multi_arch("cosign-api-bundle")
    push_index_plain(referrers_registry.host, "signed/api", index, "1.0")
    push_index_plain(referrers_registry.host, "signed/api", bundled, "bundle")
    return sign_everything(cosign, referrers_registry.host, "signed/api", index, bundled)


@pytest.fixture(scope="module")
def signed_with_fallback(cosign: Cosign, plain_source: Registry) -> Signed:
    """Signed in Debian's docker-registry: the OCI 1.1 referrers sit in the tag fallback."""
    index, bundled = multi_arch("cosign-fallback"), multi_arch("cosign-fallback-bundle")
    push_index(plain_source, "signed/fallback", index, "1.0")
    push_index(plain_source, "signed/fallback", bundled, "bundle")
    return sign_everything(cosign, plain_source.host, "signed/fallback", index, bundled)


def mirror(source: str, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    source_host, target_host = source.split("/", 1)[0], target.split("/", 1)[0]
    done = run_swapper(
        "mirror", source, target, "--insecure", f"{source_host},{target_host}", *extra
    )
    assert done.returncode == 0, done.stderr
    return done


def assert_everything_verifies(cosign: Cosign, signed: Signed, repository: str) -> None:
    """Every kind of referrer ``signed`` has verifies, or is found, in ``repository``
    (``host/path``: the source, or the mirror), at its tags ``1.0`` and ``bundle``."""
    tagged, bundle = f"{repository}:1.0", f"{repository}:bundle"
    checks = {
        "signature (tag scheme)": cosign.verify(tagged),
        "attestation (tag scheme)": cosign.verify_attestation(tagged),
        "signature on the SBOM": cosign.verify(f"{repository}@{signed.sbom_digest}"),
        "signature (OCI 1.1 bundle)": cosign.verify_bundle(bundle),
        "attestation (OCI 1.1 bundle)": cosign.verify_bundle_attestation(bundle),
    }
    for platform in signed.index.images:  # signed --recursive
        checks[f"signature of {platform.platform}"] = cosign.verify(
            f"{repository}@{platform.digest}"
        )
    failed = {what: done.stderr[-800:] for what, done in checks.items() if done.returncode}
    assert not failed, failed
    sbom = cosign.run("download", "sbom", "--allow-http-registry", tagged)
    assert json.loads(sbom.stdout)["spdxVersion"] == "SPDX-2.3"
    # (Not filtered with --artifact-type: go-containerregistry's registry lists an artifact's
    # config media type as its artifactType, the empty config's for oras's artifacts.)
    discovered = cosign.oras_run("discover", "--plain-http", "--format", "json", tagged)
    found = [item["digest"] for item in json.loads(discovered.stdout)["referrers"]]
    assert signed.oras_digest in found


def mirror_both(signed: Signed, repository: str, *extra: str) -> str:
    """``swapper mirror`` of both images into ``repository``; the first run's output."""
    done = mirror(signed.reference, f"{repository}:1.0", *extra)
    mirror(signed.bundle_reference, f"{repository}:bundle", *extra)
    return done.stdout


@pytest.mark.parametrize("source_kind", ["api", "fallback"])
@pytest.mark.parametrize("target_kind", ["api", "fallback"])
def test_swapper_mirror_copies_every_signature_attestation_and_sbom_so_cosign_verifies_the_mirror(
    request: pytest.FixtureRequest,
    cosign: Cosign,
    referrers_target: RunningRegistry,
    plain_target: Registry,
    source_kind: str,
    target_kind: str,
) -> None:
    signed: Signed = request.getfixturevalue(
        "signed_with_api" if source_kind == "api" else "signed_with_fallback"
    )
    target_host = referrers_target.host if target_kind == "api" else plain_target.host
    repository = f"{target_host}/mirror/{source_kind}-to-{target_kind}/app"
    # Nothing is in the mirror yet: the checks below can fail.
    assert cosign.verify(f"{repository}:1.0").returncode != 0
    said = mirror_both(signed, repository)
    assert f"digest {signed.index.digest}" in said
    assert "referrers " in said and "referrer not copied" not in said
    assert_everything_verifies(cosign, signed, repository)


def test_a_signature_made_with_another_key_does_not_verify_against_the_mirror(
    cosign: Cosign, signed_with_api: Signed, plain_target: Registry
) -> None:
    mirrored = f"{plain_target.host}/mirror/other-key/app:1.0"
    mirror(signed_with_api.reference, mirrored)
    assert cosign.verify(mirrored).returncode == 0
    refused = cosign.verify(mirrored, key="other/cosign.pub")
    assert refused.returncode != 0
    assert "no matching signatures" in refused.stderr


def test_without_referrers_the_mirror_has_no_signature_to_verify(
    cosign: Cosign, signed_with_fallback: Signed, plain_target: Registry
) -> None:
    mirrored = f"{plain_target.host}/mirror/no-referrers/app:1.0"
    done = mirror(signed_with_fallback.reference, mirrored, "--no-referrers")
    assert "referrers " not in done.stdout
    assert cosign.verify(mirrored).returncode != 0


def test_platform_filtering_keeps_the_signatures_of_the_platform_it_keeps(
    cosign: Cosign, signed_with_api: Signed, plain_target: Registry
) -> None:
    repository = f"{plain_target.host}/mirror/arm64-only/app"
    mirror(signed_with_api.reference, f"{repository}:1.0", "--platform", "linux/arm64")
    amd64, arm64 = signed_with_api.index.images
    assert cosign.verify(f"{repository}@{arm64.digest}").returncode == 0
    # The left-out platform's manifest is not in the mirror, nor its signature.
    signature_tag = amd64.digest.replace(":", "-") + ".sig"
    answer = httpx.head(
        f"http://{repository.split('/', 1)[0]}/v2/mirror/arm64-only/app/manifests/{signature_tag}"
    )
    assert answer.status_code == 404


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, plain_source: Registry, plain_target: Registry
) -> Iterator[tuple[object, str]]:
    """``swapper serve`` with ``exists`` swaps and ``immediate`` copies into docker-registry."""
    tmp = tmp_path_factory.mktemp("served")
    config = tmp / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "imageSwapPolicy": "exists",
                "imageCopyPolicy": "immediate",
                "imageCopyDeadline": "20s",
                "admissionTimeout": "25s",
                "source": {"checkAccess": False},
                "target": {
                    "type": "generic",
                    "generic": {"registry": f"{plain_target.host}/served", "insecure": True},
                },
                "mirror": {"hosts": {plain_source.host: {"insecure": True}}},
            }
        )
    )
    hook = start_webhook(tmp, config)
    try:
        yield hook, f"{plain_target.host}/served"
    finally:
        stop(hook)


def test_an_immediate_copy_at_admission_brings_the_signatures_so_cosign_verifies_the_swap(
    cosign: Cosign, signed_with_fallback: Signed, served: tuple[object, str]
) -> None:
    hook, prefix = served
    pod = make_pod(signed_with_fallback.reference, signed_with_fallback.bundle_reference)
    started = time.monotonic()
    response = post_review(hook, review_body(pod), timeout=30)  # type: ignore[arg-type]
    took = time.monotonic() - started
    patched = [op["value"] for op in response.get("patch", []) if op["path"].endswith("/image")]
    repository = f"{prefix}/{parse(signed_with_fallback.reference).mirror_path()}"
    assert patched == [f"{repository}:1.0", f"{repository}:bundle"], (response, took)
    assert_everything_verifies(cosign, signed_with_fallback, repository)
    with hook.client() as client:  # type: ignore[attr-defined]
        metrics = client.get("/metrics").text
    copied = [
        line
        for line in metrics.splitlines()
        if line.startswith('swapper_referrers_copied_total{result="copied"}')
    ]
    assert copied and float(copied[0].split()[-1]) >= 8, metrics
