"""Usage marks: each cluster records in the target registry itself which images it runs.

Cleanup (:mod:`swapper.controller.cleanup`) must not delete an image another cluster still
runs when several clusters mirror into one registry. No cluster can see another's pods, but
all of them read the same registry: so each cluster writes, beside every image it runs, a
*mark* that any cluster reading the registry sees.

**The format.** For the image manifest with digest ``D`` in repository ``R``, used by the
cluster ``C`` (``clusterName``), a tiny OCI image manifest is pushed into ``R`` under the tag
``swapper-used-<C>-<first 32 hex digits of D>`` (:func:`mark_tag`)::

    {"schemaVersion": 2,
     "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "artifactType": "application/vnd.swapper.usage.v1+json",
     "config": <the empty descriptor>, "layers": [<the empty descriptor>],
     "subject": <the image's descriptor: media type, D, size>,
     "annotations": {"io.swapper.cluster": C, "io.swapper.image-digest": D,
                     "io.swapper.used-at": <RFC 3339, UTC>}}

The empty descriptor is ``application/vnd.oci.empty.v1+json``, the 2-byte blob ``{}``
(pushed once per repository). One layer rather than none: some registries (ECR among them)
have refused manifests without layers, and the OCI guidance for artifacts without content is
the empty descriptor.

**Why a tag scheme.** It needs nothing but a plain OCI push and the admin protocol's tag
listing, so it works on every target alike: distribution 2.8 (Debian's ``docker-registry``,
which has no referrers API), ECR and Artifact Registry. The ``subject`` is kept so that a
registry of OCI 1.1 also shows the mark as a referrer of the image. The tag tells cleanup
whose mark it is and for which image without reading it; the full digest in the body settles
the (astronomically unlikely) case of two images sharing 32 hex digits.

**No new access.** A mark holds no image content: only the image's digest, media type and
size, the cluster's name and a time, and it lives in the image's own repository, so whoever
may read the mark could already read the image. (:func:`build_mark` is the only writer.)

**Pace.** A cluster rewrites its mark on an image at most once per ``cleanup.markEvery``
(:class:`Marker` remembers, in a bounded map, what it wrote when); the mark it replaces is
deleted by digest, so a registry that keeps untagged manifests (ECR) does not fill up with old
marks.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import orjson

from swapper.aio import TTLMap
from swapper.config import CLUSTER_NAME
from swapper.errors import CopyError, CopyReason, DeleteRefused, MalformedMark, RegistryError
from swapper.images import parse
from swapper.logs import get_logger
from swapper.metrics import Metrics
from swapper.oci import OCI_MANIFEST, Descriptor, Manifest, RegistryClient, Repository
from swapper.targets.admin import RegistryAdmin

log = get_logger("swapper.mirror")

ARTIFACT_TYPE = "application/vnd.swapper.usage.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY_BLOB).hexdigest()
EMPTY_DESCRIPTOR = {"mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": 2}

CLUSTER_ANNOTATION = "io.swapper.cluster"
USED_AT_ANNOTATION = "io.swapper.used-at"
IMAGE_DIGEST_ANNOTATION = "io.swapper.image-digest"

TAG_PREFIX = "swapper-used-"
PREFIX_HEX = 32
"""Hex digits of the image digest a mark's tag carries."""

MAX_REMEMBERED = 50_000
"""Marks (and references looked up) remembered as fresh; the least recently used forgotten."""


@dataclass(frozen=True, slots=True)
class Mark:
    """One cluster's mark on one image, as read back."""

    cluster: str
    image_digest: str
    used_at: datetime


def is_mark_tag(tag: str) -> bool:
    """Whether ``tag`` is in the marks' namespace (well-formed or not)."""
    return tag.startswith(TAG_PREFIX)


def mark_tag(cluster: str, image_digest: str) -> str:
    """The tag of ``cluster``'s mark on the image ``image_digest``."""
    if not CLUSTER_NAME.fullmatch(cluster):
        raise ValueError(f"{cluster!r} is not a lowercase DNS label")
    return f"{TAG_PREFIX}{cluster}-{_hex(image_digest)[:PREFIX_HEX]}"


def parse_mark_tag(tag: str) -> tuple[str, str] | None:
    """``(cluster, first 32 hex digits of the image digest)`` of a mark's tag; None when
    ``tag`` does not follow the scheme."""
    if not is_mark_tag(tag):
        return None
    cluster, sep, prefix = tag[len(TAG_PREFIX) :].rpartition("-")
    if not sep or not CLUSTER_NAME.fullmatch(cluster) or len(prefix) != PREFIX_HEX:
        return None
    if any(c not in "0123456789abcdef" for c in prefix):
        return None
    return cluster, prefix


def digest_prefix(image_digest: str) -> str:
    """The part of ``image_digest`` a mark's tag carries."""
    return _hex(image_digest)[:PREFIX_HEX]


def _hex(digest: str) -> str:
    algorithm, sep, hexdigits = digest.partition(":")
    if not sep or not algorithm or len(hexdigits) < PREFIX_HEX:
        raise ValueError(f"{digest!r} is not a digest")
    return hexdigits


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_mark(cluster: str, subject: Descriptor, used_at: datetime) -> bytes:
    """The manifest of ``cluster``'s mark on the image ``subject`` (see the module docstring):
    the image's descriptor and the three annotations, nothing of the image's content."""
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": EMPTY_DESCRIPTOR,
        "layers": [EMPTY_DESCRIPTOR],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        },
        "annotations": {
            CLUSTER_ANNOTATION: cluster,
            IMAGE_DIGEST_ANNOTATION: subject.digest,
            USED_AT_ANNOTATION: _rfc3339(used_at),
        },
    }
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def parse_mark(data: bytes, tag: str) -> Mark:
    """The mark stored under ``tag``. Raises :class:`MalformedMark` unless it is exactly what
    :func:`build_mark` writes for the cluster and image the tag names."""
    named = parse_mark_tag(tag)
    if named is None:
        raise MalformedMark(f"{tag!r} does not follow swapper-used-<cluster>-<32 hex>")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise MalformedMark(f"the manifest under {tag!r} is not JSON") from None
    if not isinstance(document, dict) or document.get("artifactType") != ARTIFACT_TYPE:
        raise MalformedMark(f"the manifest under {tag!r} is not a {ARTIFACT_TYPE} artifact")
    if document.get("config") != EMPTY_DESCRIPTOR or document.get("layers") not in (
        [],
        [EMPTY_DESCRIPTOR],
    ):
        raise MalformedMark(f"the manifest under {tag!r} carries content: not a swapper mark")
    annotations = document.get("annotations")
    subject = document.get("subject")
    if not isinstance(annotations, dict) or not isinstance(subject, dict):
        raise MalformedMark(f"the manifest under {tag!r} has no annotations or no subject")
    cluster = annotations.get(CLUSTER_ANNOTATION)
    digest = annotations.get(IMAGE_DIGEST_ANNOTATION)
    used = annotations.get(USED_AT_ANNOTATION)
    if cluster != named[0]:
        raise MalformedMark(f"the mark under {tag!r} names the cluster {cluster!r}")
    if not isinstance(digest, str) or subject.get("digest") != digest:
        raise MalformedMark(f"the mark under {tag!r} names no image, or two")
    try:
        if digest_prefix(digest) != named[1]:
            raise MalformedMark(f"the mark under {tag!r} is for another image ({digest})")
        used_at = datetime.fromisoformat(str(used))
    except ValueError as exc:
        raise MalformedMark(f"the mark under {tag!r}: {exc}") from None
    if used_at.tzinfo is None:
        raise MalformedMark(f"the mark under {tag!r} has a used-at without a time zone")
    return Mark(named[0], digest, used_at)


# -- reading and writing marks ----------------------------------------------------------------


@runtime_checkable
class MarkStore(Protocol):
    """Manifests of one target registry, by repository path (as the admin protocol names
    repositories) and tag or digest. :class:`OCIMarkStore` is the one for every target."""

    async def head(self, repository: str, reference: str) -> Descriptor | None:
        """The descriptor of the manifest at ``reference``; None when there is none."""
        ...

    async def get(self, repository: str, reference: str) -> bytes | None:
        """The manifest at ``reference`` as stored; None when there is none."""
        ...

    async def put(self, repository: str, tag: str, manifest: bytes) -> str:
        """Push the OCI manifest ``manifest`` (whose only blob is the empty blob ``{}``, which
        this pushes first when the repository lacks it) under ``tag``; its digest."""
        ...


class OCIMarkStore:
    """:class:`MarkStore` over the OCI distribution API: the same pushes as the copies, so the
    same for docker-registry, ECR and Artifact Registry. ``client`` must send the target's
    push credentials (the copy engine's client does); ``domain`` is the target's host."""

    def __init__(self, client: RegistryClient, domain: str) -> None:
        self.client = client
        self.domain = domain

    def _repository(self, repository: str) -> Repository:
        return self.client.repository(f"{self.domain}/{repository}", push=True)

    async def head(self, repository: str, reference: str) -> Descriptor | None:
        try:
            return await self._repository(repository).head_manifest(reference)
        except CopyError as exc:
            raise RegistryError(str(exc)) from exc

    async def get(self, repository: str, reference: str) -> bytes | None:
        try:
            manifest = await self._repository(repository).get_manifest(reference)
        except CopyError as exc:
            if exc.reason is CopyReason.NOT_FOUND:
                return None
            if exc.reason in (CopyReason.INVALID_MANIFEST, CopyReason.UNSUPPORTED):
                return b""  # there, but not a manifest swapper can read: malformed
            raise RegistryError(str(exc)) from exc
        return manifest.data

    async def put(self, repository: str, tag: str, manifest: bytes) -> str:
        handle = self._repository(repository)
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        try:
            if not await handle.blob_exists(EMPTY_DIGEST):
                await handle.upload_blob(_once(EMPTY_BLOB), EMPTY_DIGEST, len(EMPTY_BLOB))
            await handle.put_manifest(tag, Manifest(manifest, OCI_MANIFEST, digest))
        except CopyError as exc:
            raise RegistryError(str(exc)) from exc
        return digest


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def utc_now() -> datetime:
    return datetime.now(UTC)


class Marker:
    """Writes this cluster's marks on the images it runs (see the module docstring).

    ``store`` reads and pushes manifests, ``admin`` deletes a replaced mark. ``clock`` gives
    the wall-clock time written into ``used-at`` (tests move it). Each ``(repository,
    reference)`` asked is looked up at most once per ``mark_every``, and each image's mark
    written at most once per ``mark_every``: at most ``max_remembered`` of each are
    remembered, the least recently used forgotten first (a forgotten one is only looked up
    again, and its mark rewritten, sooner)."""

    def __init__(
        self,
        cluster: str,
        store: MarkStore,
        admin: RegistryAdmin,
        *,
        mark_every: float = 86_400.0,
        clock: Callable[[], datetime] = utc_now,
        metrics: Metrics | None = None,
        max_remembered: int = MAX_REMEMBERED,
    ) -> None:
        mark_tag(cluster, "sha256:" + "0" * 64)  # a ValueError now rather than at each write
        self.cluster = cluster
        self.store = store
        self.admin = admin
        self.mark_every = mark_every
        self.clock = clock
        self.metrics = metrics or Metrics()

        def seconds() -> float:
            return self.clock().timestamp()

        self._looked_up: TTLMap[tuple[str, str], str] = TTLMap(max_remembered, seconds)
        self._written: TTLMap[tuple[str, str], str] = TTLMap(max_remembered, seconds)

    async def mark(self, repository: str, reference: str) -> bool:
        """Mark the image ``reference`` (a tag or a digest) of ``repository`` as used by this
        cluster now, unless that was done within ``mark_every``. True when a mark was written.
        Raises :class:`~swapper.errors.RegistryError`."""
        key = (repository, reference)
        if key in self._looked_up:
            self._count("fresh")
            return False
        subject = await self.store.head(repository, reference)
        if subject is None or not subject.digest:
            self._count("absent")
            return False
        self._looked_up.set(key, subject.digest, self.mark_every)
        if (repository, subject.digest) in self._written:
            self._count("fresh")
            return False
        tag = mark_tag(self.cluster, subject.digest)
        previous = await self.store.head(repository, tag)
        digest = await self.store.put(
            repository, tag, build_mark(self.cluster, subject, self.clock())
        )
        self._written.set((repository, subject.digest), digest, self.mark_every)
        self._count("written")
        if previous is not None and previous.digest and previous.digest != digest:
            await self._drop(repository, previous.digest)
        return True

    async def mark_targets(self, targets: Iterable[str]) -> int:
        """Mark each full mirror reference of ``targets`` (``host/path:tag`` or ``@digest``,
        as :meth:`swapper.controller.backfill.PodRecord.in_use` gives them); one failure is
        logged and counted, and the others go on. How many marks were written."""
        written = 0
        for target in dict.fromkeys(targets):
            try:
                ref = parse(target)
                written += await self.mark(ref.path, ref.digest or ref.tag or "latest")
            except Exception as exc:  # one image never stops the others
                self._count("error")
                log.warning("usage_mark_failed", target=target, error=f"{type(exc).__name__}")
        return written

    async def read(self, repository: str, tag: str) -> Mark:
        """The mark under ``tag``. Raises :class:`MalformedMark` (also when the tag has gone
        since it was listed: kept, to be looked at again next pass) or RegistryError."""
        data = await self.store.get(repository, tag)
        if data is None:
            raise MalformedMark(f"the mark {tag!r} was listed but is gone")
        return parse_mark(data, tag)

    async def _drop(self, repository: str, digest: str) -> None:
        """Delete the mark just replaced (untagged now): best effort, a registry that will
        not delete keeps it (it holds nothing, and no tag names it)."""
        try:
            await self.admin.delete_manifest(repository, digest)
        except (DeleteRefused, RegistryError) as exc:
            log.debug("usage_mark_replaced_kept", repository=repository, error=str(exc))

    def _count(self, result: str) -> None:
        self.metrics.cleanup_marks.labels(result).inc()

    def forget(self) -> None:
        """Forget what was written when (the next :meth:`mark` of each image looks again)."""
        self._looked_up.clear()
        self._written.clear()
