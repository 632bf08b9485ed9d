"""The pure parts of signature verification: keys, cosign's payloads and bundles, the rules."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from signing import (
    Signer,
    dsse_bundle,
    message_bundle,
    sha256,
    simple_signing_payload,
    statement,
)

from swapper.config import load_config
from swapper.cosign import (
    INTOTO,
    PublicKey,
    check_bundle,
    check_simple_signing,
    key_from_pem,
    load_public_key,
)
from swapper.errors import ConfigError, SignatureError
from swapper.images import parse
from swapper.mirror.trust import VerifyRules

DIGEST = sha256(b"the image manifest")
OTHER_DIGEST = sha256(b"another image manifest")


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.new()


@pytest.fixture(scope="module")
def stranger() -> Signer:
    return Signer.new()


def public(signer: Signer, name: str = "cosign.pub") -> PublicKey:
    return key_from_pem(signer.public_pem(), name)


# -- keys ---------------------------------------------------------------------------------------


def test_an_ecdsa_p256_public_key_file_is_loaded_under_its_path(
    tmp_path: Path, signer: Signer
) -> None:
    path = signer.write_public(tmp_path / "cosign.pub")
    key = load_public_key(path)
    assert key.name == path
    assert key.key.public_numbers() == signer.private.public_key().public_numbers()


def test_a_private_key_is_refused_and_the_message_says_to_give_the_public_one(
    signer: Signer,
) -> None:
    pem = signer.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(SignatureError, match=r"k\.pem holds a private key; give the public key"):
        key_from_pem(pem, "k.pem")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (lambda: rsa.generate_private_key(65537, 2048), r"not an ECDSA key \(RSA\)"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), r"not an ECDSA key \(Ed25519\)"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), r"on secp384r1; cosign keys are ECDSA"),
    ],
)
def test_a_public_key_of_another_kind_than_ecdsa_p256_is_refused_naming_what_it_is(
    key: object, message: str
) -> None:
    pem = (
        key()
        .public_key()
        .public_bytes(  # type: ignore[operator]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(SignatureError, match=message):
        key_from_pem(pem, "other.pub")


def test_a_certificate_is_refused_as_not_a_public_key(signer: Signer) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signer.private.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(signer.private, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(SignatureError, match="holds a certificate, not a public key"):
        key_from_pem(pem, "cert.pem")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello", "is not a PEM file"),
        (
            b"-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n",
            "not a PEM public key",
        ),
        (b"", "is not a PEM file"),
    ],
)
def test_a_file_that_holds_no_key_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        key_from_pem(data, "junk.pub")


def test_a_missing_key_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match=r"cannot read .*absent\.pub"):
        load_public_key(str(tmp_path / "absent.pub"))


# -- the tag scheme's simple signing ------------------------------------------------------------


def test_a_simple_signing_signature_verifies_with_the_key_that_made_it(
    signer: Signer, stranger: Signer
) -> None:
    payload = simple_signing_payload(DIGEST)
    signature = base64.b64encode(signer.sign(payload)).decode()
    keys = [public(stranger, "other.pub"), public(signer)]
    assert check_simple_signing(payload, signature, DIGEST, keys) == {1}


def test_a_simple_signing_signature_made_by_another_key_verifies_with_none(
    signer: Signer, stranger: Signer
) -> None:
    payload = simple_signing_payload(DIGEST)
    signature = base64.b64encode(stranger.sign(payload)).decode()
    assert check_simple_signing(payload, signature, DIGEST, [public(signer)]) == frozenset()


def test_a_valid_signature_over_another_digest_is_an_error_naming_both_digests(
    signer: Signer,
) -> None:
    payload = simple_signing_payload(OTHER_DIGEST)
    signature = base64.b64encode(signer.sign(payload)).decode()
    with pytest.raises(SignatureError, match=f"is for {OTHER_DIGEST}, not for this image"):
        check_simple_signing(payload, signature, DIGEST, [public(signer)])


def test_a_payload_altered_after_signing_no_longer_verifies(signer: Signer) -> None:
    payload = simple_signing_payload(OTHER_DIGEST)
    signature = base64.b64encode(signer.sign(payload)).decode()
    altered = payload.replace(OTHER_DIGEST.encode(), DIGEST.encode())
    assert check_simple_signing(altered, signature, DIGEST, [public(signer)]) == frozenset()


@pytest.mark.parametrize(
    ("payload", "signature", "message"),
    [
        (b"not json", "c2ln", "not JSON"),
        (b"[]", "c2ln", "not a JSON object"),
        (b"{}", "c2ln", "no 'critical' object"),
        (
            json.dumps({"critical": {"type": "cosign container image signature"}}).encode(),
            "c2ln",
            "no critical.image.docker-manifest-digest",
        ),
        (
            json.dumps({"critical": {"type": "something else"}}).encode(),
            "c2ln",
            "critical.type is 'something else'",
        ),
        (b"{}", "not base64!", "not valid base64"),
        (b"{}", None, "annotation is missing"),
    ],
)
def test_a_malformed_simple_signing_layer_is_an_error_not_a_crash(
    signer: Signer, payload: bytes, signature: object, message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        check_simple_signing(payload, signature, DIGEST, [public(signer)])


# -- sigstore bundles ---------------------------------------------------------------------------


def test_a_dsse_bundle_of_cosigns_sign_statement_verifies_with_the_key_that_made_it(
    signer: Signer, stranger: Signer
) -> None:
    bundle = dsse_bundle(signer, statement(DIGEST))
    assert check_bundle(bundle, DIGEST, [public(stranger, "o.pub"), public(signer)]) == {1}


def test_a_dsse_bundle_made_by_another_key_verifies_with_none(
    signer: Signer, stranger: Signer
) -> None:
    bundle = dsse_bundle(stranger, statement(DIGEST))
    assert check_bundle(bundle, DIGEST, [public(signer)]) == frozenset()


def test_a_dsse_bundle_over_another_digest_is_an_error(signer: Signer) -> None:
    bundle = dsse_bundle(signer, statement(OTHER_DIGEST))
    with pytest.raises(SignatureError, match=f"is for {OTHER_DIGEST}, not for this image"):
        check_bundle(bundle, DIGEST, [public(signer)])


def test_an_attestation_bundle_is_not_taken_for_a_signature_of_the_image(signer: Signer) -> None:
    bundle = dsse_bundle(signer, statement(DIGEST, "https://spdx.dev/Document"))
    with pytest.raises(SignatureError, match="is an attestation"):
        check_bundle(bundle, DIGEST, [public(signer)])


def test_a_message_signature_bundle_over_the_image_manifest_verifies(
    signer: Signer, stranger: Signer
) -> None:
    assert check_bundle(message_bundle(signer, DIGEST), DIGEST, [public(signer)]) == {0}
    assert check_bundle(message_bundle(stranger, DIGEST), DIGEST, [public(signer)]) == set()
    with pytest.raises(SignatureError, match="not for this image"):
        check_bundle(message_bundle(signer, OTHER_DIGEST), DIGEST, [public(signer)])


def _bundle(**changes: object) -> bytes:
    document = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "dsseEnvelope": {
            "payload": base64.b64encode(statement(DIGEST)).decode(),
            "payloadType": INTOTO,
            "signatures": [{"sig": "c2ln"}],
        },
    }
    document.update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        (b"{", "not JSON"),
        (_bundle(mediaType="application/json"), "mediaType is 'application/json'"),
        (_bundle(dsseEnvelope=None), "neither a dsseEnvelope nor a messageSignature"),
        (_bundle(dsseEnvelope={"payload": "!!", "payloadType": INTOTO}), "not valid base64"),
        (
            _bundle(dsseEnvelope={"payload": "e30=", "payloadType": "text/plain"}),
            "payloadType is 'text/plain'",
        ),
        (
            _bundle(dsseEnvelope={"payload": "e30=", "payloadType": INTOTO, "signatures": []}),
            "has no signatures",
        ),
        (
            _bundle(
                dsseEnvelope={
                    "payload": "e30=",
                    "payloadType": INTOTO,
                    "signatures": [{"sig": "c2ln"}],
                }
            ),
            "not an in-toto statement",
        ),
        (_bundle(messageSignature={"signature": "c2ln"}, dsseEnvelope=None), "no messageDigest"),
        (b"x" * (300 * 1024), "larger than 256 KiB"),
    ],
)
def test_a_malformed_bundle_is_an_error_not_a_crash(
    signer: Signer, bundle: bytes, message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        check_bundle(bundle, DIGEST, [public(signer)])


# -- the config ---------------------------------------------------------------------------------


def _config(rule: dict[str, object]) -> dict[str, object]:
    return {
        "target": {"type": "generic", "generic": {"registry": "mirror.local:5000"}},
        "mirror": {"verify": [rule]},
    }


def _problems(rule: dict[str, object]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load_config(_config(rule))
    return caught.value.problems


def test_a_rule_with_an_ecdsa_key_file_and_prefixes_loads_its_keys(
    tmp_path: Path, signer: Signer
) -> None:
    path = signer.write_public(tmp_path / "cosign.pub")
    config = load_config(_config({"keys": [path], "images": ["ghcr.io/acme/"]}))
    (rule,) = config.mirror.verify
    assert [k.name for k in rule.public_keys] == [path]


@pytest.mark.parametrize("key", ["keyless", "certificateIdentity", "rekorUrl", "fulcioUrl"])
def test_keyless_verification_is_refused_saying_it_needs_the_network(
    tmp_path: Path, signer: Signer, key: str
) -> None:
    path = signer.write_public(tmp_path / "cosign.pub")
    ((where, message),) = _problems({"keys": [path], "images": ["ghcr.io/"], key: "x"})
    assert where == "mirror.verify[0]"
    assert message.startswith(f"{key}: keyless (Fulcio/Rekor) verification is not supported")
    assert "needs the network" in message


def test_a_key_file_that_is_not_a_public_key_refuses_to_start_naming_the_file(
    tmp_path: Path, signer: Signer
) -> None:
    good = signer.write_public(tmp_path / "cosign.pub")
    bad = tmp_path / "cosign.key"
    bad.write_bytes(
        signer.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ((where, message),) = _problems({"keys": [good, str(bad)], "images": ["ghcr.io/"]})
    assert where == "mirror.verify[0].keys"
    assert message.startswith(f"{bad} holds a private key")


def test_a_kms_key_reference_is_refused_asking_for_a_pem_file() -> None:
    ((where, message),) = _problems({"keys": ["awskms:///alias/x"], "images": ["ghcr.io/"]})
    assert where == "mirror.verify[0].keys"
    assert "is a KMS or remote key reference" in message


def test_a_rule_must_name_its_images_and_its_keys(tmp_path: Path, signer: Signer) -> None:
    path = signer.write_public(tmp_path / "cosign.pub")
    assert _problems({"keys": [path]}) == [
        (
            "mirror.verify[0]",
            "name the images the rule applies to: images (reference prefixes) or jmespath",
        )
    ]
    assert _problems({"keys": [], "images": ["ghcr.io/"]})[0][0] == "mirror.verify[0].keys"
    ((where, message),) = _problems({"keys": [path], "images": ["nginx"]})
    assert (where, message.split(":")[0]) == ("mirror.verify[0].images", "'nginx'")


# -- which images a rule applies to -------------------------------------------------------------


def test_rules_apply_by_prefix_on_path_boundaries_and_by_jmespath_over_the_image(
    tmp_path: Path, signer: Signer
) -> None:
    path = signer.write_public(tmp_path / "cosign.pub")
    config = load_config(
        {
            "target": {"type": "generic", "generic": {"registry": "mirror.local:5000"}},
            "mirror": {
                "verify": [
                    {"keys": [path], "images": ["ghcr.io/acme/api", "quay.io/team/"]},
                    {"keys": [path], "jmespath": "registry == 'docker.io' && tag == 'signed'"},
                ]
            },
        }
    )
    rules = VerifyRules(config.mirror.verify)
    assert rules.matching(parse("ghcr.io/acme/api:1.4")) == (0,)
    assert rules.matching(parse("ghcr.io/acme/api/sub@" + DIGEST)) == (0,)
    assert rules.matching(parse("ghcr.io/acme/api-evil:1")) == ()
    assert rules.matching(parse("quay.io/team/x/y:2")) == (0,)
    assert rules.matching(parse("nginx:signed")) == (1,)
    assert rules.matching(parse("nginx:1.27")) == ()
    assert rules.describe((0, 1)) == "mirror.verify[0], [1]"


def test_explain_says_which_swaps_need_a_signature_it_did_not_check(
    tmp_path: Path, signer: Signer
) -> None:
    from helpers import run_swapper

    key = signer.write_public(tmp_path / "cosign.pub")
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "target": {"type": "generic", "generic": {"registry": "mirror.example.com"}},
                "imageSwapPolicy": "always",
                "source": {"checkAccess": False},
                "mirror": {"verify": [{"keys": [key], "images": ["ghcr.io/acme/"]}]},
            }
        )
    )
    result = run_swapper("explain", "--config", str(config), "ghcr.io/acme/api:1.4", "nginx:1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "containers[c0]: would swap ghcr.io/acme/api:1.4 -> "
        "mirror.example.com/ghcr.io/acme/api:1.4 (only if signed: mirror.verify[0], not checked "
        "here)",
        "containers[c1]: would swap nginx:1 -> mirror.example.com/docker.io/library/nginx:1",
        "note: mirror.verify: signatures were not checked; swapper serve copies and swaps an "
        "image a rule applies to only when a signature verifies with one of the rule's keys "
        "(otherwise: unverified-signature)",
    ]
