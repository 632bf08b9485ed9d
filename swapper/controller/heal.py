"""Healing: a pod stuck pulling a mirror image gets the image back, without a person.

The leader's pod watch keeps, per pod, the containers that wait with ``ErrImagePull`` or
``ImagePullBackOff`` on an image under the target (:class:`~swapper.controller.backfill.Stuck`).
For each (pod, image), at most once per ``cooldown``:

1. the mirror is asked at once, past the existence cache;
2. if it lacks the image (a lifecycle rule or a person deleted it), an urgent copy (``force``:
   outside the queue's worker limit) puts it back from the source its mirror path names, with
   the pod's own pull secrets, so a private source is never copied with anyone else's. The
   kubelet's next retry then pulls it; the pod is not changed.

3. if that copy fails, and ``controller.heal.revert`` is on: the source is asked with the pod's
   own credentials (:mod:`swapper.mirror.probe`). When it serves the image (the mirror refuses
   pushes: quota, read-only, lost permissions), that one container's image is patched back to
   its source, the image the pod was created with (the ``swapper.io/original-images``
   annotation, else the source the mirror path names). The patch tests the pod's uid and the
   container's current image first, so a pod replaced or changed meanwhile is left alone; a
   pod deleted mid-heal is no error. An ephemeral container cannot be patched, a source the
   pod cannot read is never reverted to, and when the source is gone too nothing can help.

Each step leaves an Event on the pod (``MirrorImageRestored``, ``ImageReverted``,
``HealFailed``; in dry-run ``MirrorImageMissing``, saying what would be done) and counts
``swapper_heals_total{action,result}``. A pod that pulls a mirror image the mirror has fails
for another reason (its pull secret, the node's network): that is counted (``not-missing``)
and left alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from swapper.aio import TTLMap
from swapper.controller.backfill import PodRecord, Stuck, changes
from swapper.errors import CopyError
from swapper.kube.events import EventType, PodEvents
from swapper.kube.pods import PodPatches
from swapper.logs import get_logger
from swapper.metrics import Metrics
from swapper.mirror.probe import SourceProbe, SourceState
from swapper.mirror.queue import CopyQueue, Requester

log = get_logger("swapper.controller")

RESTORE = "restore"
REVERT = "revert"


class Healer:
    """Heals stuck pods (see the module docstring). ``records`` gives the pod cache's records,
    ``generation`` its change counter; ``exists_now(target)`` asks the mirror past any cache."""

    def __init__(
        self,
        records: Callable[[], Iterable[PodRecord]],
        generation: Callable[[], int],
        exists_now: Callable[[str], Awaitable[bool]],
        queue: CopyQueue,
        events: PodEvents,
        metrics: Metrics,
        *,
        side_effects: bool,
        cooldown: float = 300.0,
        copy_deadline: float = 300.0,
        interval: float = 1.0,
        concurrency: int = 4,
        max_remembered: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        revert: bool = False,
        probe: SourceProbe | None = None,
        patches: PodPatches | None = None,
    ) -> None:
        self.records = records
        self.revert = revert  # controller.heal.revert (needs probe and patches to act)
        self.probe = probe
        self.patches = patches
        self.generation = generation
        self.exists_now = exists_now
        self.queue = queue
        self.events = events
        self.metrics = metrics
        self.side_effects = side_effects  # false: dry-run, Events and metrics only
        self.cooldown = cooldown
        self.copy_deadline = copy_deadline
        self.interval = interval
        self.concurrency = concurrency
        self._recent: TTLMap[tuple[str, str], float] = TTLMap(max_remembered, clock)
        self.passes = 0

    async def run(self) -> None:
        """A pass whenever the pod cache changed, and every ``cooldown`` anyway; forever."""
        async for _ in changes(self.generation, self.cooldown, self.interval):
            await self.heal_pass()

    async def heal_pass(self) -> int:
        """One look at every stuck container not healed within the cooldown; how many."""
        todo: list[tuple[PodRecord, Stuck]] = []
        for record in self.records():
            for stuck in record.stuck:
                key = (record.uid or f"{record.namespace}/{record.name}", stuck.job.target)
                if key in self._recent:
                    continue
                self._recent.set(key, 0.0, self.cooldown)
                todo.append((record, stuck))
        if todo:
            gate = asyncio.Semaphore(self.concurrency)

            async def one(record: PodRecord, stuck: Stuck) -> None:
                async with gate:
                    await self._heal(record, stuck)

            await asyncio.gather(*(one(r, s) for r, s in todo))
        self.passes += 1
        return len(todo)

    async def _heal(self, record: PodRecord, stuck: Stuck) -> None:
        job = stuck.job
        where = {"namespace": record.namespace, "pod": record.name, "container": stuck.container}
        try:
            present = await self.exists_now(job.target)
        except Exception as exc:  # the next pass after the cooldown asks again
            self._count("check-failed")
            log.warning("heal_check_failed", **where, target=job.target, error=type(exc).__name__)
            return
        if present:
            self._count("not-missing")
            log.info("heal_not_needed", **where, target=job.target, reason=stuck.reason)
            return
        if not self.side_effects:
            self._count("dry-run")
            await self._event(
                record,
                "MirrorImageMissing",
                f"dry-run: {job.target} is missing in the mirror; swapper would copy it back "
                f"from {job.source}",
                "Warning",
            )
            return
        log.info("heal_restoring", **where, source=str(job.source), target=job.target)
        try:
            await self.queue.copy_now(job, self.copy_deadline)
        except CopyError as exc:
            self._count("failed")
            log.warning("heal_failed", **where, target=job.target, reason=str(exc.reason))
            if self.revert:
                await self._revert(record, stuck, str(exc.reason))
                return
            await self._event(
                record,
                "HealFailed",
                f"{job.target} is missing in the mirror and could not be copied back from "
                f"{job.source} ({exc.reason})",
                "Warning",
            )
            return
        self._count("restored")
        log.info("heal_restored", **where, target=job.target)
        await self._event(
            record,
            "MirrorImageRestored",
            f"{job.target} was missing in the mirror: copied back from {job.source}; the next "
            "pull retry gets it",
            "Normal",
        )

    async def _revert(self, record: PodRecord, stuck: Stuck, why: str) -> None:
        """Put the container back on its source, if the pod itself can read it there."""
        job = stuck.job
        where = {"namespace": record.namespace, "pod": record.name, "container": stuck.container}
        source = str(job.source)
        lost = f"{job.target} is missing in the mirror and could not be copied back ({why})"
        if self.probe is None or self.patches is None or not stuck.path:
            return await self._failed_revert(record, "unavailable", f"{lost}; not reverted")
        if "/ephemeralContainers/" in stuck.path:
            return await self._failed_revert(
                record, "unsupported", f"{lost}; an ephemeral container's image cannot be changed"
            )
        who = Requester(job.namespace, job.pull_secrets, job.service_account)
        try:
            probe = await self.probe.probe(job.source, [who])
        except Exception as exc:
            log.warning("heal_revert_check_failed", **where, error=type(exc).__name__)
            return await self._failed_revert(record, "check-failed", f"{lost}; not reverted")
        if probe.state is SourceState.GONE:
            return await self._failed_revert(
                record,
                "source-gone",
                f"{lost}, and {source} is gone from its source too: nothing can help this pod",
            )
        if probe.state is SourceState.DENIED:
            return await self._failed_revert(
                record,
                "private",
                f"{lost}; not reverted to {source}: the pod's own credentials cannot read it",
            )
        if probe.state is SourceState.UNREACHABLE:
            return await self._failed_revert(
                record, "source-unreachable", f"{lost}; {source} did not answer: not reverted"
            )
        if not self.side_effects:
            self._count("dry-run", REVERT)
            await self._event(
                record,
                "MirrorImageMissing",
                f"dry-run: {lost}; swapper would set container {stuck.container} back to {source}",
                "Warning",
            )
            return
        try:
            result = await self.patches.set_image(
                record.namespace, record.name, record.uid, stuck.path, job.target, source
            )
        except Exception as exc:
            log.warning("heal_revert_failed", **where, error=str(exc)[:300])
            return await self._failed_revert(record, "failed", f"{lost}; the patch failed")
        if result != "patched":  # gone or changed meanwhile: nothing to heal any more
            self._count(result, REVERT)
            log.info("heal_revert_not_needed", **where, result=result)
            return
        self._count("reverted", REVERT)
        log.info("heal_reverted", **where, image=source)
        await self._event(
            record,
            "ImageReverted",
            f"{lost}: container {stuck.container} set back to its source {source}",
            "Normal",
        )

    async def _failed_revert(self, record: PodRecord, result: str, message: str) -> None:
        self._count(result, REVERT)
        await self._event(record, "HealFailed", message, "Warning")

    async def _event(self, record: PodRecord, reason: str, message: str, kind: EventType) -> None:
        await self.events.pod_event(
            record.namespace, record.name, record.uid, reason, message, kind
        )

    def _count(self, result: str, action: str = RESTORE) -> None:
        self.metrics.heals.labels(action, result).inc()
