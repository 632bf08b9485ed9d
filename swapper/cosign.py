"""cosign signatures, checked offline against public keys (pure: no I/O but reading key files).

Which signatures, in the layouts cosign 2.x writes them (``cosign sign --key``):

- **The tag scheme** (cosign's default): a manifest tagged ``sha256-<hex>.sig`` in the image's
  repository. Each layer (media type :data:`SIMPLE_SIGNING`) is a *simple signing* payload,
  ``{"critical": {"identity": {...}, "image": {"docker-manifest-digest": "sha256:..."},
  "type": "cosign container image signature"}, "optional": {...}}``, and its annotation
  :data:`SIGNATURE_ANNOTATION` holds the base64 ECDSA signature (ASN.1 DER, SHA-256) over the
  layer's bytes.
- **The same signature as an OCI 1.1 referrer** (``--registry-referrers-mode=oci-1-1``): a
  manifest whose ``artifactType`` is :data:`SIG_ARTIFACT_TYPE`, with ``subject`` = the image and
  the same layers as above.
- **A sigstore bundle** (``--new-bundle-format``): a referrer whose ``artifactType`` (and only
  layer) is :data:`BUNDLE_V03`. The layer is the bundle JSON; its ``dsseEnvelope`` holds an
  in-toto statement (payload type :data:`INTOTO`) whose ``subject`` names the image digest and
  whose ``predicateType`` is :data:`SIGN_PREDICATE`, signed over DSSE's pre-authentication
  encoding; or a ``messageSignature`` over the image manifest itself (its ``messageDigest`` is
  then the image digest). A bundle with any other predicate is an attestation, not a
  signature of the image, and does not count.

What is checked: the ECDSA P-256 signature against each configured key, and that the signed
payload names exactly the image digest asked about. Not checked: transparency-log entries and
certificates (keyless signing needs Fulcio's roots and Rekor, so the network: the config
refuses it). Every problem with the input (not JSON, missing fields, bad base64, a signature
over another digest) raises :class:`~swapper.errors.SignatureError` with a one-line reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from swapper.errors import SignatureError

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIMPLE_SIGNING_TYPE = "cosign container image signature"
SIG_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
# The same bundle media type, as older sigstore clients spell it.
BUNDLE_TYPES = frozenset({BUNDLE_V03, "application/vnd.dev.sigstore.bundle+json;version=0.3"})
INTOTO = "application/vnd.in-toto+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
INTOTO_STATEMENTS = frozenset(
    {"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"}
)

MAX_KEY_BYTES = 64 * 1024  # a PEM public key is a few hundred bytes
MAX_PAYLOAD_BYTES = 256 * 1024  # a signature layer or a bundle (cosign's are about 1-5 KiB)


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A configured cosign public key: where it came from (for messages) and the key."""

    name: str  # the file path as configured
    key: ec.EllipticCurvePublicKey

    def __repr__(self) -> str:
        return f"PublicKey({self.name!r})"


def key_from_pem(data: bytes, name: str) -> PublicKey:
    """The ECDSA P-256 public key in PEM ``data`` (from ``name``); SignatureError otherwise,
    saying what the file holds instead."""
    if b"PRIVATE KEY" in data:
        raise SignatureError(
            f"{name} holds a private key; give the public key (cosign.pub), never the private one"
        )
    if b"-----BEGIN" not in data:
        raise SignatureError(f"{name} is not a PEM file (no -----BEGIN PUBLIC KEY----- block)")
    if b"CERTIFICATE" in data and b"PUBLIC KEY" not in data:
        raise SignatureError(
            f"{name} holds a certificate, not a public key (certificate-based, keyless "
            "verification is not supported)"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"{name} is not a PEM public key ({_one_line(str(exc))})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        kind = type(key).__name__.removeprefix("_").replace("PublicKey", "") or "another kind"
        raise SignatureError(f"{name} is not an ECDSA key ({kind}); cosign keys are ECDSA P-256")
    if not isinstance(key.curve, ec.SECP256R1):
        raise SignatureError(
            f"{name} is an ECDSA key on {key.curve.name}; cosign keys are ECDSA P-256 (secp256r1)"
        )
    return PublicKey(name, key)


def load_public_key(path: str) -> PublicKey:
    """Read and check the key file at ``path`` (see :func:`key_from_pem`)."""
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise SignatureError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_BYTES:
        raise SignatureError(f"{path} is larger than {MAX_KEY_BYTES // 1024} KiB: not a key")
    return key_from_pem(data, path)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _b64(text: object, what: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise SignatureError(f"{what} is missing or not a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{what} is not valid base64") from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_PAYLOAD_BYTES:
        raise SignatureError(f"{what} is larger than {MAX_PAYLOAD_BYTES // 1024} KiB")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise SignatureError(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise SignatureError(f"{what} is not a JSON object")
    return document


def _verifies(key: PublicKey, signature: bytes, data: bytes, *, prehashed: bool = False) -> bool:
    algorithm = ec.ECDSA(utils.Prehashed(hashes.SHA256()) if prehashed else hashes.SHA256())
    try:
        key.key.verify(signature, data, algorithm)
    except InvalidSignature:
        return False
    return True


def verifying_keys(
    keys: Sequence[PublicKey], signature: bytes, data: bytes, *, prehashed: bool = False
) -> frozenset[int]:
    """The indexes of the keys in ``keys`` that ``signature`` over ``data`` verifies with."""
    return frozenset(
        i for i, k in enumerate(keys) if _verifies(k, signature, data, prehashed=prehashed)
    )


def simple_signing_digest(payload: bytes) -> str:
    """The image digest a simple signing payload names (``critical.image.docker-manifest-
    digest``); SignatureError when the payload is not one."""
    document = _json_object(payload, "the simple signing payload")
    critical = document.get("critical")
    if not isinstance(critical, dict):
        raise SignatureError("the simple signing payload has no 'critical' object")
    kind = critical.get("type")
    if kind != SIMPLE_SIGNING_TYPE:
        raise SignatureError(f"the simple signing payload's critical.type is {kind!r}")
    image = critical.get("image")
    digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(digest, str) or not digest:
        raise SignatureError(
            "the simple signing payload has no critical.image.docker-manifest-digest"
        )
    return digest


def check_simple_signing(
    payload: bytes, signature_b64: object, digest: str, keys: Sequence[PublicKey]
) -> frozenset[int]:
    """The keys that verify one tag-scheme (or ``oci-1-1`` referrer) signature of ``digest``.

    Empty: signed by none of ``keys``. SignatureError: malformed, or a valid signature over
    another image (``critical.image.docker-manifest-digest`` is not ``digest``)."""
    signature = _b64(signature_b64, f"the {SIGNATURE_ANNOTATION} annotation")
    matched = verifying_keys(keys, signature, payload)
    named = simple_signing_digest(payload)
    if named != digest:
        raise SignatureError(f"the signature is for {named}, not for this image ({digest})")
    return matched


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature is over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _statement_names(payload: bytes, digest: str) -> None:
    """SignatureError unless ``payload`` is an in-toto statement of a cosign signature whose
    subject is ``digest``."""
    statement = _json_object(payload, "the bundle's in-toto statement")
    if statement.get("_type") not in INTOTO_STATEMENTS:
        raise SignatureError("the bundle's DSSE payload is not an in-toto statement")
    predicate = statement.get("predicateType")
    if predicate != SIGN_PREDICATE:
        raise SignatureError(
            f"the bundle is an attestation ({predicate!r}), not a signature of the image"
        )
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise SignatureError("the bundle's in-toto statement has no subject")
    algorithm, _, encoded = digest.partition(":")
    named: list[str] = []
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(digests, dict):
            raise SignatureError("a subject of the bundle's in-toto statement has no digest")
        value = digests.get(algorithm)
        if value == encoded:
            return
        named.extend(f"{a}:{v}" for a, v in digests.items())
    raise SignatureError(
        f"the signature is for {', '.join(named) or 'nothing'}, not for this image ({digest})"
    )


def check_bundle(bundle: bytes, digest: str, keys: Sequence[PublicKey]) -> frozenset[int]:
    """The keys that verify a sigstore bundle (v0.3) signing ``digest``: its DSSE envelope of a
    cosign-signature in-toto statement, or its message signature over the image manifest.

    Empty: signed by none of ``keys``. SignatureError: malformed, an attestation rather than a
    signature, or a signature over another image."""
    document = _json_object(bundle, "the sigstore bundle")
    media_type = document.get("mediaType")
    if media_type not in BUNDLE_TYPES:
        raise SignatureError(f"the sigstore bundle's mediaType is {media_type!r}, not {BUNDLE_V03}")
    envelope = document.get("dsseEnvelope")
    message = document.get("messageSignature")
    if isinstance(envelope, dict):
        payload = _b64(envelope.get("payload"), "the bundle's dsseEnvelope.payload")
        payload_type = envelope.get("payloadType")
        if payload_type != INTOTO:
            raise SignatureError(f"the bundle's DSSE payloadType is {payload_type!r}, not {INTOTO}")
        signatures = envelope.get("signatures")
        if not isinstance(signatures, list) or not signatures:
            raise SignatureError("the bundle's dsseEnvelope has no signatures")
        signed = pae(payload_type, payload)
        matched: set[int] = set()
        for entry in signatures[:8]:
            sig = _b64(entry.get("sig") if isinstance(entry, dict) else None, "a DSSE signature")
            matched |= verifying_keys(keys, sig, signed)
        _statement_names(payload, digest)
        return frozenset(matched)
    if isinstance(message, dict):
        algorithm, _, encoded = digest.partition(":")
        message_digest = message.get("messageDigest")
        if not isinstance(message_digest, dict):
            raise SignatureError("the bundle's messageSignature has no messageDigest")
        if algorithm != "sha256" or message_digest.get("algorithm") != "SHA2_256":
            raise SignatureError("the bundle's message signature is not over a SHA-256 digest")
        signed_digest = _b64(message_digest.get("digest"), "the bundle's messageDigest.digest")
        signature = _b64(message.get("signature"), "the bundle's messageSignature.signature")
        matched_keys = verifying_keys(keys, signature, signed_digest, prehashed=True)
        if signed_digest.hex() != encoded:
            raise SignatureError(
                f"the signature is for sha256:{signed_digest.hex()}, not for this image ({digest})"
            )
        return matched_keys
    raise SignatureError("the sigstore bundle has neither a dsseEnvelope nor a messageSignature")


def key_hint(key: PublicKey) -> str:
    """The ``verificationMaterial.publicKey.hint`` cosign writes for ``key`` (base64 of the
    SHA-256 of its DER SubjectPublicKeyInfo)."""
    der = key.key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()
