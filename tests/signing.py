"""cosign's signature layouts, made in Python with ``cryptography`` for tests that must shape bad
input cosign itself would never write (a signature over another digest, a broken bundle).

The layouts follow cosign 2.x (``cosign sign --key``): the simple signing payload and the
``sha256-<hex>.sig`` manifest whose layer annotation holds the signature; the same layers in
an OCI 1.1 referrer (``--registry-referrers-mode=oci-1-1``); and the sigstore bundle v0.3
referrer of ``--new-bundle-format`` (a DSSE envelope of an in-toto statement with cosign's sign
predicate). The tests with real signatures use cosign itself (tests/supply).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from swapper.cosign import (
    BUNDLE_V03,
    INTOTO,
    SIG_ARTIFACT_TYPE,
    SIGN_PREDICATE,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING,
    pae,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY = b"{}"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Signer:
    private: ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls, curve: ec.EllipticCurve | None = None) -> Signer:
        return cls(ec.generate_private_key(curve or ec.SECP256R1()))

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def write_public(self, path: Path) -> str:
        path.write_bytes(self.public_pem())
        return str(path)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data, ec.ECDSA(hashes.SHA256()))

    def sign_prehashed(self, digest: bytes) -> bytes:
        return self.private.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def simple_signing_payload(digest: str, reference: str = "registry.local/app") -> bytes:
    """cosign's payload: compact JSON, as ``payload.Cosign`` marshals it."""
    document = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Artifact:
    """A manifest and the blobs it names, ready to push."""

    manifest: bytes
    blobs: dict[str, bytes]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def signature_manifest(
    layers: list[tuple[bytes, bytes]],
    *,
    subject: dict[str, Any] | None = None,
) -> Artifact:
    """The ``.sig`` manifest (no ``subject``) or its ``oci-1-1`` referrer form: one simple
    signing layer per ``(payload, signature)``."""
    config = json.dumps({"architecture": "", "os": "", "rootfs": {"type": "layers"}}).encode()
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [
            _descriptor(
                SIMPLE_SIGNING,
                payload,
                annotations={SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()},
            )
            for payload, signature in layers
        ],
    }
    blobs = {sha256(config): config, **{sha256(p): p for p, _ in layers}}
    if subject is not None:
        document["artifactType"] = SIG_ARTIFACT_TYPE
        document["config"]["mediaType"] = SIG_ARTIFACT_TYPE
        document["subject"] = subject
    return Artifact(json.dumps(document).encode(), blobs)


def statement(digest: str, predicate_type: str = SIGN_PREDICATE) -> bytes:
    algorithm, _, encoded = digest.partition(":")
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {algorithm: encoded}}],
            "predicateType": predicate_type,
        }
    ).encode()


def dsse_bundle(signer: Signer, payload: bytes, payload_type: str = INTOTO) -> bytes:
    """A sigstore bundle v0.3 as cosign's ``MakeNewBundle`` writes it (no tlog entry)."""
    signature = signer.sign(pae(payload_type, payload))
    der = signer.private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return json.dumps(
        {
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {
                "publicKey": {"hint": base64.b64encode(hashlib.sha256(der).digest()).decode()}
            },
            "dsseEnvelope": {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": payload_type,
                "signatures": [{"sig": base64.b64encode(signature).decode()}],
            },
        }
    ).encode()


def message_bundle(signer: Signer, digest: str) -> bytes:
    """A bundle with a message signature over the image manifest (its digest)."""
    raw = bytes.fromhex(digest.partition(":")[2])
    return json.dumps(
        {
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {"publicKey": {"hint": ""}},
            "messageSignature": {
                "messageDigest": {
                    "algorithm": "SHA2_256",
                    "digest": base64.b64encode(raw).decode(),
                },
                "signature": base64.b64encode(signer.sign_prehashed(raw)).decode(),
            },
        }
    ).encode()


def bundle_referrer(
    bundle: bytes, subject: dict[str, Any], predicate_type: str = SIGN_PREDICATE
) -> Artifact:
    """The referrer cosign's ``WriteAttestationNewBundleFormat`` pushes for a bundle."""
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_V03,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": sha256(EMPTY),
            "size": len(EMPTY),
            "artifactType": BUNDLE_V03,
        },
        "layers": [_descriptor(BUNDLE_V03, bundle)],
        "subject": subject,
        "annotations": {
            "dev.sigstore.bundle.content": "dsse-envelope",
            "dev.sigstore.bundle.predicateType": predicate_type,
        },
    }
    return Artifact(json.dumps(document).encode(), {sha256(EMPTY): EMPTY, sha256(bundle): bundle})
