"""The copy engine: one image (a manifest, or an index and its children) from source to target.

Order of work for ``copy(source, target)``:

1. ``HEAD`` the source reference and the target reference, at once (a source pinned by digest
   is not asked: its digest is known). When the target already resolves to the source's digest
   (or to the platform-filtered index this engine pushed for that source digest), stop
   (``already_present``): one request on each side, and no ``GET`` on the source, which is
   what Docker Hub counts against its pull limit; an ``imagePullPolicy: Always`` re-check
   costs this much.
2. Otherwise ``GET`` the source manifest (by digest when the reference has one, checked
   against it) and compare again (the tag may have moved since the ``HEAD``).
3. For an index: the children (all, or those of the selected platforms) are copied
   concurrently; a child the target already has (``HEAD`` by digest) is skipped whole.
4. For a manifest: its blobs are copied concurrently, at most ``max_concurrent_blobs``
   transfers at a time for the whole copy (both platforms' blobs share the limit; the cheap
   checks before a transfer run four times as wide). Per blob: ``HEAD`` on the target
   (present: skipped); else a cross-repository mount from a repository of the same target
   registry where the engine saw that blob before (or the source repository, when it is on
   the target registry); else ``GET`` from the source streamed into the upload (whose session
   is opened while the download starts): each chunk is passed on as received (no copy) and
   hashed once on the way through; the chunk that completes the blob is held back until the
   digest and size match, so a corrupted blob is never completed on the target; the
   registry checks the digest too. A transient failure restarts that blob.
5. A manifest is pushed (by digest) only when all its blobs are there, an index only when all
   its children are there, and the tag last: a copy that fails leaves no tag behind, at most
   some untagged blobs and child manifests that the next attempt reuses.

With :class:`ReferrerSettings`, what refers to the image's index and copied manifests
(signatures, attestations, SBOMs; found by :mod:`._referrers`) is copied while steps 3 and 4
run, each referrer as the source serves it, and waited for before the tag is pushed (step 5):
the mirror never shows the tag without the signatures. A referrer that fails is reported in
:attr:`CopyResult.referrers`, never raised.

Manifests are pushed as the exact bytes the source served, so digests are preserved.

Platform selection (``platforms``): with ``None`` (all) the original index is pushed. With a
list, only the matching children are copied (attestations follow the image they describe).
When the target then has every child of the index anyway (from an earlier full copy) the
original index is pushed and the digest is preserved; otherwise a filtered index listing only
the copied children is pushed under the tag, its digest differs from the source's, and
:class:`CopyResult` says so (``filtered``, ``digest``). A target reference pinned by digest
(``tag@sha256:...``) must resolve to exactly that digest, which a filtered index cannot, so
such a copy takes every platform whatever ``platforms`` says: a pod pinned to a digest always
gets the image it asked for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from swapper.errors import CopyError, CopyReason, TransientCopyError, TransportError
from swapper.images import ImageReference, parse
from swapper.oci._auth import CredentialsProvider
from swapper.oci._client import RegistryClient, Repository, transport_error
from swapper.oci._manifests import (
    OCI_INDEX,
    Descriptor,
    Manifest,
    Platform,
    check_digest,
    digest_of,
    filtered_index,
    select_children,
)
from swapper.oci._referrers import (
    IMAGE_CONFIGS,
    ApiMemory,
    Referrer,
    ReferrerFinder,
    artifact_type_of,
    descriptor_for,
    fallback_tag,
    merged_index,
    subject_of,
    type_allowed,
)

_A = TypeVar("_A")
_B = TypeVar("_B")
_K = TypeVar("_K")
_V = TypeVar("_V")

ProgressKind = Literal[
    "blob-started",
    "blob-progress",
    "blob-retried",
    "blob-copied",
    "blob-skipped",
    "blob-mounted",
    "manifest-present",
    "manifest-pushed",
]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One step of a copy, with running totals for a progress display.

    ``digest``/``size`` are the blob's or manifest's. ``transferred`` is how much of this blob
    the current attempt has sent (``blob-progress``). Totals grow while child manifests are
    read; ``bytes_done`` counts skipped and mounted blobs at their full size, and goes back
    down when a blob transfer is retried.
    """

    kind: ProgressKind
    digest: str
    size: int
    transferred: int
    blobs_total: int
    blobs_done: int
    bytes_total: int
    bytes_done: int


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True, slots=True)
class ReferrerSettings:
    """How the referrers of a copied image are copied with it (see :mod:`._referrers`).

    ``types``: the artifact types copied (``*`` wildcards; empty: all). ``depth``: how many
    levels of referrers of referrers (a signature on an SBOM is level 2). ``concurrency``:
    referrers copied at once."""

    types: tuple[str, ...] = ()
    depth: int = 3
    concurrency: int = 4


REFERRER_RESULTS = ("copied", "present", "filtered", "failed", "malformed", "loop", "too-deep")
"""The outcomes of referrers counted in :class:`ReferrerReport` (the ``result`` label of
``swapper_referrers_copied_total``): copied; already in the target (present); left out by
``types`` (filtered); could not be copied (failed: the image copy goes on); a malformed
referrers index or fallback tag (malformed, per problem); a referrer that refers back to a
manifest it hangs from (loop); beyond ``depth`` (too-deep)."""


@dataclass(frozen=True, slots=True)
class ReferrerReport:
    """The referrers of one copy: a count per outcome (:data:`REFERRER_RESULTS`), and one
    sentence per referrer that failed or was malformed, looped or too deep."""

    counts: tuple[tuple[str, int], ...] = ()
    problems: tuple[str, ...] = ()
    duration: float = 0.0  # seconds the referrers took (finding and copying them)

    def count(self, result: str) -> int:
        return dict(self.counts).get(result, 0)


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What a copy did. ``digest`` is what the target reference now resolves to."""

    source: str
    target: str
    digest: str
    source_digest: str
    media_type: str
    already_present: bool
    filtered: bool  # an index filtered by platform was pushed: digest != source_digest
    # platforms of the index children copied; () for a manifest, and when already present
    # (nothing was read from the source then)
    platforms: tuple[str, ...]
    manifests_pushed: int
    manifests_skipped: int
    blobs_copied: int
    blobs_skipped: int
    blobs_mounted: int
    bytes_copied: int
    duration: float
    # the image's referrers (signatures, attestations, SBOMs) copied with it: nothing when the
    # engine copies none, or the image was already present (nothing was read then)
    referrers: ReferrerReport = field(default_factory=ReferrerReport)

    @property
    def digest_preserved(self) -> bool:
        return self.digest == self.source_digest


def parse_platforms(value: str | Sequence[str] | None) -> tuple[Platform, ...] | None:
    """``"all"``/None -> None; ``"linux/amd64,linux/arm64"`` or a list -> platforms.

    Raises ``ValueError`` for a malformed platform.
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [item.strip() for item in items if item.strip()]
    if not items or any(item.lower() == "all" for item in items):
        return None
    return tuple(Platform.parse(item) for item in items)


class _Bounded(Generic[_K, _V]):
    """A dict that forgets its least recently used entries beyond ``size``."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[_K, _V] = OrderedDict()

    def get(self, key: _K) -> _V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: _K, value: _V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class _KnownBlobs:
    """Where blobs were last seen in target registries, for cross-repository mounts."""

    def __init__(self, size: int, per_blob: int = 4) -> None:
        self._size = size
        self._per_blob = per_blob
        self._where: OrderedDict[tuple[str, str], list[str]] = OrderedDict()

    def add(self, domain: str, digest: str, path: str) -> None:
        key = (domain, digest)
        paths = self._where.pop(key, [])
        if path in paths:
            paths.remove(path)
        paths.insert(0, path)
        self._where[key] = paths[: self._per_blob]
        while len(self._where) > self._size:
            self._where.popitem(last=False)

    def candidates(self, domain: str, digest: str, exclude: str) -> list[str]:
        return [path for path in self._where.get((domain, digest), ()) if path != exclude]


class CopyEngine:
    """Copies images between registries through one :class:`RegistryClient`.

    One engine serves many concurrent copies; it remembers which target repositories hold
    which blobs (up to ``known_blobs`` entries) to mount them instead of uploading again.
    ``max_concurrent_blobs`` bounds the blob transfers of one copy. With ``referrers``, what
    refers to the image's manifests (signatures, attestations, SBOMs) is copied with it,
    while its blobs are, and waited for before its tag (see :class:`_Referrers`).
    """

    def __init__(
        self,
        client: RegistryClient,
        *,
        max_concurrent_blobs: int = 6,
        known_blobs: int = 20_000,
        referrers: ReferrerSettings | None = None,
    ) -> None:
        if max_concurrent_blobs < 1:
            raise ValueError("max_concurrent_blobs must be at least 1")
        self.client = client
        # None: images are copied without their referrers
        self.referrers = referrers
        self.api_memory = ApiMemory()
        self.max_concurrent_blobs = max_concurrent_blobs
        self.known = _KnownBlobs(known_blobs)
        # (target domain, digest) -> set when that blob's upload by one of this engine's copies
        # ends: a concurrent copy needing the same blob waits for it, then mounts it (an entry
        # lives only while its upload runs, so there are at most as many as transfers).
        self.uploading: dict[tuple[str, str], asyncio.Event] = {}
        # (target repository, filtered index digest) -> (source index digest, platforms): a
        # re-check of a platform-filtered copy then needs no GET on the source either.
        self.filtered: _Bounded[tuple[str, str], tuple[str, tuple[Platform, ...] | None]] = (
            _Bounded(4096)
        )

    async def copy(
        self,
        source: ImageReference | str,
        target: ImageReference | str,
        *,
        platforms: Sequence[Platform | str] | None = None,
        source_credentials: CredentialsProvider | None = None,
        progress: ProgressCallback | None = None,
    ) -> CopyResult:
        """Copy ``source`` to ``target`` (full references; the target's tag is pushed).

        ``platforms``: None for every platform of an index, or platforms such as
        ``["linux/amd64", "linux/arm64"]`` (see the module notes on digests).
        ``source_credentials`` overrides the client's provider for the source.
        Raises :class:`~swapper.errors.CopyError`; its ``reason`` says why.
        """
        src_ref = parse(source) if isinstance(source, str) else source
        dst_ref = parse(target) if isinstance(target, str) else target
        selectors = None
        if platforms is not None:
            selectors = tuple(
                p if isinstance(p, Platform) else Platform.parse(p) for p in platforms
            )
        job = _Job(
            self,
            self.client.repository(src_ref, credentials=source_credentials),
            self.client.repository(dst_ref, push=True),
            progress,
        )
        return await job.run(src_ref, dst_ref, selectors or None)


class _Job:
    def __init__(
        self,
        engine: CopyEngine,
        src: Repository,
        dst: Repository,
        progress: ProgressCallback | None,
    ) -> None:
        self.engine = engine
        self.retry = engine.client.retry
        self.src = src
        self.dst = dst
        self.progress = progress
        self.semaphore = asyncio.Semaphore(engine.max_concurrent_blobs)
        self.checks = asyncio.Semaphore(4 * engine.max_concurrent_blobs)
        self.blob_tasks: dict[str, asyncio.Task[None]] = {}
        self.group: asyncio.TaskGroup | None = None
        self.manifests_pushed = 0
        self.manifests_skipped = 0
        self.blobs_copied = 0
        self.blobs_skipped = 0
        self.blobs_mounted = 0
        self.bytes_copied = 0
        self.blobs_total = 0
        self.blobs_done = 0
        self.bytes_total = 0
        self.bytes_done = 0

    def emit(self, kind: ProgressKind, digest: str, size: int, transferred: int = 0) -> None:
        if self.progress is not None:
            self.progress(
                ProgressEvent(
                    kind,
                    digest,
                    size,
                    transferred,
                    self.blobs_total,
                    self.blobs_done,
                    self.bytes_total,
                    self.bytes_done,
                )
            )

    async def run(
        self,
        src_ref: ImageReference,
        dst_ref: ImageReference,
        selectors: tuple[Platform, ...] | None,
    ) -> CopyResult:
        started = time.perf_counter()
        source_reference = src_ref.digest or src_ref.tag or "latest"
        reference = dst_ref.tag or dst_ref.digest or "latest"
        # HEAD first, source and target at once: a HEAD is no pull for Docker Hub's rate limit,
        # and an image the target already has is then done without a GET on the source (a
        # source pinned by digest is not asked at all).
        if src_ref.digest is not None:
            source_digest: str | None = src_ref.digest
            existing = await self.dst.head_manifest(reference)
        else:
            head, existing = await _both(
                self.src.head_manifest(source_reference), self.dst.head_manifest(reference)
            )
            if head is None:
                raise CopyError(
                    f"{src_ref} does not exist (HEAD answered 404)", CopyReason.NOT_FOUND
                )
            source_digest = head.digest or None  # None: the registry sent no digest
        if source_digest is not None:
            _check_pin(src_ref, dst_ref, source_digest)
            if existing is not None and dst_ref.digest in (None, existing.digest):
                pushed_for = self.engine.filtered.get((self.dst.name, existing.digest))
                if existing.digest == source_digest or pushed_for == (source_digest, selectors):
                    return self.present(src_ref, dst_ref, existing, source_digest, started)
        top = await self.src.get_manifest(source_reference)
        _check_pin(src_ref, dst_ref, top.digest)
        if existing is None or existing.digest != top.digest:
            # Blobs will be read: their connections' handshakes happen while the manifests are
            # (a few wasted when the registry redirects downloads elsewhere).
            ahead = self.engine.max_concurrent_blobs
            self.src.warm(ahead if top.is_index else min(ahead, len(top.blobs)))
        push = top
        children: tuple[Descriptor, ...] = top.children if top.is_index else ()
        existing = await self.dst.head_manifest(reference)
        if existing is not None and existing.digest == top.digest:
            return self.result(src_ref, dst_ref, top, top, children, started, present=True)
        if top.is_index and selectors is not None and dst_ref.digest is None:
            selected, left_out = select_children(top, selectors)
            if not any(child.platform and child.platform.os != "unknown" for child in selected):
                wanted = ", ".join(str(p) for p in selectors)
                raise CopyError(
                    f"{src_ref} has no manifest for {wanted}", CopyReason.PLATFORM_NOT_FOUND
                )
            children = selected
            if left_out:
                filtered = filtered_index(top, selected)
                self.engine.filtered.put((self.dst.name, filtered.digest), (top.digest, selectors))
                if existing is not None and existing.digest == filtered.digest:
                    return self.result(src_ref, dst_ref, top, filtered, children, started, True)
                if not await self._all_present(left_out):
                    push = filtered
        # The referrers are copied while the image's blobs are, and waited for before the tag:
        # once the mirror has the image, its signatures are there too.
        finding: asyncio.Task[ReferrerReport] | None = None
        if self.engine.referrers is not None:
            subjects = [top.digest, *(child.digest for child in children)]
            finding = asyncio.create_task(_Referrers(self, self.engine.referrers).run(subjects))
        try:
            try:
                async with asyncio.TaskGroup() as group:
                    self.group = group
                    if top.is_index:
                        await self._children(children)
                    else:
                        await self._blobs(top.blobs)
            except BaseExceptionGroup as failures:
                raise _first_error(failures) from None
            referrers = await finding if finding is not None else ReferrerReport()
        finally:
            if finding is not None and not finding.done():
                finding.cancel()
                await asyncio.gather(finding, return_exceptions=True)
        await self.dst.put_manifest(reference, push)
        self.manifests_pushed += 1
        self.emit("manifest-pushed", push.digest, len(push.data))
        done = self.result(src_ref, dst_ref, top, push, children, started, present=False)
        return dataclasses.replace(done, referrers=referrers)

    def present(
        self,
        src_ref: ImageReference,
        dst_ref: ImageReference,
        existing: Descriptor,
        source_digest: str,
        started: float,
    ) -> CopyResult:
        """The target already has the image (nothing was read from the source)."""
        return CopyResult(
            source=str(src_ref),
            target=str(dst_ref),
            digest=existing.digest,
            source_digest=source_digest,
            media_type=existing.media_type,
            already_present=True,
            filtered=existing.digest != source_digest,
            platforms=(),
            manifests_pushed=0,
            manifests_skipped=0,
            blobs_copied=0,
            blobs_skipped=0,
            blobs_mounted=0,
            bytes_copied=0,
            duration=time.perf_counter() - started,
        )

    def result(
        self,
        src_ref: ImageReference,
        dst_ref: ImageReference,
        top: Manifest,
        pushed: Manifest,
        children: Iterable[Descriptor],
        started: float,
        present: bool,
    ) -> CopyResult:
        return CopyResult(
            source=str(src_ref),
            target=str(dst_ref),
            digest=pushed.digest,
            source_digest=top.digest,
            media_type=pushed.media_type,
            already_present=present,
            filtered=pushed.digest != top.digest,
            platforms=tuple(
                str(child.platform)
                for child in children
                if child.platform is not None and child.platform.os != "unknown"
            ),
            manifests_pushed=self.manifests_pushed,
            manifests_skipped=self.manifests_skipped,
            blobs_copied=self.blobs_copied,
            blobs_skipped=self.blobs_skipped,
            blobs_mounted=self.blobs_mounted,
            bytes_copied=self.bytes_copied,
            duration=time.perf_counter() - started,
        )

    async def _all_present(self, children: Iterable[Descriptor]) -> bool:
        found = await asyncio.gather(*(self.dst.head_manifest(c.digest) for c in children))
        return all(item is not None for item in found)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self.group is not None
        return self.group.create_task(coroutine)

    async def _children(self, children: Iterable[Descriptor]) -> None:
        await asyncio.gather(*(self._spawn(self._child(child)) for child in children))

    async def _child(self, descriptor: Descriptor) -> None:
        if await self.dst.head_manifest(descriptor.digest) is not None:
            self.manifests_skipped += 1
            self.emit("manifest-present", descriptor.digest, descriptor.size)
            return
        manifest = await self.src.get_manifest(descriptor.digest)
        if manifest.is_index:
            await self._children(manifest.children)
        else:
            await self._blobs(manifest.blobs)
        await self.dst.put_manifest(descriptor.digest, manifest)
        self.manifests_pushed += 1
        self.emit("manifest-pushed", manifest.digest, len(manifest.data))

    async def _blobs(self, blobs: Iterable[Descriptor]) -> None:
        tasks = []
        for blob in blobs:
            if blob.nondistributable and blob.urls:
                continue
            task = self.blob_tasks.get(blob.digest)
            if task is None:
                self.blobs_total += 1
                self.bytes_total += blob.size
                task = self.blob_tasks[blob.digest] = self._spawn(self._blob(blob))
            tasks.append(task)
        await asyncio.gather(*tasks)

    async def _blob(self, blob: Descriptor) -> None:
        known = self.engine.known
        domain = self.dst.domain
        key = (domain, blob.digest)
        uploading = self.engine.uploading
        while True:
            # Another copy of this engine uploads this blob to this registry (images sharing
            # base layers, copied at once): wait for it, then mount from its repository.
            other = uploading.get(key)
            if other is not None:
                await other.wait()
            # Existence checks and mounts are cheap: more of them run at once than transfers.
            async with self.checks:
                if await self.dst.blob_exists(blob.digest):
                    self._done(blob, "blob-skipped")
                    self.blobs_skipped += 1
                    known.add(domain, blob.digest, self.dst.path)
                    return
                location = None
                candidates = known.candidates(domain, blob.digest, self.dst.path)
                if self.src.domain == domain and self.src.path != self.dst.path:
                    candidates.insert(0, self.src.path)
                for path in candidates[:2]:
                    try:
                        mount = await self.dst.mount_blob(blob.digest, path)
                    except CopyError:
                        continue  # no access to that repository, or it lost the blob: upload
                    if mount.mounted:
                        self._done(blob, "blob-mounted")
                        self.blobs_mounted += 1
                        known.add(domain, blob.digest, self.dst.path)
                        return
                    location = mount.location
                    break
            if key not in uploading:
                break
            if location is not None:  # another copy started uploading it meanwhile
                await self.dst.cancel_upload(location)
        uploading[key] = done = asyncio.Event()
        try:
            async with self.semaphore:
                await self._transfer(blob, location)
            self.blobs_copied += 1
            self.bytes_copied += blob.size
            self._done(blob, "blob-copied")
            known.add(domain, blob.digest, self.dst.path)
        finally:
            del uploading[key]
            done.set()

    def _done(self, blob: Descriptor, kind: ProgressKind) -> None:
        self.blobs_done += 1
        if kind != "blob-copied":
            self.bytes_done += blob.size
        self.emit(kind, blob.digest, blob.size, blob.size if kind == "blob-copied" else 0)

    async def _transfer(self, blob: Descriptor, location: str | None) -> None:
        """Stream one blob from source to target, from the start again on transient failures."""
        attempt = 0
        reauthenticated = False
        while True:
            sent = [0]
            self.emit("blob-started", blob.digest, blob.size)
            # The upload session is opened while the download starts: one round trip less.
            session = None
            used = False
            if location is None:
                session = asyncio.create_task(self.dst.start_upload(retry=False))
            try:
                async with (
                    self.src.open_blob(blob.digest, retry=False) as chunks,
                    aclosing(self._verified(chunks, blob, sent)) as verified,
                ):
                    if session is not None:
                        location = await session
                    used = True
                    await self.dst.upload_blob(
                        verified, blob.digest, blob.size, location=location, retry=False
                    )
                return
            except (TransientCopyError, TransportError) as exc:
                error = (
                    exc
                    if isinstance(exc, TransientCopyError)
                    else transport_error(exc, f"blob {blob.digest}")
                )
                if not isinstance(error, TransientCopyError):
                    raise error from exc
                wait = self._wait(error, attempt)
                if wait is None:
                    raise error from exc
            except CopyError as exc:
                if exc.reason != CopyReason.UNAUTHORIZED or reauthenticated:
                    raise
                reauthenticated = True  # a token that ran out during a long upload
                wait = 0.0
            finally:
                if session is not None and not used:
                    await _abandon(session, self.dst)
            self.bytes_done -= sent[0]
            self.emit("blob-retried", blob.digest, blob.size)
            location = None
            await asyncio.sleep(wait)
            attempt += 1

    def _wait(self, error: TransientCopyError, attempt: int) -> float | None:
        if attempt + 1 >= self.retry.attempts:
            return None
        if error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.retry.max_retry_after else None
        return self.retry.delay(attempt)

    async def _verified(
        self, chunks: AsyncIterator[bytes], blob: Descriptor, sent: list[int]
    ) -> AsyncGenerator[bytes, None]:
        """Pass ``chunks`` through as they are, hashing them once; the chunk that completes the
        blob is held back until the source's stream has ended and digest and size match.

        A failure reading the source (a reset, or nothing received for the blob idle timeout)
        is raised as the source's :class:`TransientCopyError`, not left to the upload it
        feeds to be reported as the target's."""
        hasher = hashlib.new(check_digest(blob.digest))
        size = blob.size
        seen = 0
        last: bytes | None = None
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                seen += len(chunk)
                if seen > size:
                    raise CopyError(
                        f"blob {blob.digest} from {self.src.name} is longer than its {size} bytes",
                        CopyReason.DIGEST_MISMATCH,
                    )
                hasher.update(chunk)
                if seen < size:
                    yield chunk
                    self._sent(blob, sent, len(chunk))
                else:
                    last = chunk
        except TransportError as exc:
            raise transport_error(exc, f"blob {blob.digest} from {self.src.name}") from exc
        digest = f"{blob.digest.split(':', 1)[0]}:{hasher.hexdigest()}"
        if seen != size or digest != blob.digest:
            raise CopyError(
                f"blob {blob.digest} from {self.src.name}: received {seen} bytes with digest "
                f"{digest} (expected {size} bytes)",
                CopyReason.DIGEST_MISMATCH,
            )
        if last is not None:
            yield last
            self._sent(blob, sent, len(last))

    def _sent(self, blob: Descriptor, sent: list[int], count: int) -> None:
        sent[0] += count
        self.bytes_done += count
        self.emit("blob-progress", blob.digest, blob.size, sent[0])


class _Referrers:
    """Copies the referrers of a copy's manifests, level by level, to ``settings.depth``.

    Each referrer is copied as the source serves it (its digest unchanged): its blobs or
    children, then the manifest by digest, or under its tag for cosign's tag scheme. A
    referrer that cannot be copied is counted and reported, never raised: the image copy goes
    on. A digest is looked at once per copy (a referrer listed again is skipped; one that names
    a manifest it hangs from is a loop). When the target lacks the referrers API, the
    referrers tag fallback index of each subject is brought up to date there."""

    def __init__(self, job: _Job, settings: ReferrerSettings) -> None:
        self.job = job
        self.settings = settings
        self.finder = ReferrerFinder(job.src, api_memory=job.engine.api_memory)
        self.counts = dict.fromkeys(REFERRER_RESULTS, 0)
        self.problems: list[str] = []
        self.limit = asyncio.Semaphore(settings.concurrency)
        # subject -> descriptors of its referrers now in the target (for the tag fallback)
        self.by_subject: dict[str, list[dict[str, Any]]] = {}

    def problem(self, result: str, text: str) -> None:
        self.counts[result] += 1
        if len(self.problems) < 50:  # bounded: a hostile index lists thousands
            self.problems.append(text)

    async def run(self, subjects: Sequence[str]) -> ReferrerReport:
        started = time.perf_counter()
        try:
            await self.finder.tags()  # read once, before the finds run side by side
            ancestors: dict[str, frozenset[str]] = {s: frozenset() for s in subjects}
            seen: set[tuple[str, str | None]] = {(s, None) for s in subjects}
            level = list(dict.fromkeys(subjects))
            for depth in range(self.settings.depth + 1):
                if not level:
                    break
                # The first alone: a registry that answers it 404 is then not asked again.
                first = await self._find(level[0])
                founds = [first, *await asyncio.gather(*(self._find(s) for s in level[1:]))]
                work: list[tuple[Referrer, str]] = []
                for subject, found in zip(level, founds, strict=True):
                    for referrer in found:
                        path = ancestors[subject] | {subject}
                        if referrer.digest in path:
                            self.problem(
                                "loop",
                                f"referrer loop: {referrer.digest} is listed as a referrer of "
                                f"{subject}, which it refers to itself; not followed",
                            )
                            continue
                        key = (referrer.digest, referrer.tag)
                        if key in seen:
                            continue
                        seen.add(key)
                        if depth == self.settings.depth:
                            self.problem(
                                "too-deep",
                                f"referrer {referrer.digest} of {subject} is deeper than "
                                f"{self.settings.depth} levels; not copied",
                            )
                            continue
                        work.append((referrer, subject))
                copied = await asyncio.gather(*(self._copy(r, s) for r, s in work))
                level = []
                for (referrer, subject), ok in zip(work, copied, strict=True):
                    if ok and referrer.digest not in ancestors:
                        ancestors[referrer.digest] = ancestors[subject] | {subject}
                        level.append(referrer.digest)
            await self._update_fallback()
        except CopyError as exc:  # the target's fallback tags: counted like a referrer's
            self.problem("failed", f"referrers: {exc}")
        return ReferrerReport(
            tuple(self.counts.items()), tuple(self.problems), time.perf_counter() - started
        )

    async def _find(self, subject: str) -> tuple[Referrer, ...]:
        async with self.limit:
            try:
                found = await self.finder.find(subject)
            except CopyError as exc:
                self.problem("failed", f"finding the referrers of {subject}: {exc}")
                return ()
        for text in found.problems:
            self.problem("malformed", text)
        return found.referrers

    async def _copy(self, referrer: Referrer, subject: str) -> bool:
        """Copy one referrer; True when the target has it afterwards (copied or present)."""
        job = self.job
        listed = referrer.artifact_type if referrer.artifact_type not in IMAGE_CONFIGS else ""
        if listed and not type_allowed(listed, self.settings.types):
            self.counts["filtered"] += 1
            return False
        name = f"{referrer.tag or referrer.digest} (referrer of {subject})"
        async with self.limit:
            try:
                manifest = await job.src.get_manifest(referrer.digest)
                if not type_allowed(listed or artifact_type_of(manifest), self.settings.types):
                    self.counts["filtered"] += 1
                    return False
                there = await job.dst.head_manifest(referrer.tag or referrer.digest)
                if there is not None and there.digest == manifest.digest:
                    self.counts["present"] += 1
                else:
                    await self._push(manifest, referrer.tag)
                    self.counts["copied"] += 1
            except CopyError as exc:
                self.problem("failed", f"{name} from {job.src.name}: {exc.reason}: {exc}")
                return False
        real_subject = subject_of(manifest)
        if referrer.tag is None and real_subject is not None:
            self.by_subject.setdefault(real_subject, []).append(descriptor_for(manifest))
        return True

    async def _push(self, manifest: Manifest, tag: str | None) -> None:
        """The manifest's blobs or children, then the manifest, on a job of its own: a
        failure here fails this referrer only."""
        part = _Job(self.job.engine, self.job.src, self.job.dst, None)
        try:
            async with asyncio.TaskGroup() as group:
                part.group = group
                if manifest.is_index:
                    await part._children(manifest.children)
                else:
                    await part._blobs(manifest.blobs)
        except BaseExceptionGroup as failures:
            error = _first_error(failures)
            if isinstance(error, TransportError):
                raise transport_error(error, f"referrer {manifest.digest}") from None
            raise error from None
        await self.job.dst.put_manifest(tag or manifest.digest, manifest)

    async def _update_fallback(self) -> None:
        """Where the target has no referrers API, the fallback index of each subject lists the
        referrers copied for it (the spec's rule for a client pushing a manifest with a
        subject to such a registry)."""
        if not self.by_subject:
            return
        dst = self.job.dst
        memory = self.job.engine.api_memory
        first = next(iter(self.by_subject))
        if not memory.lacks_api(dst.domain):
            if await dst.get_referrers(first) is not None:
                return  # the target indexes subjects itself
            memory.saw_no_api(dst.domain)
        for subject, entries in self.by_subject.items():
            tag = fallback_tag(subject)
            try:
                existing: Manifest | None = await dst.get_manifest(tag)
            except CopyError as exc:
                if exc.reason != CopyReason.NOT_FOUND:
                    raise
                existing = None
            data = merged_index(existing, entries)
            if data is not None:
                await dst.put_manifest(tag, Manifest(data, OCI_INDEX, digest_of(data)))


async def _abandon(session: asyncio.Task[str], repository: Repository) -> None:
    """Tidy up an upload session opened for a transfer whose download then failed."""
    if not session.done():
        session.cancel()
        await asyncio.gather(session, return_exceptions=True)
        return
    if session.cancelled() or session.exception() is not None:
        return
    task = asyncio.current_task()
    if task is None or not task.cancelling():  # a deadline does not wait for tidying up
        await repository.cancel_upload(session.result())


def _check_pin(src_ref: ImageReference, dst_ref: ImageReference, digest: str) -> None:
    if dst_ref.digest is not None and dst_ref.digest != digest:
        raise CopyError(
            f"{dst_ref} pins {dst_ref.digest} but {src_ref} is {digest}", CopyReason.DIGEST_MISMATCH
        )


async def _both(first: Coroutine[Any, Any, _A], second: Coroutine[Any, Any, _B]) -> tuple[_A, _B]:
    """Both results; on a failure the other is cancelled and the first error raised."""
    try:
        async with asyncio.TaskGroup() as group:
            one = group.create_task(first)
            two = group.create_task(second)
    except BaseExceptionGroup as failures:
        raise _first_error(failures) from None
    return one.result(), two.result()


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a failed task group: the first that is not a cancellation."""
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending[:0] = list(error.exceptions)
        elif not isinstance(error, asyncio.CancelledError):
            return error
    return asyncio.CancelledError()
