"""The copy-queue protocol behind ``imageCopyPolicy``, and an in-memory implementation.

- ``delayed``: :meth:`CopyQueue.submit` hands the job over and returns at once.
- ``immediate``: :meth:`CopyQueue.submit_and_wait` queues it and waits up to the deadline.
- ``force``: :meth:`CopyQueue.copy_now` copies outside the queue, up to the deadline.

Jobs are de-duplicated by target reference: two pods asking for the same image share one copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from swapper.aio import SingleFlight
from swapper.errors import CopyDeadlineExceeded, CopyError, CopyReason, QueueFull
from swapper.images import ImageReference
from swapper.targets.memory import MemoryTarget


@dataclass(frozen=True, slots=True)
class Requester:
    """Whose pod asks: a copy reads the source with this pod's pull secrets, and a private
    image is swapped only for pods whose own secrets can read it."""

    namespace: str
    pull_secrets: tuple[str, ...] = ()  # the pod's spec.imagePullSecrets names
    service_account: str = ""  # the pod's ServiceAccount; its secrets count when the pod has none


@dataclass(frozen=True, slots=True)
class CopyJob:
    """Copy ``source`` to ``target`` (a full reference in the target registry)."""

    source: ImageReference
    target: str
    repository: str  # path of the target repository under the registry host
    namespace: str = ""
    pull_secrets: tuple[str, ...] = field(default=())  # the pod's own imagePullSecrets names
    service_account: str = ""  # the pod's ServiceAccount (its secrets count when the pod has none)
    recheck: bool = False  # imagePullPolicy Always on a tag: look at the source digest again


@runtime_checkable
class CopyQueue(Protocol):
    def submit(self, job: CopyJob) -> None:
        """Queue a copy and return at once. Raises :class:`QueueFull` when at its bound."""
        ...

    async def submit_and_wait(self, job: CopyJob, deadline: float) -> None:
        """Queue a copy and wait for it. Raises :class:`CopyError` or its deadline subclass."""
        ...

    async def copy_now(self, job: CopyJob, deadline: float) -> None:
        """Copy outside the queue. Raises :class:`CopyError` or its deadline subclass."""
        ...

    async def aclose(self) -> None:
        """Stop workers; queued jobs that have not started are dropped."""
        ...


Copier = Callable[[CopyJob], Awaitable[None]]


class MemoryCopyQueue:
    """Copies into a :class:`MemoryTarget` by marking the image present.

    It behaves like the real queue where admission can tell: in-flight de-duplication, a
    bound, deadlines. ``delay`` makes copies slow, ``fail`` holds target references whose copy
    fails (reason ``rejected``), and ``jobs`` records every job started.
    """

    def __init__(self, target: MemoryTarget, bound: int = 1000, delay: float = 0.0) -> None:
        self.target = target
        self.bound = bound
        self.delay = delay
        self.fail: set[str] = set()
        self.jobs: list[CopyJob] = []
        self._copies: SingleFlight[str, None] = SingleFlight()  # in flight, by target

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
        return self._copies.start(job.target, lambda: self._copy(job))

    def submit(self, job: CopyJob) -> None:
        self._start(job)

    async def submit_and_wait(self, job: CopyJob, deadline: float) -> None:
        await _wait(self._start(job), deadline, job)

    async def copy_now(self, job: CopyJob, deadline: float) -> None:
        await _wait(asyncio.get_running_loop().create_task(self._copy(job)), deadline, job)

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
