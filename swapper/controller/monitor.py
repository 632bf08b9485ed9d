"""The images in use, watched at their source and in the mirror, at a bounded pace per registry.

The leader keeps the distinct images of the watched pods: each image a pod runs from the mirror
(the source it was swapped from: the ``swapper.io/original-images`` annotation, else its mirror
path) and each image the config would mirror. For each it asks, over time:

- the **mirror**: which digest it serves for the reference (never the existence cache);
- the **source**: which digest it serves now (a ``HEAD``; for a private image with the
  credentials of the pods that run it, :mod:`swapper.mirror.probe`).

**Pace.** Every registry host, the mirror's included, is asked at most ``maxChecks`` times per
``interval`` (``controller.monitor``, per host under ``registries``), one check every
``interval / maxChecks`` seconds, never in a burst, and each image at most once per interval.
A registry that answers 429 is left alone for the ``Retry-After`` it asked (at least one
spacing). Each registry has at most one check in flight, and a slow or dead registry holds up
no other: checks run as tasks of their own (at most ``_MAX_IN_FLIGHT`` at once).

**States** (``swapper_images{state}``), in this order of precedence:

- ``missing-in-mirror``: the mirror lost it. It is copied again at once
  (:attr:`~swapper.mirror.queue.Priority.BACKFILL`), with the credentials of a pod that can
  read the source; when the source is gone too, every pod that runs it gets one Warning Event
  (``MirrorImageGone``) per change of state, not per check;
- ``source-gone``: the source no longer has it (the mirror is then the only copy);
- ``source-unreachable``: the source did not answer;
- ``private-unverified``: no pod that runs it has credentials the source accepts;
- ``tag-moved``: the tag points at other content at the source than in the mirror (compared
  by digest; with ``mirror.platforms`` set, the mirror's digest differs by design, so against
  the first source digest seen). Under ``mirror.refreshTags: always`` it is copied again, at
  most once per ``mirror.refreshEvery``; a digest-pinned reference never moves;
- ``mirrored``: the mirror has it and nothing above holds;
- ``unchecked``: not asked yet.

Dry-run copies nothing: ``swapper_monitor_copies_total{result="would-copy"}`` says what would
have been. Results live in a map bounded by ``controller.maxImages``; images no pod runs any
more are dropped. ``swapper_image_info{source,target,state}`` has a series for at most
``controller.monitor.maxInfo`` images (the first by target reference).
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from swapper.config import MonitorPace, MonitorSettings, RefreshTags
from swapper.controller.backfill import PodRecord, distinct_images
from swapper.errors import QueueFull
from swapper.images import parse
from swapper.kube.events import PodEvents
from swapper.logs import get_logger
from swapper.metrics import Metrics
from swapper.mirror.probe import Probe, SourceProbe, SourceState
from swapper.mirror.queue import CopyJob, CopyQueue, Priority, Requester

log = get_logger("swapper.controller")

MISSING = "missing-in-mirror"
GONE = "source-gone"
UNREACHABLE = "source-unreachable"
PRIVATE = "private-unverified"
MOVED = "tag-moved"
MIRRORED = "mirrored"
UNCHECKED = "unchecked"
STATES = (MIRRORED, MISSING, GONE, UNREACHABLE, PRIVATE, MOVED, UNCHECKED)
"""The states of ``swapper_images``, every one set at each update (0 included)."""

GONE_EVENT = "MirrorImageGone"

_CHECK_TIMEOUT = 30.0  # one registry round trip (with its retries), at most
_MAX_IN_FLIGHT = 16  # checks running at once, over all registries


@dataclass
class _Watched:
    """What is known of one image in use."""

    job: CopyJob  # source and target; the first pod's credentials
    askers: list[CopyJob]  # up to a few pods' jobs (their credentials), job first
    mirror_digest: str | None = None
    mirror_known: bool = False
    source: Probe | None = None
    baseline: str = ""  # the first source digest seen (for platform-filtered mirrors)
    mirror_at: float = -math.inf
    source_at: float = -math.inf
    refreshed_at: float = -math.inf
    state: str = UNCHECKED
    told: str = ""  # the state the Warning Events last told about
    copy_asked: bool = False  # a copy was asked since the mirror was last checked


@dataclass
class _Pace:
    spacing: float
    interval: float
    next_at: float = -math.inf
    checks: int = 0


@dataclass(frozen=True, slots=True)
class _Check:
    kind: str  # "mirror" or "source"
    target: str
    host: str


@dataclass
class MonitorOptions:
    """The config the monitor acts on (from ``controller.monitor`` and ``mirror``)."""

    settings: MonitorSettings = field(default_factory=MonitorSettings)
    refresh: RefreshTags = RefreshTags.ON_PULL
    refresh_every: float = 3600.0
    compare_digests: bool = True  # false: mirror.platforms filters, digests differ by design
    side_effects: bool = True  # false: dry-run
    max_images: int = 50_000


class Monitor:
    """Watches the images in use (see the module docstring). ``records`` gives the pod
    cache's records and ``generation`` its change counter; ``mirror_digest(target)`` asks the
    mirror (past any cache), ``probe`` the sources."""

    def __init__(
        self,
        records: Callable[[], Iterable[PodRecord]],
        generation: Callable[[], int],
        mirror_digest: Callable[[str], Awaitable[str | None]],
        probe: SourceProbe,
        queue: CopyQueue,
        events: PodEvents,
        metrics: Metrics,
        options: MonitorOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        mirror_host: str = "",
    ) -> None:
        self.records = records
        self.generation = generation
        self.mirror_digest = mirror_digest
        self.probe = probe
        self.queue = queue
        self.events = events
        self.metrics = metrics
        self.options = options
        self.clock = clock
        self.sleep = sleep
        self.mirror_host = mirror_host
        self.images: dict[str, _Watched] = {}
        self.paces: dict[str, _Pace] = {}
        self._seen_generation = -1
        self._over_reported = False
        self._info: set[tuple[str, str, str]] = set()
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # registry host -> its check

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Forever: follow the pod cache, and start each registry's checks when they are due."""
        try:
            while True:
                await self.step()
                await self.sleep(self._tick())
        finally:
            await self.cancel()

    async def cancel(self) -> None:
        """Stop the checks in flight."""
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._in_flight.clear()

    async def drain(self) -> None:
        """Wait for the checks in flight (for tests)."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    def _tick(self) -> float:
        """How long to sleep: the shortest spacing, within [0.05 s, 1 s]."""
        spacings = [p.spacing for p in self.paces.values()] or [1.0]
        return min(1.0, max(0.05, min(spacings)))

    async def step(self) -> int:
        """Follow the pod cache, start the checks due now (one per registry at most); how
        many were started."""
        if self.generation() != self._seen_generation:
            self._seen_generation = self.generation()
            self.sync()
        due = self._due(self.clock())
        for check in due:
            task = asyncio.create_task(self._check(check), name=f"monitor-{check.host}")
            self._in_flight[check.host] = task
            task.add_done_callback(functools.partial(self._done, check.host))
        return len(due)

    def _done(self, host: str, _: asyncio.Task[None]) -> None:
        self._in_flight.pop(host, None)

    async def _check(self, check: _Check) -> None:
        try:
            await self._run(check)
            watched = self.images.get(check.target)
            if watched is not None:
                await self._settle(check.target, watched)
            self._export()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one check never stops the monitor
            log.warning("monitor_check_failed", target=check.target, error=type(exc).__name__)

    # -- what is in use ------------------------------------------------------------------------

    def sync(self) -> None:
        """The watched set follows the pods: new images added, images no pod runs dropped."""
        found, over = distinct_images(
            (record.in_use() for record in self.records()), self.options.max_images
        )
        if over and not self._over_reported:
            self._over_reported = True
            log.warning(
                "monitor_images_over_limit",
                limit=self.options.max_images,
                left_out=over,
                key="controller.maxImages",
            )
        for target in list(self.images):
            if target not in found:
                del self.images[target]
        for target, image in found.items():
            watched = self.images.get(target)
            if watched is None:
                self.images[target] = _Watched(image.jobs[0], list(image.jobs))
            else:
                watched.askers = list(image.jobs)
        self._export()

    # -- pacing --------------------------------------------------------------------------------

    def pace(self, host: str) -> _Pace:
        pace = self.paces.get(host)
        if pace is None:
            chosen: MonitorPace = self.options.settings.registries.get(host, self.options.settings)
            pace = _Pace(chosen.interval / chosen.max_checks, chosen.interval)
            self.paces[host] = pace
        return pace

    def _due(self, now: float) -> list[_Check]:
        """For each registry whose next slot has come, its most overdue check (if any)."""
        best: dict[str, tuple[float, _Check]] = {}
        for target, watched in self.images.items():
            for check, last in (
                (_Check("mirror", target, self._mirror_host(target)), watched.mirror_at),
                (_Check("source", target, watched.job.source.domain), watched.source_at),
            ):
                pace = self.pace(check.host)
                if now < pace.next_at or now - last < pace.interval:
                    continue
                if check.host in self._in_flight or len(self._in_flight) >= _MAX_IN_FLIGHT:
                    continue
                if check.host not in best or last < best[check.host][0]:
                    best[check.host] = (last, check)
        due = []
        for host, (_, check) in best.items():
            pace = self.paces[host]
            pace.next_at = now + pace.spacing
            pace.checks += 1
            due.append(check)
        return due

    def _mirror_host(self, target: str) -> str:
        return self.mirror_host or parse(target).domain

    # -- one check -----------------------------------------------------------------------------

    async def _run(self, check: _Check) -> None:
        watched = self.images.get(check.target)
        if watched is None:
            return
        now = self.clock()
        if check.kind == "mirror":
            watched.mirror_at = now
            try:
                digest = await asyncio.wait_for(self.mirror_digest(check.target), _CHECK_TIMEOUT)
            except Exception as exc:  # the next interval asks again
                self._checked("mirror", "error")
                log.info(
                    "monitor_mirror_check_failed", target=check.target, error=type(exc).__name__
                )
                return
            watched.mirror_digest, watched.mirror_known = digest, True
            watched.copy_asked = False
            self._checked("mirror", "present" if digest is not None else "missing")
        else:
            watched.source_at = now
            askers = [
                Requester(j.namespace, j.pull_secrets, j.service_account) for j in watched.askers
            ]
            try:
                probe = await asyncio.wait_for(
                    self.probe.probe(watched.job.source, askers), _CHECK_TIMEOUT
                )
            except Exception as exc:
                probe = Probe(SourceState.UNREACHABLE, reason=type(exc).__name__)
            self._checked("source", "rate-limited" if probe.retry_after else probe.state.value)
            if probe.retry_after:
                pace = self.pace(check.host)
                pace.next_at = max(pace.next_at, now + probe.retry_after)
                log.info("monitor_rate_limited", registry=check.host, wait=probe.retry_after)
            watched.source = probe
            if probe.state is SourceState.SERVED and not watched.baseline:
                watched.baseline = probe.digest

    def _checked(self, kind: str, result: str) -> None:
        self.metrics.monitor_checks.labels(kind, result).inc()

    def state_of(self, watched: _Watched) -> str:
        source = watched.source
        if watched.mirror_known and watched.mirror_digest is None:
            return MISSING
        if source is not None:
            if source.state is SourceState.GONE:
                return GONE
            if source.state is SourceState.UNREACHABLE:
                return UNREACHABLE
            if source.state is SourceState.DENIED:
                return PRIVATE
            if self._moved(watched):
                return MOVED
        return MIRRORED if watched.mirror_known else UNCHECKED

    def _moved(self, watched: _Watched) -> bool:
        source = watched.source
        if source is None or source.state is not SourceState.SERVED or not source.digest:
            return False
        if watched.job.source.digest:
            return False  # pinned by digest: the pod pulls exactly that, whatever the tag says
        if self.options.compare_digests:
            return watched.mirror_known and watched.mirror_digest not in (None, source.digest)
        return bool(watched.baseline) and watched.baseline != source.digest

    async def _settle(self, target: str, watched: _Watched) -> None:
        before, watched.state = watched.state, self.state_of(watched)
        if watched.state != before:
            log.info("monitor_image_state", target=target, state=watched.state, was=before)
        source = watched.source
        if watched.state == MISSING:
            if source is not None and source.state is SourceState.GONE:
                await self._tell_gone(target, watched)
            elif not watched.copy_asked and (source is None or source.state is SourceState.SERVED):
                watched.copy_asked = True
                self._copy(watched, "missing", source)
        elif watched.state == MOVED and self._may_refresh(watched):
            watched.refreshed_at = self.clock()
            self._copy(watched, "refresh", source)
        if watched.state != MISSING:
            watched.told = ""

    def _may_refresh(self, watched: _Watched) -> bool:
        """refreshTags always, and not refreshed within refreshEvery."""
        if self.options.refresh is not RefreshTags.ALWAYS:
            return False
        return self.clock() - watched.refreshed_at >= self.options.refresh_every

    def _copy(self, watched: _Watched, reason: str, source: Probe | None) -> None:
        """Copy the image again, with the credentials of the pod that could read it."""
        job = watched.job
        if source is not None and source.asker is not None and source.asker < len(watched.askers):
            job = watched.askers[source.asker]
        if reason == "refresh":
            job = CopyJob(
                job.source,
                job.target,
                job.repository,
                job.namespace,
                job.pull_secrets,
                job.service_account,
                self.options.refresh_every,
            )
        if not self.options.side_effects:
            self._copied(reason, "would-copy")
            log.info("monitor_would_copy", reason=reason, source=str(job.source), target=job.target)
            return
        try:
            self.queue.submit(job, priority=Priority.BACKFILL)
        except QueueFull:
            self._copied(reason, "queue-full")
            return
        except Exception as exc:  # one image never stops the monitor
            self._copied(reason, "error")
            log.warning("monitor_copy_failed", target=job.target, error=type(exc).__name__)
            return
        self._copied(reason, "queued")
        watched.mirror_at = -math.inf  # asked again at the mirror's next slot
        log.info("monitor_copy_queued", reason=reason, source=str(job.source), target=job.target)

    def _copied(self, reason: str, result: str) -> None:
        self.metrics.monitor_copies.labels(reason, result).inc()

    async def _tell_gone(self, target: str, watched: _Watched) -> None:
        """One Warning Event per pod that runs the image, once per change of state."""
        if watched.told == GONE_EVENT:
            return
        watched.told = GONE_EVENT
        message = (
            f"{target} is gone from the mirror, and {watched.job.source} from its source: a new "
            "pull of this image will fail, and swapper cannot copy it back"
        )
        log.warning("mirror_image_gone", target=target, source=str(watched.job.source))
        for record in self.users(target):
            await self.events.pod_event(
                record.namespace, record.name, record.uid, GONE_EVENT, message, "Warning"
            )

    def users(self, target: str) -> list[PodRecord]:
        return [r for r in self.records() if any(j.target == target for j in r.in_use())]

    # -- metrics -------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for watched in self.images.values():
            counts[watched.state] += 1
        return counts

    def _export(self) -> None:
        for state, count in self.counts().items():
            self.metrics.images.labels(state).set(count)
        limit = self.options.settings.max_info
        wanted = {
            (str(self.images[t].job.source), t, self.images[t].state)
            for t in sorted(self.images)[:limit]
        }
        info = self.metrics.image_info
        for labels in self._info - wanted:
            info.remove(*labels)
        for labels in wanted - self._info:
            info.labels(*labels).set(1)
        self._info = wanted

    def clear(self) -> None:
        """Leadership ended: forget everything (the next leader starts from its own checks;
        the checks in flight were cancelled with :meth:`run`)."""
        self.images.clear()
        self.paces.clear()
        self._seen_generation = -1
        self._export()
