"""Backfill: the images of pods that already exist, mirrored as admission would have.

Two parts, both run by the leader only:

- :class:`PodPlanner` is the pod watch's transform. Each pod, as the list or the watch hands
  it over, is planned with the same filters and policies as admission
  (:func:`swapper.mutation.plan`), and only the copy jobs it would ask for are kept: a few
  strings per pod, not the pod. A pod too odd to plan (wrong shape, more containers than
  ``server.maxContainers``) is skipped with one log line and a metric.
- :class:`Backfill` looks at the distinct images of the watched pods whenever the cache changes.
  For each image not seen yet it runs the access check with the pods' own pull secrets (as
  admission would: a private image is copied only with the credentials of a pod that can read
  it), asks the mirror whether it has it, and hands a missing one to the copy queue at
  :attr:`~swapper.mirror.queue.Priority.BACKFILL`, below every admission copy. In dry-run it
  copies nothing and counts ``would-copy``; ``controller.prefill`` lets a dry-run install copy
  anyway (copies only: no patch, no Secret).

What it decided per image is kept in a bounded map (``controller.maxImages``), with a lifetime,
so an image is looked at again later (a present one after ``recheck_after``, an image that
could not be handed over after ``retry_after``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from swapper import pods
from swapper.access.verdicts import SourceAccess, Verdict
from swapper.aio import TTLMap
from swapper.errors import MalformedPod, QueueFull
from swapper.images import ImageReference
from swapper.logs import get_logger
from swapper.metrics import Metrics
from swapper.mirror.queue import CopyJob, CopyQueue, Priority, Requester
from swapper.mutation import Policy, copy_job, image_plan, plan, requester_of
from swapper.targets.base import TargetRegistry

log = get_logger("swapper.controller")

PodImages = tuple[CopyJob, ...]
"""The copies the config would ask for, for one pod."""

PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff"})
"""The kubelet's waiting reasons of a container that cannot pull its image."""

_STATUS_FIELDS = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")


@dataclass(frozen=True, slots=True)
class Stuck:
    """A container waiting to pull a mirror image (``ErrImagePull``, ``ImagePullBackOff``);
    ``job`` would copy it back from its source, with the pod's own pull secrets. ``original``
    is the image the pod was created with (the ``swapper.io/original-images`` annotation, else
    the source the mirror path names); ``path`` points at the container's image in the pod."""

    container: str
    reason: str
    job: CopyJob
    path: str = ""
    original: str = ""


@dataclass(frozen=True, slots=True)
class PodRecord:
    """What the pod watch keeps per pod: its copies for the backfill, its containers that run a
    mirror image (each as the copy that would put it back) for the monitor, and its containers
    stuck on a mirror image for the healer."""

    namespace: str
    name: str
    uid: str
    jobs: PodImages = ()
    stuck: tuple[Stuck, ...] = ()
    mirrored: PodImages = ()

    def in_use(self) -> PodImages:
        """Every image the pod runs that the monitor watches: swapped or to be swapped."""
        return self.jobs + self.mirrored


STATES = (
    "pending",
    "present",
    "queued",
    "would-copy",
    "skipped-private",
    "skipped-unverified",
    "queue-full",
    "error",
)
"""The states of :attr:`Metrics.backfill_images`, every one set at each scan (0 included)."""

_DONE_PHASES = ("Succeeded", "Failed")  # pods that will not pull again


class PodPlanner:
    """Raw pod JSON -> :data:`PodImages`, or None when the pod needs nothing (the transform of
    the pod informer; it runs in the informer's thread, and is pure apart from the log line
    and the metric)."""

    def __init__(
        self,
        policy: Policy,
        is_origin: Callable[[ImageReference], bool],
        metrics: Metrics,
        max_containers: int = 1000,
    ) -> None:
        self.policy = policy
        self.is_origin = is_origin
        self.metrics = metrics
        self.max_containers = max_containers

    def __call__(self, obj: Mapping[str, Any]) -> PodRecord | None:
        status = obj.get("status")
        if isinstance(status, dict) and status.get("phase") in _DONE_PHASES:
            return None
        namespace = pods.namespace_of(obj)
        count = pods.container_count(obj)
        if count > self.max_containers:
            self._skip(obj, "too-many-containers", f"{count} containers")
            return None
        try:
            _, candidates = plan(obj, namespace, self.policy, self.is_origin)
            who = requester_of(obj, namespace)
            on_mirror = self._on_mirror(obj, who)
            stuck = self._stuck(obj, on_mirror) if isinstance(status, dict) else ()
        except MalformedPod as exc:
            self._skip(obj, "malformed", str(exc))
            return None
        except Exception as exc:  # one odd pod never stops the watch
            self._skip(obj, "error", f"{type(exc).__name__}: {exc}")
            return None
        if not candidates and not stuck and not on_mirror:
            return None
        metadata = pods.metadata_of(obj)
        return PodRecord(
            namespace,
            pods.name_of(obj),
            str(metadata.get("uid") or ""),
            tuple(copy_job(c, who, self.policy) for c in candidates),
            stuck,
            tuple(dict.fromkeys(job for job, _, _ in on_mirror.values())),
        )

    def _on_mirror(
        self, obj: Mapping[str, Any], who: Requester
    ) -> dict[str, tuple[CopyJob, pods.Container, str]]:
        """Container name -> (the copy that puts its mirror image back, the container, the
        image it was created with), for the containers that run an image under the target."""
        originals = pods.original_images(obj)
        found: dict[str, tuple[CopyJob, pods.Container, str]] = {}
        for container in pods.containers(obj):
            restore = self._restore_job(container.image, who, originals.get(container.name))
            if restore is not None:
                found[container.name] = (restore, container, str(restore.source))
        return found

    def _stuck(
        self, obj: Mapping[str, Any], on_mirror: Mapping[str, tuple[CopyJob, pods.Container, str]]
    ) -> tuple[Stuck, ...]:
        """Containers waiting with a pull failure on an image under the target."""
        status = obj.get("status") or {}
        found: list[Stuck] = []
        for field in _STATUS_FIELDS:
            for entry in status.get(field) or ():
                if not isinstance(entry, dict):
                    continue
                waiting = (entry.get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason") if isinstance(waiting, dict) else None
                if reason not in PULL_FAILURES:
                    continue
                name = str(entry.get("name") or "")
                mine = on_mirror.get(name)
                if mine is None:
                    log.debug(
                        "pull_failure_not_a_mirror_image", pod=pods.name_of(obj), container=name
                    )
                    continue
                job, container, original = mine
                found.append(Stuck(name, str(reason), job, container.image_path, original))
        return tuple(found)

    def _restore_job(self, image: str, who: Requester, original: str | None) -> CopyJob | None:
        """The copy that puts ``image`` (a mirror reference) back from its source: the image
        the pod was created with when that mirrors to ``image`` exactly (an annotation naming
        anything else is ignored: it must not fill this mirror path), else the source the
        mirror path names."""
        endpoint = self.policy.endpoint
        mirrored = image_plan(image, endpoint, self.is_origin)
        if mirrored.ref is None or not mirrored.at_origin or mirrored.source is None:
            return None
        source = image_plan(str(mirrored.source), endpoint, self.is_origin)
        ref = mirrored.source
        if original:
            written = image_plan(original, endpoint, self.is_origin)
            if written.ref is not None and not written.at_origin and written.target == image:
                ref, source = written.ref, written
        return CopyJob(
            ref,
            image,
            source.repository,
            who.namespace,
            who.pull_secrets,
            who.service_account,
        )

    def _skip(self, obj: Mapping[str, Any], reason: str, detail: str) -> None:
        self.metrics.controller_pods_skipped.labels(reason).inc()
        log.info(
            "pod_skipped",
            namespace=pods.namespace_of(obj),
            pod=pods.name_of(obj),
            reason=reason,
            detail=detail[:200],
        )


@dataclass
class _Image:
    """One distinct target image, with up to :data:`_MAX_ASKERS` pods' jobs to try."""

    jobs: list[CopyJob]


_MAX_ASKERS = 4  # distinct (namespace, secrets, account) tried for a private image


def distinct_images(items: Iterable[PodImages], limit: int) -> tuple[dict[str, _Image], int]:
    """Target reference -> its jobs (one per distinct requester, at most a few), for at most
    ``limit`` targets; also how many targets were left out."""
    found: dict[str, _Image] = {}
    over = 0
    for jobs in items:
        for job in jobs:
            image = found.get(job.target)
            if image is None:
                if len(found) >= limit:
                    over += 1
                    continue
                found[job.target] = _Image([job])
            elif len(image.jobs) < _MAX_ASKERS and all(
                _asker(job) != _asker(other) for other in image.jobs
            ):
                image.jobs.append(job)
    return found, over


def _asker(job: CopyJob) -> tuple[str, tuple[str, ...], str]:
    return job.namespace, job.pull_secrets, job.service_account


async def changes(
    generation: Callable[[], int], every: float, interval: float
) -> AsyncIterator[None]:
    """Yields whenever ``generation()`` moved (looked at every ``interval`` seconds), and every
    ``every`` seconds anyway; forever."""
    seen = -1
    last = float("-inf")
    loop = asyncio.get_running_loop()
    while True:
        current = generation()
        if current != seen or loop.time() - last >= every:
            seen, last = current, loop.time()
            yield
        await asyncio.sleep(interval)


class Backfill:
    """Makes sure the mirror has the images of the watched pods (see the module docstring).

    ``items`` returns the pod cache's values and ``generation`` its change counter (the pod
    informer's); a scan runs when the generation moved, at most every ``interval`` seconds.
    """

    def __init__(
        self,
        items: Callable[[], Iterable[PodImages]],
        generation: Callable[[], int],
        target: TargetRegistry,
        queue: CopyQueue,
        access: SourceAccess,
        metrics: Metrics,
        *,
        copies: bool,
        max_images: int = 50_000,
        concurrency: int = 16,
        interval: float = 1.0,
        access_deadline: float = 5.0,
        recheck_after: float = 3600.0,
        retry_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.items = items
        self.generation = generation
        self.target = target
        self.queue = queue
        self.access = access
        self.metrics = metrics
        self.copies = copies  # false: dry-run without prefill, nothing is copied
        self.max_images = max_images
        self.concurrency = concurrency
        self.interval = interval
        self.access_deadline = access_deadline
        self.recheck_after = recheck_after
        self.retry_after = retry_after
        self._states: TTLMap[str, str] = TTLMap(max_images, clock)
        self._over_reported = False
        self.scans = 0
        self.states: dict[str, int] = dict.fromkeys(STATES, 0)

    async def run(self) -> None:
        """Scan whenever the pod cache changed, and every ``retry_after`` seconds anyway (what
        was decided expires: those images are looked at again); forever (a supervised task)."""
        async for _ in changes(self.generation, self.retry_after, self.interval):
            await self.scan()

    async def scan(self) -> dict[str, int]:
        """One pass over the distinct images; returns the count per state."""
        images, over = distinct_images(self.items(), self.max_images)
        if over and not self._over_reported:
            self._over_reported = True
            log.warning(
                "backfill_images_over_limit",
                limit=self.max_images,
                left_out=over,
                key="controller.maxImages",
            )
        todo = [(t, i) for t, i in images.items() if self._states.get(t) is None]
        if todo:
            gate = asyncio.Semaphore(self.concurrency)

            async def one(target: str, image: _Image) -> None:
                async with gate:
                    state = await self._ensure(target, image)
                ttl = self.recheck_after if state in ("present", "queued") else self.retry_after
                self._states.set(target, state, ttl)

            await asyncio.gather(*(one(t, i) for t, i in todo))
        counts = dict.fromkeys(STATES, 0)
        for target in images:
            counts[self._states.get(target) or "pending"] += 1
        for state, count in counts.items():
            self.metrics.backfill_images.labels(state).set(count)
        self.states = counts
        self.scans += 1
        return counts

    async def _ensure(self, target: str, image: _Image) -> str:
        try:
            job = await self._readable_job(image)
            if isinstance(job, str):
                return job
            if await self.target.image_exists(target):
                return "present"
            if not self.copies:
                self.metrics.backfill_copies.labels("would-copy").inc()
                log.info("backfill_would_copy", source=str(job.source), target=target)
                return "would-copy"
            self.queue.submit(job, priority=Priority.BACKFILL)
        except QueueFull:
            self.metrics.backfill_copies.labels("queue-full").inc()
            return "queue-full"
        except Exception as exc:  # one image's failure never stops the scan
            self.metrics.backfill_copies.labels("error").inc()
            log.warning("backfill_failed", target=target, error=f"{type(exc).__name__}: {exc}")
            return "error"
        self.metrics.backfill_copies.labels("queued").inc()
        log.info("backfill_queued", source=str(job.source), target=target)
        return "queued"

    async def _readable_job(self, image: _Image) -> CopyJob | str:
        """The first job whose pod may read the source, or the state that says why none."""
        unverified = False
        for job in image.jobs:
            who = Requester(job.namespace, job.pull_secrets, job.service_account)
            access = self.access.known(job.source, who)
            if access is None:
                deadline = asyncio.get_running_loop().time() + self.access_deadline
                access = await self.access.check(job.source, who, deadline)
            if access.readable:
                return job
            unverified = unverified or access.verdict is Verdict.UNVERIFIED
        return "skipped-unverified" if unverified else "skipped-private"
