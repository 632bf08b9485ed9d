"""Referrer artifacts built in Python and pushed to a registry through its plain API: OCI 1.1
artifact manifests with a ``subject``, cosign-tag-shaped manifests, and referrers tag fallback
indexes (the engine under test never pushes these fixtures)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import httpx
from registries import OCI_INDEX, OCI_MANIFEST, Blob, push_blob, push_manifest

EMPTY = Blob(
    "sha256:" + hashlib.sha256(b"{}").hexdigest(), 2, "application/vnd.oci.empty.v1+json", b"{}"
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Artifact:
    data: bytes
    blobs: list[Blob]
    artifact_type: str
    media_type: str = OCI_MANIFEST

    @property
    def digest(self) -> str:
        return sha256(self.data)

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
            "artifactType": self.artifact_type,
        }


def artifact(
    subject: dict[str, Any] | None, artifact_type: str, payload: bytes, layer_type: str
) -> Artifact:
    """An OCI 1.1 artifact: ``artifactType``, the empty config, one layer, and a ``subject``
    (a descriptor: mediaType, digest, size) unless None."""
    layer = Blob(sha256(payload), len(payload), layer_type, payload)
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY.descriptor(),
        "layers": [layer.descriptor()],
        "annotations": {"org.example.made-by": "swapper tests"},
    }
    if subject is not None:
        document["subject"] = subject
    return Artifact(json.dumps(document, indent=1).encode(), [EMPTY, layer], artifact_type)


def cosign_shaped(payload: bytes) -> Artifact:
    """A manifest shaped like cosign's ``sha256-<hex>.sig``: an image config, one
    simple-signing layer (the signature itself is not checked by the copy)."""
    config_data = b'{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]}}'
    config = Blob(
        sha256(config_data),
        len(config_data),
        "application/vnd.oci.image.config.v1+json",
        config_data,
    )
    layer_type = "application/vnd.dev.cosign.simplesigning.v1+json"
    layer = Blob(sha256(payload), len(payload), layer_type, payload)
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [
            {**layer.descriptor(), "annotations": {"dev.cosignproject.cosign/signature": "c2ln"}}
        ],
    }
    return Artifact(json.dumps(document).encode(), [config, layer], layer_type)


def subject_of(data: bytes, media_type: str) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def push_artifact(client: httpx.Client, repo: str, item: Artifact, tag: str | None = None) -> str:
    for blob in item.blobs:
        push_blob(client, repo, blob)
    return push_manifest(client, repo, tag or item.digest, item.data, item.media_type)


def fallback_index(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()


def referrers_listed(client: httpx.Client, repo: str, digest: str) -> list[str]:
    """The digests the target's referrers API lists for ``digest`` (a registry with the API)."""
    answer = client.get(f"/v2/{repo}/referrers/{digest}")
    answer.raise_for_status()
    return [item["digest"] for item in answer.json()["manifests"]]


def fallback_listed(client: httpx.Client, repo: str, digest: str) -> list[str] | None:
    """The digests the referrers tag fallback of ``digest`` lists; None when there is none."""
    tag = digest.replace(":", "-")
    answer = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_INDEX})
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return [item["digest"] for item in answer.json()["manifests"]]
