"""In-memory doubles of the mirror's protocols, for tests and ``swapper explain`` (like httpx's
``MockTransport``): :class:`MemoryCopyQueue` (a :class:`~swapper.mirror.queue.CopyQueue`),
:class:`MemoryAccess` (a :class:`~swapper.access.checker.SourceAccess`) and :class:`MemoryProbe`
(a :class:`~swapper.mirror.probe.SourceProbe`)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from swapper.access.verdicts import ANONYMOUS_REFUSED, READABLE, Access, Verdict, unreachable
from swapper.aio import SingleFlight
from swapper.errors import CopyDeadlineExceeded, CopyError, CopyReason, QueueFull
from swapper.images import ImageReference
from swapper.mirror.probe import Probe, SourceState
from swapper.mirror.queue import CopyJob, Priority, Requester
from swapper.targets.memory import MemoryTarget


class MemoryCopyQueue:
    """Copies into a :class:`MemoryTarget` by marking the image present.

    It behaves like the real queue where admission can tell: in-flight de-duplication, a
    bound, deadlines. ``delay`` makes copies slow, ``fail`` holds target references whose copy
    fails (reason ``rejected``), ``jobs`` records every job started, and ``submitted`` every
    hand-over's target and priority (it copies at once, whatever the priority).
    """

    def __init__(self, target: MemoryTarget, bound: int = 1000, delay: float = 0.0) -> None:
        self.target = target
        self.bound = bound
        self.delay = delay
        self.fail: set[str] = set()
        self.jobs: list[CopyJob] = []
        self.submitted: list[tuple[str, Priority]] = []
        self._copies: SingleFlight[str, None] = SingleFlight()  # in flight, by target
        self._running: Counter[str] = Counter()  # copies in flight by target, forced ones too
        self._into: Counter[str] = Counter()  # copies in flight by repository, forced ones too

    async def _copy(self, job: CopyJob) -> None:
        self.jobs.append(job)
        if self.delay:
            await asyncio.sleep(self.delay)
        if job.target in self.fail:
            raise CopyError(f"copy of {job.source} failed", CopyReason.REJECTED)
        await self.target.ensure_repository(job.repository)
        self.target.add_image(job.target)

    def _start(self, job: CopyJob) -> asyncio.Task[None]:
        if job.target not in self._copies and len(self._copies) >= self.bound:
            raise QueueFull(f"copy queue is full ({self.bound} jobs)")
        if job.target in self._copies:
            return self._copies.start(job.target, lambda: self._copy(job))
        return self._counted(job, self._copies.start(job.target, lambda: self._copy(job)))

    def _counted(self, job: CopyJob, task: asyncio.Task[None]) -> asyncio.Task[None]:
        """Count ``task`` as a copy to ``job.target`` into ``job.repository`` until it ends."""
        target, repository = job.target, job.repository
        self._running[target] += 1
        self._into[repository] += 1

        def ended(_: asyncio.Task[None]) -> None:
            for counter, key in ((self._running, target), (self._into, repository)):
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]

        task.add_done_callback(ended)
        return task

    def copying(self, target: str) -> bool:
        return self._running[target] > 0

    def copying_into(self, repository: str) -> bool:
        return self._into[repository] > 0

    def submit(self, job: CopyJob, priority: Priority = Priority.ADMISSION) -> None:
        self.submitted.append((job.target, priority))
        self._start(job)

    async def submit_and_wait(self, job: CopyJob, deadline: float) -> None:
        await _wait(self._start(job), deadline, job)

    async def copy_now(self, job: CopyJob, deadline: float) -> None:
        task = self._counted(job, asyncio.get_running_loop().create_task(self._copy(job)))
        await _wait(task, deadline, job)

    async def aclose(self) -> None:
        await self._copies.aclose()


async def _wait(task: asyncio.Task[None], deadline: float, job: CopyJob) -> None:
    try:
        # shield: a waiter that gives up does not cancel a copy other pods may share.
        await asyncio.wait_for(asyncio.shield(task), deadline)
    except TimeoutError:
        raise CopyDeadlineExceeded(
            f"copy of {job.source} did not finish in {deadline:g}s"
        ) from None


@dataclass
class MemoryAccess:
    """For tests: ``private`` maps a repository (``ref.name``) to the pull-secret names that can
    read it; ``unreachable`` holds repositories whose source does not answer (the check waits
    until its deadline); anything else is public. ``asked`` counts the checks not cached."""

    private: dict[str, set[str]] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    asked: int = 0

    def known(self, source: ImageReference, who: Requester) -> Access | None:
        if source.name in self.private or source.name in self.unreachable:
            return None
        return READABLE

    async def check(self, source: ImageReference, who: Requester, deadline: float) -> Access:
        self.asked += 1
        if source.name in self.unreachable:
            await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time()))
            return unreachable("no answer in time")
        readers = self.private.get(source.name)
        if readers is None or readers.intersection(who.pull_secrets):
            return READABLE
        return Access(Verdict.PRIVATE, ANONYMOUS_REFUSED)


class MemoryProbe:
    """Sources as a test sets them: ``served`` maps a reference (as written) to its digest,
    ``private`` a reference to the namespaces whose pods can read it, ``unreachable`` holds
    references whose registry does not answer (``retry_after``: as a 429 would ask)."""

    def __init__(self) -> None:
        self.served: dict[str, str] = {}
        self.private: dict[str, set[str]] = {}
        self.unreachable: set[str] = set()
        self.retry_after: float | None = None
        self.asked: list[str] = []

    async def probe(self, source: ImageReference, askers: Sequence[Requester]) -> Probe:
        key = str(source)
        self.asked.append(key)
        if key in self.unreachable:
            return Probe(SourceState.UNREACHABLE, retry_after=self.retry_after, reason="test")
        readers = self.private.get(key)
        if readers is None:
            digest = self.served.get(key)
            return Probe(SourceState.SERVED, digest) if digest else Probe(SourceState.GONE)
        for index, who in enumerate(askers):
            if who.namespace in readers:
                digest = self.served.get(key)
                return (
                    Probe(SourceState.SERVED, digest, index) if digest else Probe(SourceState.GONE)
                )
        return Probe(SourceState.DENIED)
