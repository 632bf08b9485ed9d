"""Referrers: what refers to a manifest (signatures, attestations, SBOMs), found three ways.

For a digest ``sha256:<hex>`` of a repository, :meth:`ReferrerFinder.find` looks, in order:

1. the OCI 1.1 referrers API, ``GET /v2/<name>/referrers/<digest>`` (an image index; pages
   followed through ``Link``, at most :data:`MAX_REFERRER_PAGES`);
2. where the registry answers that with 404 (or 405, 501: it has no such API; Debian's
   docker-registry, distribution 2.x), the referrers tag fallback of the OCI distribution
   spec: the tag
   ``sha256-<hex>`` holding an image index of the referrers. A registry once seen without
   the API is not asked again for :data:`NO_API_FOR` seconds (per registry host, in the
   optional :class:`ApiMemory`), so such a registry costs one 404 and then nothing;
3. cosign's tag scheme: the tags ``sha256-<hex>.sig`` (signatures), ``.att`` (attestations) and
   ``.sbom`` (SBOMs), which cosign 2.x writes by default.

The tags of steps 2 and 3 are looked up in the repository's tag list, read once per finder
(one ``GET /v2/<name>/tags/list``, paged, at most :data:`MAX_TAG_PAGES` pages of
:data:`TAG_PAGE_SIZE`) rather than with a ``HEAD`` per tag and digest: an image index with two
platforms would need nine ``HEAD`` requests for cosign's tags alone, the tag list one. A tag
list too long for that bound, or one the registry refuses, makes the finder fall back to a
``HEAD`` per tag. A manifest without referrers thus costs one referrers request (none on a
registry known to lack the API) plus its share of the one tag list.

Nothing here raises for bad content: a malformed referrers index, a fallback tag that is not an
index, a descriptor with a bad digest are reported in :attr:`Found.problems` and skipped.
Transport and registry failures (:class:`~swapper.errors.CopyError`) are raised for the
caller to count.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

import orjson

from swapper.errors import CopyError, CopyReason
from swapper.oci._client import Repository
from swapper.oci._manifests import (
    DOCKER_MANIFEST,
    INDEX_MEDIA_TYPES,
    OCI_INDEX,
    Manifest,
    check_digest,
)

FoundBy = Literal["referrers-api", "referrers-tag", "cosign-tag"]

COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
MAX_REFERRER_PAGES = 8
TAG_PAGE_SIZE = 1000
MAX_TAG_PAGES = 10
NO_API_FOR = 600.0  # seconds a registry without the referrers API is not asked again

EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
IMAGE_CONFIGS = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
        EMPTY_CONFIG,
    }
)


@dataclass(frozen=True, slots=True)
class Referrer:
    """One manifest (or index) that refers to a subject."""

    digest: str
    media_type: str
    size: int
    artifact_type: str  # "" when the listing did not say: see artifact_type_of
    tag: str | None  # the tag it is kept under at the source (cosign's scheme), else None
    found_by: FoundBy


@dataclass(frozen=True, slots=True)
class Found:
    """What :meth:`ReferrerFinder.find` found for ``subject``."""

    subject: str
    referrers: tuple[Referrer, ...]  # de-duplicated by digest (and tag)
    api: bool  # the referrers API answered (False: it answered 404, or is known to)
    problems: tuple[str, ...] = ()  # malformed answers, skipped; each a sentence


def fallback_tag(digest: str) -> str:
    """The referrers tag fallback's tag for ``digest``: ``<alg>-<hex>`` (the spec truncates
    the algorithm to 32 and the hex to 64 characters)."""
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm[:32]}-{hex_part[:64]}"


def cosign_tags(digest: str) -> tuple[str, ...]:
    """cosign's tags for ``digest``: ``sha256-<hex>.sig``, ``.att``, ``.sbom``."""
    algorithm, _, hex_part = digest.partition(":")
    return tuple(f"{algorithm}-{hex_part}{suffix}" for suffix in COSIGN_SUFFIXES)


def artifact_type_of(manifest: Manifest) -> str:
    """A manifest's artifact type: its ``artifactType``; else its config's media type unless
    that is an image config or the empty config; else its first layer's media type (cosign's
    tag-scheme manifests: ``application/vnd.dev.cosign.simplesigning.v1+json`` for a
    signature, ``application/vnd.dsse.envelope.v1+json`` for an attestation, the SBOM's own
    type for an SBOM); else ""."""
    document = manifest.document
    declared = document.get("artifactType")
    if isinstance(declared, str) and declared:
        return declared
    config = document.get("config")
    if isinstance(config, dict):
        media_type = config.get("mediaType")
        if isinstance(media_type, str) and media_type and media_type not in IMAGE_CONFIGS:
            return media_type
    layers = document.get("layers") or document.get("blobs")
    if isinstance(layers, list) and layers and isinstance(layers[0], dict):
        media_type = layers[0].get("mediaType")
        if isinstance(media_type, str):
            return media_type
    return ""


def type_allowed(artifact_type: str, allowed: Iterable[str]) -> bool:
    """Whether ``artifact_type`` matches the allow list (``*`` wildcards; empty: all)."""
    patterns = tuple(allowed)
    return not patterns or any(fnmatchcase(artifact_type, pattern) for pattern in patterns)


def subject_of(manifest: Manifest) -> str | None:
    """The digest a manifest's ``subject`` names, or None."""
    subject = manifest.document.get("subject")
    if isinstance(subject, dict) and isinstance(subject.get("digest"), str):
        return str(subject["digest"])
    return None


def descriptor_for(manifest: Manifest) -> dict[str, Any]:
    """The descriptor of ``manifest`` in a referrers index (the spec's fields: artifactType and
    annotations copied from the manifest)."""
    entry: dict[str, Any] = {
        "mediaType": manifest.media_type,
        "digest": manifest.digest,
        "size": len(manifest.data),
    }
    artifact_type = artifact_type_of(manifest)
    if artifact_type:
        entry["artifactType"] = artifact_type
    annotations = manifest.document.get("annotations")
    if isinstance(annotations, dict) and annotations:
        entry["annotations"] = annotations
    return entry


def merged_index(existing: Manifest | None, entries: Iterable[dict[str, Any]]) -> bytes | None:
    """The fallback index ``existing`` with ``entries`` added (by digest); None when it
    already lists all of them."""
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if existing is not None and isinstance(existing.document.get("manifests"), list):
        document = dict(existing.document)
        document["manifests"] = list(existing.document["manifests"])
    listed = {item.get("digest") for item in document["manifests"] if isinstance(item, dict)}
    added = [entry for entry in entries if entry["digest"] not in listed]
    if not added:
        return None
    document["manifests"].extend(added)
    return orjson.dumps(document)


class ApiMemory:
    """Registry hosts seen without the referrers API, each forgotten after ``ttl`` seconds;
    at most ``size`` remembered."""

    def __init__(self, ttl: float = NO_API_FOR, size: int = 1024) -> None:
        self._ttl = ttl
        self._size = size
        self._until: OrderedDict[str, float] = OrderedDict()

    def lacks_api(self, domain: str) -> bool:
        until = self._until.get(domain)
        if until is None:
            return False
        if until < time.monotonic():
            del self._until[domain]
            return False
        return True

    def saw_no_api(self, domain: str) -> None:
        self._until[domain] = time.monotonic() + self._ttl
        self._until.move_to_end(domain)
        while len(self._until) > self._size:
            self._until.popitem(last=False)


class ReferrerFinder:
    """Finds the referrers of digests in one repository; reads its tag list at most once.

    Not safe for finds of one finder from several tasks at once before the tag list is read
    (they would each read it): the copy engine finds one level of referrers at a time."""

    def __init__(self, repository: Repository, *, api_memory: ApiMemory | None = None) -> None:
        self.repository = repository
        self.api_memory = api_memory
        self._tags: frozenset[str] | None = None
        self._tags_read = False  # _tags None after reading: too many, or refused: HEAD each

    async def find(self, digest: str) -> Found:
        check_digest(digest)
        problems: list[str] = []
        found: list[Referrer] = []
        api = await self._from_api(digest, found, problems)
        if not api:
            await self._from_fallback(digest, found, problems)
        await self._from_cosign(digest, found)
        unique: dict[tuple[str, str | None], Referrer] = {}
        for referrer in found:
            if referrer.digest == digest:
                problems.append(f"{self.repository.name}@{digest} lists itself as its referrer")
                continue
            unique.setdefault((referrer.digest, referrer.tag), referrer)
        return Found(digest, tuple(unique.values()), api, tuple(problems))

    async def tags(self) -> frozenset[str] | None:
        """The repository's tags (read once), or None when there are too many to list or the
        registry refused the listing."""
        if not self._tags_read:
            self._tags_read = True
            collected: set[str] = set()
            pages = 0
            try:
                async for page in self.repository.tag_pages(TAG_PAGE_SIZE):
                    collected.update(page)
                    pages += 1
                    if pages >= MAX_TAG_PAGES:
                        return None
            except CopyError:
                return None
            self._tags = frozenset(collected)
        return self._tags

    async def _from_api(self, digest: str, found: list[Referrer], problems: list[str]) -> bool:
        domain = self.repository.domain
        if self.api_memory is not None and self.api_memory.lacks_api(domain):
            return False
        url: str | None = None
        for _ in range(MAX_REFERRER_PAGES):
            page = await self.repository.get_referrers(digest, url)
            if page is None:
                if url is None and self.api_memory is not None:
                    self.api_memory.saw_no_api(domain)
                return url is not None
            body, url = page
            what = f"the referrers index of {self.repository.name}@{digest}"
            found.extend(_index_entries(body, what, "referrers-api", problems))
            if url is None:
                break
        return True

    async def _from_fallback(self, digest: str, found: list[Referrer], problems: list[str]) -> None:
        tag = fallback_tag(digest)
        if not await self._tag_may_exist(tag):
            return
        what = f"the referrers tag {self.repository.name}:{tag}"
        try:
            index = await self.repository.get_manifest(tag)
        except CopyError as exc:
            if exc.reason == CopyReason.NOT_FOUND:
                return
            if exc.reason in (CopyReason.INVALID_MANIFEST, CopyReason.UNSUPPORTED):
                problems.append(f"{what} is malformed: {exc}")
                return
            raise
        if index.media_type not in INDEX_MEDIA_TYPES and not index.is_index:
            problems.append(f"{what} is not an image index ({index.media_type})")
            return
        found.extend(_index_entries(index.data, what, "referrers-tag", problems))

    async def _from_cosign(self, digest: str, found: list[Referrer]) -> None:
        for tag in cosign_tags(digest):
            if not await self._tag_may_exist(tag):
                continue
            head = await self.repository.head_manifest(tag)
            if head is None or not head.digest:
                continue
            found.append(
                Referrer(
                    head.digest,
                    head.media_type or DOCKER_MANIFEST,
                    head.size,
                    "",
                    tag,
                    "cosign-tag",
                )
            )

    async def _tag_may_exist(self, tag: str) -> bool:
        """False when the tag list was read and lacks ``tag``; True when it has it, or could
        not be read (then a HEAD or GET says)."""
        tags = await self.tags()
        return tags is None or tag in tags


def _index_entries(
    body: bytes, what: str, found_by: FoundBy, problems: list[str]
) -> list[Referrer]:
    """The referrers an index lists; malformed parts are reported in ``problems``."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        problems.append(f"{what} is malformed: not JSON")
        return []
    manifests = document.get("manifests") if isinstance(document, dict) else None
    if not isinstance(manifests, list):
        problems.append(f"{what} is malformed: no list of manifests")
        return []
    entries: list[Referrer] = []
    for item in manifests:
        try:
            if not isinstance(item, dict):
                raise ValueError("a descriptor is not an object")
            digest, size = item.get("digest"), item.get("size")
            if not isinstance(digest, str) or not isinstance(size, int) or size < 0:
                raise ValueError(f"bad digest or size in {item!r:.200}")
            check_digest(digest)
        except (ValueError, CopyError) as exc:
            problems.append(f"{what} is malformed: {exc}")
            continue
        artifact_type = item.get("artifactType")
        entries.append(
            Referrer(
                digest,
                str(item.get("mediaType") or ""),
                size,
                artifact_type if isinstance(artifact_type, str) else "",
                None,
                found_by,
            )
        )
    return entries
