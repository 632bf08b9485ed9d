"""Media types, descriptors, manifests and platforms: parsing only, no I/O.

A manifest is kept as the exact bytes the source served: the copy pushes those bytes, so the
target's digest equals the source's. Parsing only finds what the manifest references: child
manifests (``manifests`` of an index) and blobs (``config``, ``layers`` and the ``blobs`` of the
short-lived OCI artifact manifest). Media types swapper does not know are passed through as
they are; a document with ``manifests`` is read as an index, anything else as a manifest.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from swapper.errors import CopyError, CopyReason

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST, OCI_ARTIFACT_MANIFEST})
SCHEMA1_MEDIA_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})

# Every type is named: docker-registry answers 404 for a stored OCI manifest when the Accept
# header does not list the OCI type, and converts schema 2 to schema 1 when it lacks schema 2.
MANIFEST_ACCEPT = ", ".join(
    (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST, OCI_ARTIFACT_MANIFEST)
)

# Layers that registries do not store (Windows base layers): left where their ``urls`` point,
# as ``skopeo copy`` does by default.
NONDISTRIBUTABLE_LAYERS = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)

# buildkit's attestation manifests sit in the index with platform unknown/unknown and name the
# image manifest they describe in this annotation.
REFERENCE_DIGEST_ANNOTATION = "vnd.docker.reference.digest"

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # what the OCI distribution spec asks registries to accept

_DIGEST_RE = re.compile(r"(?P<algorithm>sha256|sha512):(?P<hex>[a-f0-9]+)")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}


def check_digest(digest: str) -> str:
    """Return the algorithm of a ``sha256:``/``sha512:`` digest; CopyError otherwise."""
    match = _DIGEST_RE.fullmatch(digest)
    if match is None or len(match["hex"]) != _HEX_LENGTH[match["algorithm"]]:
        raise CopyError(f"unsupported or malformed digest {digest!r}", CopyReason.UNSUPPORTED)
    return match["algorithm"]


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


@dataclass(frozen=True, slots=True)
class Platform:
    """``os/architecture[/variant]``, e.g. ``linux/arm64/v8``."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"{text!r} is not a platform (os/arch[/variant], e.g. linux/amd64)")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def matches(self, other: Platform) -> bool:
        """Whether a manifest for ``other`` is selected by this platform.

        A selector without a variant accepts any variant; ``arm64`` without a variant is
        ``arm64/v8``.
        """
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        if self.variant is None:
            return True
        return _variant(self) == _variant(other)

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


def _variant(platform: Platform) -> str | None:
    if platform.variant is None and platform.architecture == "arm64":
        return "v8"
    return platform.variant


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor: what a manifest says about one blob or child manifest."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    urls: tuple[str, ...] = ()

    @property
    def nondistributable(self) -> bool:
        return self.media_type in NONDISTRIBUTABLE_LAYERS


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index exactly as served: ``data`` is pushed unchanged."""

    data: bytes = field(repr=False)
    media_type: str
    digest: str
    children: tuple[Descriptor, ...] = ()  # child manifests of an index
    blobs: tuple[Descriptor, ...] = ()  # config and layers of a manifest
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES or (
            self.media_type not in MANIFEST_MEDIA_TYPES and "manifests" in self.document
        )


def parse_manifest(data: bytes, content_type: str | None, digest: str) -> Manifest:
    """Read what ``data`` references. ``content_type`` is the registry's ``Content-Type``."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise CopyError(f"manifest {digest} is not JSON", CopyReason.INVALID_MANIFEST) from None
    if not isinstance(document, dict):
        raise CopyError(f"manifest {digest} is not a JSON object", CopyReason.INVALID_MANIFEST)
    media_type = _media_type(content_type, document)
    if media_type in SCHEMA1_MEDIA_TYPES or document.get("schemaVersion") == 1:
        raise CopyError(
            f"manifest {digest} is Docker schema 1, which registries no longer accept",
            CopyReason.UNSUPPORTED,
        )
    try:
        if "manifests" in document and media_type not in MANIFEST_MEDIA_TYPES:
            children = tuple(_descriptor(item) for item in document["manifests"])
            return Manifest(data, media_type, digest, children=children, document=document)
        blobs: list[Descriptor] = []
        if isinstance(document.get("config"), dict):
            blobs.append(_descriptor(document["config"]))
        for key in ("layers", "blobs"):
            blobs.extend(_descriptor(item) for item in document.get(key) or ())
    except (KeyError, TypeError, ValueError) as exc:
        raise CopyError(
            f"manifest {digest} has a malformed descriptor: {exc}", CopyReason.INVALID_MANIFEST
        ) from None
    return Manifest(data, media_type, digest, blobs=tuple(blobs), document=document)


def _media_type(content_type: str | None, document: dict[str, Any]) -> str:
    declared = document.get("mediaType")
    header = (content_type or "").split(";", 1)[0].strip().lower()
    if isinstance(declared, str) and declared:
        return declared
    if header and header not in ("application/json", "application/octet-stream", "text/plain"):
        return header
    return OCI_INDEX if "manifests" in document else OCI_MANIFEST


def _descriptor(item: Any) -> Descriptor:
    if not isinstance(item, dict):
        raise TypeError("descriptor is not an object")
    digest = item["digest"]
    size = item["size"]
    if not isinstance(digest, str) or not isinstance(size, int) or size < 0:
        raise ValueError(f"bad digest or size in {item!r:.200}")
    check_digest(digest)
    platform = None
    raw = item.get("platform")
    if isinstance(raw, dict) and raw.get("os") and raw.get("architecture"):
        platform = Platform(
            str(raw["os"]).lower(),
            str(raw["architecture"]).lower(),
            str(raw["variant"]).lower() if raw.get("variant") else None,
        )
    annotations = item.get("annotations")
    return Descriptor(
        media_type=str(item.get("mediaType") or ""),
        digest=digest,
        size=size,
        platform=platform,
        annotations=annotations if isinstance(annotations, dict) else {},
        urls=tuple(item.get("urls") or ()),
    )


def select_children(
    index: Manifest, platforms: tuple[Platform, ...]
) -> tuple[tuple[Descriptor, ...], tuple[Descriptor, ...]]:
    """Split an index's children into (selected, left out) for ``platforms``.

    A child is selected when its platform matches one of ``platforms``. A child without a
    usable platform (attestations, signatures: platform ``unknown/unknown`` or none) follows the
    manifest its ``vnd.docker.reference.digest`` annotation names, and is otherwise kept.
    """
    chosen: list[Descriptor] = []
    for child in index.children:
        platform = child.platform
        if (
            platform is not None
            and platform.os != "unknown"
            and any(wanted.matches(platform) for wanted in platforms)
        ):
            chosen.append(child)
    chosen_digests = {child.digest for child in chosen}
    selected: list[Descriptor] = []
    left_out: list[Descriptor] = []
    for child in index.children:
        if child.digest in chosen_digests:
            selected.append(child)
            continue
        platform = child.platform
        if platform is None or platform.os == "unknown":
            subject = child.annotations.get(REFERENCE_DIGEST_ANNOTATION)
            if subject is None or subject in chosen_digests:
                selected.append(child)
                continue
        left_out.append(child)
    return tuple(selected), tuple(left_out)


def filtered_index(index: Manifest, selected: tuple[Descriptor, ...]) -> Manifest:
    """The index with only ``selected`` children, serialised compactly (a new digest)."""
    keep = {child.digest for child in selected}
    document = dict(index.document)
    document["manifests"] = [
        item for item in index.document["manifests"] if item.get("digest") in keep
    ]
    data = orjson.dumps(document)
    return Manifest(
        data,
        index.media_type,
        digest_of(data),
        children=selected,
        document=document,
    )
