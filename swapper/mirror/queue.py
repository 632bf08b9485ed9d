"""The copy-queue protocol behind ``imageCopyPolicy``.

- ``delayed``: :meth:`CopyQueue.submit` hands the job over and returns at once.
- ``immediate``: :meth:`CopyQueue.submit_and_wait` queues it and waits up to the deadline.
- ``force``: :meth:`CopyQueue.copy_now` copies outside the queue, up to the deadline.

Jobs are de-duplicated by target reference: two pods asking for the same image share one copy.
A hand-over has a :class:`Priority`: admission's copies go before the controller's backfill.
The implementations: :class:`~swapper.mirror.workers.WorkerQueue` (``swapper serve``) and the
in-memory double :class:`~swapper.mirror.memory.MemoryCopyQueue`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from swapper.images import ImageReference
from swapper.requester import Requester as Requester  # named here too, for the queue's callers


class Priority(StrEnum):
    """Whose copy it is: a queue starts every waiting admission copy before any backfill copy."""

    ADMISSION = "admission"  # asked for by admission: delayed hand-overs, immediate, force
    BACKFILL = "backfill"  # the controller's copies of images already running


@dataclass(frozen=True, slots=True)
class CopyJob:
    """Copy ``source`` to ``target`` (a full reference in the target registry)."""

    source: ImageReference
    target: str
    repository: str  # path of the target repository under the registry host
    namespace: str = ""
    pull_secrets: tuple[str, ...] = field(default=())  # the pod's own imagePullSecrets names
    service_account: str = ""  # the pod's ServiceAccount (its secrets count when the pod has none)
    # A tag that may move: copied again (the copier compares digests) once its last copy is
    # older than this many seconds (never more often than ``mirror.recheckEvery``); 0: a
    # present copy stays as it is.
    recheck: float = 0.0


@runtime_checkable
class CopyQueue(Protocol):
    def submit(self, job: CopyJob, priority: Priority = Priority.ADMISSION) -> None:
        """Queue a copy at ``priority`` and return at once. Raises :class:`QueueFull` when
        that priority's line is at its bound."""
        ...

    async def submit_and_wait(self, job: CopyJob, deadline: float) -> None:
        """Queue a copy and wait for it. Raises :class:`CopyError` or its deadline subclass."""
        ...

    async def copy_now(self, job: CopyJob, deadline: float) -> None:
        """Copy outside the queue. Raises :class:`CopyError` or its deadline subclass."""
        ...

    def copying(self, target: str) -> bool:
        """Whether a copy to ``target`` is queued or running now (in this process)."""
        ...

    def copying_into(self, repository: str) -> bool:
        """Whether a copy into ``repository`` (a :attr:`CopyJob.repository`: the path under the
        registry host) is queued or running now (in this process). Cheap: cleanup asks it per
        image it would delete."""
        ...

    async def aclose(self) -> None:
        """Stop workers; queued jobs that have not started are dropped."""
        ...


Copier = Callable[[CopyJob], Awaitable[None]]
