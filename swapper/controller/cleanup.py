"""Cleanup: delete mirrored images nobody runs any more, safe when clusters share a registry.

The elected leader runs one pass at most every ``cleanup.interval``. A pass walks every
repository under swapper's endpoint (a page at a time, through the target's
:class:`~swapper.targets.admin.RegistryAdmin`) and deletes an image manifest only when **all**
of these hold, checked in this order (the first that fails is the ``reason`` the image is
counted as kept under, in ``swapper_cleanup_kept_total{reason}``):

1. ``in-use``: no pod of this cluster uses it: neither its digest nor any of its tags is among
   the references ``in_use()`` gives (the pod watch's
   :meth:`~swapper.controller.backfill.PodRecord.in_use` targets);
2. ``in-flight``: no copy into its repository is queued or running (``in_flight(repository)``);
3. ``not-swappers``: swapper wrote it. Every image swapper ran somewhere carries at least one
   usage mark (:mod:`swapper.mirror.marks`: the leader marks what pods run, ``swapper mirror``
   its copy when its config turns cleanup on); an image without any mark was pushed by someone
   else (or is the child manifest of an index, which is never marked itself) and is never
   deleted;
4. ``young``: it was pushed longer ago than ``cleanup.retention``, where the registry says when
   (ECR, Artifact Registry). A generic OCI registry does not: there the marks stand in for it,
   as an image is at least as old as its oldest mark, and rule 6 requires every mark to be
   older than the retention;
5. ``malformed-mark``: every mark on it reads back as what swapper writes. A tag of the marks'
   scheme that another tool wrote, or changed, keeps its image (and itself: cleanup never
   deletes it) and is reported with a log line each pass;
6. ``young-mark``: no cluster's mark on it is younger than ``cleanup.retention``; this is what
   keeps an image another cluster still runs;
7. ``dry-run``: ``cleanup.dryRun`` is off. In a dry run the image is logged
   (``cleanup_would_delete``) and counted, and nothing is deleted.

**Deleting.** In-use and in-flight are asked again just before. Then the image's tags go first
(all of them are swapper's: the repository is under its endpoint and none of the tags is in
use), then the manifest by digest; a registry that deletes by digest only (docker-registry
refuses tag deletes) gets the manifest delete, which removes its tags with it. Then the image's
marks go (by tag, or by digest likewise), and what is tagged off its digest: cosign's
``sha256-<hex>.sig``/``.att``/``.sbom`` and the referrers tag fallback ``sha256-<hex>``, and
theirs in turn, :data:`REFERRER_DEPTH` levels deep (a manifest tagged off two images is kept).
Those are never judged on their own. An image deleted and its marks not (a failure in
between) leaves only marks behind, never an image without its marks.

**Failures.** A registry that refuses deletes (:class:`~swapper.errors.DeleteRefused`: deletes
switched off, no permission) ends the pass: one log line (``cleanup_delete_refused``, with the
registry's reason and what to change) and ``kept{reason="refused"}`` once per pass, never a
retry loop. Any other registry failure ends the pass likewise (``cleanup_pass_failed``); the
next pass starts over. At most ``cleanup.maxDeletes`` images are deleted per pass.

**Memory.** Listings are paged and never held whole. Per repository, a pass holds that
repository's marks (a few per image in use) and the images it is about to delete (at most
``maxDeletes``); per pass, the references pods use.

**Empty repositories.** With ``cleanup.deleteEmptyRepositories``, a repository the pass
emptied (no manifest left, marks included) is deleted in the registry's one step that cannot
take an image pushed meanwhile (ECR's ``DeleteRepository`` without ``force``). OCI
distribution has no such call and Artifact Registry's package delete takes its versions with
it: there one log line says so, once. Orphan marks (marks whose image someone else deleted)
are kept, and keep their repository.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from swapper.config import CleanupSettings
from swapper.errors import DeleteRefused, MalformedMark, RegistryError
from swapper.images import parse
from swapper.logs import get_logger
from swapper.metrics import Metrics
from swapper.mirror.marks import (
    Mark,
    digest_prefix,
    is_mark_tag,
    parse_mark_tag,
    utc_now,
)
from swapper.targets.admin import RegistryAdmin, StoredManifest

log = get_logger("swapper.controller")

IN_USE = "in-use"
IN_FLIGHT = "in-flight"
NOT_SWAPPERS = "not-swappers"
YOUNG = "young"
MALFORMED_MARK = "malformed-mark"
YOUNG_MARK = "young-mark"
DRY_RUN = "dry-run"
REFUSED = "refused"
KEPT_REASONS = (
    IN_USE,
    IN_FLIGHT,
    NOT_SWAPPERS,
    YOUNG,
    MALFORMED_MARK,
    YOUNG_MARK,
    DRY_RUN,
    REFUSED,
)
"""The ``reason`` labels of ``swapper_cleanup_kept_total``."""

_NOT_READY_WAIT = 30.0  # seconds between looks at a pod watch that has not listed yet


class MarkReader(Protocol):
    """Reads one mark back (:class:`~swapper.mirror.marks.Marker` is one)."""

    async def read(self, repository: str, tag: str) -> Mark:
        """The mark under ``tag``; raises MalformedMark or RegistryError."""
        ...


@dataclass(frozen=True, slots=True)
class CleanupOptions:
    """What a pass acts on (from ``cleanup``); durations in seconds."""

    retention: float = 30 * 86_400.0
    interval: float = 86_400.0
    dry_run: bool = True
    delete_empty_repositories: bool = False
    page_size: int = 100
    max_deletes: int = 1000

    @classmethod
    def of(cls, settings: CleanupSettings) -> CleanupOptions:
        return cls(
            retention=settings.retention,
            interval=settings.interval,
            dry_run=settings.dry_run,
            delete_empty_repositories=settings.delete_empty_repositories,
            page_size=settings.page_size,
            max_deletes=settings.max_deletes,
        )


@dataclass
class PassReport:
    """What one pass did: ``deleted`` and ``would_delete`` as ``(repository, digest)``."""

    deleted: list[tuple[str, str]] = field(default_factory=list)
    would_delete: list[tuple[str, str]] = field(default_factory=list)
    kept: Counter[str] = field(default_factory=Counter)
    marks_deleted: int = 0
    referrers_deleted: int = 0
    repositories_deleted: int = 0
    refused: str = ""  # the registry's refusal that ended the pass
    error: str = ""  # another failure that ended the pass


@dataclass(frozen=True, slots=True)
class _MarkRef:
    tag: str
    digest: str  # the mark manifest's own digest
    malformed: str = ""  # why it cannot be trusted without reading it


@dataclass(frozen=True, slots=True)
class _Doomed:
    digest: str
    tags: tuple[str, ...]
    marks: tuple[_MarkRef, ...]
    referrers: tuple[_MarkRef, ...] = ()


REFERRER_TAG = re.compile(r"sha256-([0-9a-f]{64})(\.(?:sig|att|sbom))?")
"""The tags that hang what refers to an image off its digest: cosign's ``.sig``, ``.att`` and
``.sbom`` tags, and the OCI referrers tag fallback (``sha256-<hex>`` alone, an index)."""

REFERRER_DEPTH = 3
"""Levels of referrers deleted with an image (a signature on an SBOM is two), as copied."""


def referrer_of(tag: str) -> str:
    """The hex digest a referrer tag hangs off, or "" for any other tag."""
    found = REFERRER_TAG.fullmatch(tag)
    return found.group(1) if found else ""


_NOT_READY = "the pod watch is listing again"
"""The error of a pass ended because ``ready()`` turned false mid-pass."""


def _referrers_of(digest: str, referrers: dict[str, list[_MarkRef]]) -> tuple[_MarkRef, ...]:
    """The referrer tags hanging off ``digest``, and off those, to :data:`REFERRER_DEPTH`
    levels (each tagged manifest once)."""
    found: dict[str, _MarkRef] = {}
    level = [digest.removeprefix("sha256:")]
    for _ in range(REFERRER_DEPTH):
        following = []
        for hex_digest in level:
            for ref in referrers.get(hex_digest, ()):
                if ref.tag not in found:
                    found[ref.tag] = ref
                    following.append(ref.digest.removeprefix("sha256:"))
        level = following
    return tuple(found.values())


def references_in_use(targets: Iterable[str]) -> dict[str, set[str]]:
    """Repository path -> the tags and digests of it that ``targets`` (full mirror
    references) name. A reference that does not parse is skipped."""
    found: dict[str, set[str]] = {}
    for target in targets:
        try:
            ref = parse(target)
        except Exception:  # noqa: S112 - not an image reference: nothing it could keep
            continue
        names = found.setdefault(ref.path, set())
        if ref.digest:
            names.add(ref.digest)
        names.add(ref.tag or ("latest" if not ref.digest else ""))
        names.discard("")
    return found


class Cleanup:
    """Deletes the images no cluster runs any more (see the module docstring).

    ``admin``: the target registry. ``marks``: reads a mark back. ``in_use()``: the full mirror
    references this cluster's pods use now. ``in_flight(repository)``: whether a copy into
    that repository is queued or running. ``ready()``: whether ``in_use`` can be trusted yet
    (the pod watch has listed every pod): no pass starts before. ``clock``: wall-clock time
    (timezone-aware), against which pushes and marks are aged; ``sleep`` waits between passes.
    ``on_deleted(repository, digest, tags)``: called for each image deleted (the wiring
    forgets it in the existence cache, so admission asks the registry again rather than swap a
    pod to an image that is gone).
    """

    def __init__(
        self,
        admin: RegistryAdmin,
        marks: MarkReader,
        in_use: Callable[[], Iterable[str]],
        in_flight: Callable[[str], bool],
        metrics: Metrics,
        options: CleanupOptions,
        *,
        ready: Callable[[], bool] = lambda: True,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_deleted: Callable[[str, str, tuple[str, ...]], None] = lambda *_: None,
    ) -> None:
        self.admin = admin
        self.on_deleted = on_deleted
        self.marks = marks
        self.in_use = in_use
        self.in_flight = in_flight
        self.metrics = metrics
        self.options = options
        self.ready = ready
        self.clock = clock
        self.sleep = sleep
        self.last_pass: datetime | None = None
        self._digest_only = False  # this pass found tag deletes refused: delete by digest
        self._told_no_repository_deletes = False

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Forever: one pass whenever ``interval`` has passed since the last one (kept across
        leaderships: a leader that comes back does not start one sooner) and the pod watch
        is ready."""
        while True:
            wait = self.due_in()
            if wait > 0:
                await self.sleep(wait)
            elif not self.ready():
                await self.sleep(_NOT_READY_WAIT)
            else:
                await self.run_pass()

    def due_in(self) -> float:
        """Seconds until the next pass may start (0 or less: now)."""
        if self.last_pass is None:
            return 0.0
        return self.options.interval - (self.clock() - self.last_pass).total_seconds()

    # -- one pass --------------------------------------------------------------------------

    async def run_pass(self) -> PassReport:
        """One pass over every repository (see the module docstring)."""
        self.last_pass = self.clock()
        self._digest_only = False
        report = PassReport()
        result = "done"
        try:
            async for repository in self.admin.list_repositories(page_size=self.options.page_size):
                if not self.ready():
                    report.error = _NOT_READY
                if not report.error:
                    await self._repository(repository, report)
                if report.error:
                    break
                if len(report.deleted) >= self.options.max_deletes:
                    log.info("cleanup_pass_limit", max_deletes=self.options.max_deletes)
                    break
        except DeleteRefused as exc:  # a manifest delete (refused tag deletes are handled)
            result, report.refused = "refused", str(exc)
            self._keep(report, REFUSED)
            log.warning(
                "cleanup_delete_refused",
                error=str(exc),
                action="the pass ends here; the next pass tries again (cleanup.interval)",
            )
        except RegistryError as exc:
            result, report.error = "error", str(exc)
            log.warning("cleanup_pass_failed", error=str(exc))
        if report.error == _NOT_READY:
            # What pods use cannot be told now: stop, and pass again once it can.
            result = "error"
            self.last_pass = None
            log.warning("cleanup_pass_failed", error=report.error)
        self.metrics.cleanup_passes.labels(result).inc()
        log.info(
            "cleanup_pass",
            result=result,
            dry_run=self.options.dry_run,
            deleted=len(report.deleted),
            would_delete=len(report.would_delete),
            marks_deleted=report.marks_deleted,
            kept=dict(report.kept),
        )
        return report

    async def _repository(self, repository: str, report: PassReport) -> None:
        size = self.options.page_size
        marks, referrers = await self._marks(repository, report)
        used = references_in_use(self.in_use()).get(repository, set())
        doomed: list[_Doomed] = []
        budget = self.options.max_deletes - len(report.deleted)
        async for manifest in self.admin.list_manifests(repository, page_size=size):
            if any(is_mark_tag(tag) for tag in manifest.tags):
                continue  # a mark: goes with its image
            if manifest.tags and all(referrer_of(tag) for tag in manifest.tags):
                continue  # a signature, attestation, SBOM or referrers index: goes with its image
            found = marks.get(digest_prefix(manifest.digest), [])
            reason = await self._judge(repository, manifest, found, used)
            if reason is not None:
                self._keep(report, reason)
            elif self.options.dry_run:
                self._keep(report, DRY_RUN)
                report.would_delete.append((repository, manifest.digest))
                log.info(
                    "cleanup_would_delete",
                    repository=repository,
                    digest=manifest.digest,
                    tags=list(manifest.tags),
                )
            elif len(doomed) < budget:
                hung = _referrers_of(manifest.digest, referrers)
                doomed.append(_Doomed(manifest.digest, manifest.tags, tuple(found), hung))
        if doomed:
            await self._delete_all(repository, doomed, report)
            if self.options.delete_empty_repositories and not report.error:
                await self._delete_if_empty(repository, report)

    async def _delete_if_empty(self, repository: str, report: PassReport) -> None:
        """``cleanup.deleteEmptyRepositories``: the repository this pass emptied goes, in the
        registry's one safe step (a registry without one is said once, then not asked)."""
        if self._told_no_repository_deletes:
            return
        async for _ in self.admin.list_manifests(repository, page_size=1):
            return  # something is left: another image, a mark, someone else's push
        try:
            deleted = await self.admin.delete_repository(repository)
        except DeleteRefused as exc:
            self._told_no_repository_deletes = True
            log.warning(
                "cleanup_empty_repositories_kept",
                key="cleanup.deleteEmptyRepositories",
                reason=str(exc),
            )
            return
        if deleted:
            report.repositories_deleted += 1
            self.metrics.cleanup_deleted.labels("repository").inc()
            log.info("cleanup_repository_deleted", repository=repository)

    async def _marks(
        self, repository: str, report: PassReport
    ) -> tuple[dict[str, list[_MarkRef]], dict[str, list[_MarkRef]]]:
        """The repository's marks by the digest prefix their tag names, and its referrer tags
        by the hex digest they hang off (first listing)."""
        found: dict[str, list[_MarkRef]] = {}
        referrers: dict[str, list[_MarkRef]] = {}
        size = self.options.page_size
        async for manifest in self.admin.list_manifests(repository, page_size=size):
            hung = {referrer_of(tag) for tag in manifest.tags}
            if len(hung) == 1 and "" not in hung:  # tagged off one image only: goes with it
                for tag in manifest.tags:
                    referrers.setdefault(referrer_of(tag), []).append(
                        _MarkRef(tag, manifest.digest)
                    )
            names = [tag for tag in manifest.tags if is_mark_tag(tag)]
            others = [tag for tag in manifest.tags if not is_mark_tag(tag)]
            for tag in names:
                named = parse_mark_tag(tag)
                if named is None:
                    log.warning(
                        "cleanup_malformed_mark",
                        repository=repository,
                        tag=tag,
                        problem="does not follow swapper-used-<cluster>-<32 hex>; kept",
                    )
                    self._keep(report, MALFORMED_MARK)
                    continue
                problem = f"also tagged {', '.join(others)}" if others else ""
                found.setdefault(named[1], []).append(_MarkRef(tag, manifest.digest, problem))
        return found, referrers

    async def _judge(
        self, repository: str, manifest: StoredManifest, marks: list[_MarkRef], used: set[str]
    ) -> str | None:
        """Why ``manifest`` is kept, or None when it may go (rules 1 to 6)."""
        if manifest.digest in used or any(tag in used for tag in manifest.tags):
            return IN_USE
        if self.in_flight(repository):
            return IN_FLIGHT
        if not marks:
            return NOT_SWAPPERS
        now = self.clock()
        retention = self.options.retention
        if (
            manifest.pushed_at is not None
            and (now - manifest.pushed_at).total_seconds() < retention
        ):
            return YOUNG
        mine = 0  # marks whose full digest is this image's (not another's sharing the prefix)
        for ref in marks:
            try:
                if ref.malformed:
                    raise MalformedMark(ref.malformed)
                mark = await self.marks.read(repository, ref.tag)
            except MalformedMark as exc:
                log.warning(
                    "cleanup_malformed_mark",
                    repository=repository,
                    tag=ref.tag,
                    digest=manifest.digest,
                    problem=f"{exc}; the mark and its image are kept",
                )
                return MALFORMED_MARK
            if mark.image_digest != manifest.digest:
                continue
            mine += 1
            if (now - mark.used_at).total_seconds() < retention:
                return YOUNG_MARK
        return None if mine else NOT_SWAPPERS

    # -- deleting --------------------------------------------------------------------------

    async def _delete_all(self, repository: str, doomed: list[_Doomed], report: PassReport) -> None:
        """Delete what the listing doomed, asking in-use and in-flight again first (and
        nothing when what pods use cannot be told any more: a pod watch restarted mid-pass
        has an empty cache until it has listed again)."""
        if not self.ready():
            report.error = _NOT_READY
            return
        used = references_in_use(self.in_use()).get(repository, set())
        for image in doomed:
            if image.digest in used or any(tag in used for tag in image.tags):
                self._keep(report, IN_USE)
                continue
            if self.in_flight(repository):
                self._keep(report, IN_FLIGHT)
                continue
            await self._delete(repository, image)
            self.on_deleted(repository, image.digest, image.tags)
            report.deleted.append((repository, image.digest))
            self.metrics.cleanup_deleted.labels("image").inc()
            log.info(
                "cleanup_deleted", repository=repository, digest=image.digest, tags=list(image.tags)
            )
            for ref in image.marks:
                await self._delete_tagged(repository, ref.tag, ref.digest)
                report.marks_deleted += 1
                self.metrics.cleanup_deleted.labels("mark").inc()
            for ref in image.referrers:
                await self._delete_tagged(repository, ref.tag, ref.digest)
                report.referrers_deleted += 1
                self.metrics.cleanup_deleted.labels("referrer").inc()

    async def _delete(self, repository: str, image: _Doomed) -> None:
        """Tags first, then the manifest (which on a digest-only registry takes the tags)."""
        for tag in image.tags:
            if self._digest_only or not await self._delete_tag(repository, tag):
                break
        await self._delete_manifest(repository, image.digest)

    async def _delete_tagged(self, repository: str, tag: str, digest: str) -> None:
        """A manifest swapper alone tags (a mark): by its tag, else by its digest."""
        if not self._digest_only and await self._delete_tag(repository, tag):
            return
        await self._delete_manifest(repository, digest)

    async def _delete_tag(self, repository: str, tag: str) -> bool:
        """True when the tag delete was answered (deleted or absent); False when the registry
        deletes by digest only (remembered for the rest of the pass)."""
        try:
            await self.admin.delete_tag(repository, tag)
        except DeleteRefused as exc:
            self._digest_only = True
            log.info("cleanup_tag_deletes_refused", error=str(exc), action="deleting by digest")
            return False
        return True

    async def _delete_manifest(self, repository: str, digest: str) -> None:
        """Raises DeleteRefused (which ends the pass) when the registry will not."""
        await self.admin.delete_manifest(repository, digest)

    def _keep(self, report: PassReport, reason: str) -> None:
        report.kept[reason] += 1
        self.metrics.cleanup_kept.labels(reason).inc()
