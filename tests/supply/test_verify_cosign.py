"""``mirror.verify`` against signatures made by the real cosign (v2.x, built by
:mod:`supply.tools`): keys from ``cosign generate-key-pair``, ``cosign sign --key
--tlog-upload=false`` (offline) of multi-arch images, in each form cosign 2.x writes:

- the tag scheme (``sha256-<hex>.sig``), on Debian's ``docker-registry``;
- the sigstore bundle (``--new-bundle-format``): on go-containerregistry's registry through the
  OCI 1.1 referrers API, and on ``docker-registry`` through the referrers tag fallback;
- the signature as an OCI 1.1 referrer (``--registry-referrers-mode=oci-1-1``).

Then the whole path: ``swapper serve`` (``immediate`` copies, swap policy ``exists``) swaps and
mirrors the signed images and neither swaps nor copies an unsigned one or one signed by another
key, and ``swapper mirror --config`` refuses the unsigned one in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from helpers import make_pod, post_review, review_body
from registries import (
    FAST_RETRY,
    OCI_MANIFEST,
    Registry,
    multi_arch,
    plain_hosts,
    push_blob,
    push_manifest,
    sha256,
    start_registry,
)
from supply.tools import RunningRegistry
from webhook_process import start_webhook, stop

from swapper.config import load_config
from swapper.images import parse
from swapper.metrics import Metrics
from swapper.mirror.signatures import SignatureVerifier
from swapper.mirror.trust import SignatureState, VerifyRules
from swapper.oci import RegistryClient

PASSWORD = "cosign-test-password"  # the generated test keys' own


@dataclass(frozen=True)
class Keys:
    ours: Path  # cosign.key; its cosign.pub beside it
    theirs: Path


@dataclass(frozen=True)
class Signed:
    """The images of one source registry: each name -> its digest."""

    host: str
    digests: dict[str, str]

    def ref(self, name: str) -> str:
        return f"{self.host}/signed/{name}:1.0"


def cosign(binary: Path, home: Path, *args: str) -> None:
    env = {
        **os.environ,
        "COSIGN_PASSWORD": PASSWORD,
        "COSIGN_EXPERIMENTAL": "1",  # --registry-referrers-mode=oci-1-1 asks for it
        "HOME": str(home),  # cosign's own cache and config: not the user's
    }
    done = subprocess.run(
        [str(binary), *args],
        cwd=home,  # generate-key-pair writes cosign.key and cosign.pub here
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"cosign {' '.join(args[:2])}: {done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def keys(cosign_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Keys:
    made = {}
    for name in ("ours", "theirs"):
        folder = tmp_path_factory.mktemp(f"keys-{name}")
        cosign(cosign_bin, folder, "generate-key-pair")
        made[name] = folder / "cosign.key"
    return Keys(made["ours"], made["theirs"])


@pytest.fixture(scope="module")
def debian(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = start_registry(tmp_path_factory.mktemp("debian-source"), access_log=True)
    yield registry
    registry.stop()


def _push(url: str, repo: str, name: str) -> str:
    index = multi_arch(f"cosign-{url}-{repo}", layers=1, layer_size=256)
    with httpx.Client(base_url=url, timeout=30) as client:
        for image in index.images:
            for blob in image.blobs:
                push_blob(client, repo, blob)
            push_manifest(client, repo, image.digest, image.data, image.media_type)
        return push_manifest(client, repo, "1.0", index.data, index.media_type)


def _sign(binary: Path, home: Path, key: Path, reference: str, *form: str) -> None:
    cosign(
        binary,
        home,
        "sign",
        "--key",
        str(key),
        "--tlog-upload=false",
        "--yes",
        "--allow-http-registry",
        *form,
        reference,
    )


MIRROR = (sys.executable, "-m", "swapper", "mirror")
BUNDLE = ("--new-bundle-format",)
OCI_1_1 = ("--registry-referrers-mode=oci-1-1",)


@pytest.fixture(scope="module")
def on_debian(
    debian: Registry, keys: Keys, cosign_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Signed:
    """docker-registry (no referrers API): the tag scheme, and bundles through the tag fallback."""
    home = tmp_path_factory.mktemp("cosign-home")
    plan = {
        "tag-ours": (keys.ours, ()),
        "tag-theirs": (keys.theirs, ()),
        "bundle-ours": (keys.ours, BUNDLE),
        "unsigned": (None, ()),
    }
    digests = {}
    for name, (key, form) in plan.items():
        digest = _push(debian.url, f"signed/{name}", name)
        digests[name] = digest
        if key is not None:
            _sign(cosign_bin, home, key, f"{debian.host}/signed/{name}@{digest}", *form)
    return Signed(debian.host, digests)


@pytest.fixture(scope="module")
def on_referrers(
    referrers_registry: RunningRegistry,
    keys: Keys,
    cosign_bin: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Signed:
    """go-containerregistry's registry (the referrers API): bundles and oci-1-1 signatures."""
    home = tmp_path_factory.mktemp("cosign-home")
    plan = {
        "bundle-ours": (keys.ours, BUNDLE),
        "bundle-theirs": (keys.theirs, BUNDLE),
        "oci11-ours": (keys.ours, OCI_1_1),
        "unsigned": (None, ()),
    }
    digests = {}
    for name, (key, form) in plan.items():
        repo = f"signed/{name}-{os.getpid()}"  # the registry lives for the whole session
        digests[name] = _push(referrers_registry.url, repo, name)
        if key is not None:
            _sign(cosign_bin, home, key, f"{referrers_registry.host}/{repo}@{digests[name]}", *form)
    return Signed(referrers_registry.host, {f"{n}-{os.getpid()}": d for n, d in digests.items()})


def _config(tmp: Path, keys: Keys, mirror: str, *sources: str) -> Path:
    document = {
        "target": {"type": "generic", "generic": {"registry": mirror, "insecure": True}},
        "imageSwapPolicy": "exists",
        "imageCopyPolicy": "immediate",
        "source": {"checkAccess": False, "podPullSecrets": False},
        "controller": {"enabled": False},
        "mirror": {
            "hosts": {host: {"insecure": True} for host in sources},
            "verify": [
                {
                    "keys": [str(keys.ours.with_name("cosign.pub"))],
                    "images": [f"{host}/signed/" for host in sources],
                }
            ],
        },
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
async def checker(
    keys: Keys, debian: Registry, referrers_registry: RunningRegistry
) -> AsyncIterator[SignatureVerifier]:
    config = load_config(
        {
            "target": {"type": "generic", "generic": {"registry": "mirror.local:5000"}},
            "mirror": {
                "verify": [
                    {
                        "keys": [str(keys.ours.with_name("cosign.pub"))],
                        "images": [f"{debian.host}/signed/", f"{referrers_registry.host}/signed/"],
                    }
                ]
            },
        }
    )
    async with RegistryClient(
        hosts=plain_hosts(debian, referrers_registry.host), retry=FAST_RETRY
    ) as client:
        yield SignatureVerifier(client, VerifyRules(config.mirror.verify), metrics=Metrics())


@pytest.mark.parametrize(
    ("where", "name", "state"),
    [
        ("debian", "tag-ours", SignatureState.VERIFIED),
        ("debian", "bundle-ours", SignatureState.VERIFIED),
        ("debian", "tag-theirs", SignatureState.INVALID),
        ("debian", "unsigned", SignatureState.UNSIGNED),
        ("referrers", "bundle-ours", SignatureState.VERIFIED),
        ("referrers", "oci11-ours", SignatureState.VERIFIED),
        ("referrers", "bundle-theirs", SignatureState.INVALID),
        ("referrers", "unsigned", SignatureState.UNSIGNED),
    ],
)
async def test_cosign_signatures_verify_with_the_signing_key_only(
    request: pytest.FixtureRequest,
    checker: SignatureVerifier,
    where: str,
    name: str,
    state: SignatureState,
) -> None:
    signed: Signed = request.getfixturevalue(f"on_{where}")
    if where == "referrers":
        name = f"{name}-{os.getpid()}"
    answer = await checker.check(parse(signed.ref(name)), (0,), None, None)
    assert answer.state is state, answer.reason
    assert answer.digest == signed.digests[name]


def test_served_admission_swaps_and_mirrors_only_images_signed_by_the_key(
    tmp_path: Path, keys: Keys, on_debian: Signed, on_referrers: Signed
) -> None:
    mirror = start_registry(tmp_path / "mirror")
    config = _config(tmp_path, keys, mirror.host, on_debian.host, on_referrers.host)
    hook = start_webhook(tmp_path, config)
    pid = os.getpid()
    images = {
        "tag": on_debian.ref("tag-ours"),
        "bundle-api": on_referrers.ref(f"bundle-ours-{pid}"),
        "bundle-tag": on_debian.ref("bundle-ours"),
        "unsigned": on_debian.ref("unsigned"),
        "theirs": on_referrers.ref(f"bundle-theirs-{pid}"),
    }
    try:
        response = post_review(hook, review_body(make_pod(*images.values()), "team"))
        swapped = {op["value"] for op in response.get("patch", []) if op["path"].endswith("/image")}
        assert swapped == {
            f"{mirror.host}/{parse(images[n]).mirror_path()}:1.0"
            for n in ("tag", "bundle-api", "bundle-tag")
        }
        warnings = "\n".join(response.get("warnings", []))
        unsigned, theirs = parse(images["unsigned"]), parse(images["theirs"])
        assert f"{unsigned} is not signed by a key of mirror.verify[0]: no cosign signature" in (
            warnings
        )
        assert f"{theirs} is not signed by a key of mirror.verify[0]" in warnings
        assert "signed by none of the keys" in warnings
        with mirror.client() as client:
            for name, image in images.items():
                listed = client.get(f"/v2/{parse(image).mirror_path()}/tags/list")
                assert (listed.status_code == 200) is (name in ("tag", "bundle-api", "bundle-tag"))
            metrics = hook.client().get("/metrics").text
        assert 'swapper_signature_verifications_total{result="verified"} 3.0' in metrics
        assert 'swapper_signature_verifications_total{result="unsigned"} 1.0' in metrics
        assert 'swapper_signature_verifications_total{result="invalid"} 1.0' in metrics
        assert (
            'swapper_container_decisions_total{decision="unverified-signature",dry_run="false"} 2.0'
            in metrics
        )
    finally:
        stop(hook)
        mirror.stop()


def test_swapper_mirror_with_the_config_refuses_an_unsigned_image_in_one_line(
    tmp_path: Path, keys: Keys, on_debian: Signed
) -> None:
    mirror = start_registry(tmp_path / "mirror")
    config = _config(tmp_path, keys, mirror.host, on_debian.host)
    try:
        refused = subprocess.run(
            [*MIRROR, "--config", str(config), on_debian.ref("unsigned")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert refused.returncode == 1
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert lines[0].startswith("swapper: copy failed (unverified-signature): not copied: ")
        assert "no cosign signature" in lines[0]
        copied = subprocess.run(
            [*MIRROR, "--config", str(config), on_debian.ref("tag-ours")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert copied.returncode == 0, copied.stderr
        assert f"digest {on_debian.digests['tag-ours']}" in copied.stdout
        with mirror.client() as client:
            listed = client.get(f"/v2/{parse(on_debian.ref('unsigned')).mirror_path()}/tags/list")
            assert listed.status_code == 404
    finally:
        mirror.stop()


def test_a_config_naming_cosigns_private_key_refuses_to_start_naming_the_file(
    tmp_path: Path, keys: Keys
) -> None:
    config = _config(tmp_path, keys, "mirror.local:5000", "source.local:5000")
    document = yaml.safe_load(config.read_text())
    document["mirror"]["verify"][0]["keys"] = [str(keys.ours)]  # cosign.key, not cosign.pub
    config.write_text(yaml.safe_dump(document))
    checked = subprocess.run(
        [sys.executable, "-m", "swapper", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode != 0
    assert f"mirror.verify[0].keys: {keys.ours} holds a private key" in checked.stderr
    secret_line = keys.ours.read_text().splitlines()[1]
    assert secret_line not in checked.stderr + checked.stdout


async def test_a_referrer_with_a_malformed_manifest_is_reported_and_a_good_one_still_counts(
    referrers_registry: RunningRegistry, checker: SignatureVerifier, keys: Keys, cosign_bin: Path
) -> None:
    # go-containerregistry's registry stores and lists what distribution would refuse.
    repo = f"signed/odd-{os.getpid()}"
    digest = _push(referrers_registry.url, repo, "odd")
    subject = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": 1}
    odd = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": "x",
            "layers": "y",
            "subject": subject,
        }
    ).encode()
    with httpx.Client(base_url=referrers_registry.url, timeout=30) as client:
        push_manifest(client, repo, sha256(odd), odd, OCI_MANIFEST)
    source = parse(f"{referrers_registry.host}/{repo}:1.0")
    answer = await checker.check(source, (0,), None, None)
    assert answer.state is SignatureState.INVALID
    assert f"manifest {sha256(odd)} has a malformed descriptor" in answer.reason

    home = keys.ours.parent
    _sign(cosign_bin, home, keys.ours, f"{referrers_registry.host}/{repo}@{digest}", *BUNDLE)
    fresh = SignatureVerifier(checker.client, checker.rules, metrics=Metrics())
    assert (await fresh.check(source, (0,), None, None)).verified
