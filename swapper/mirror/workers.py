"""The copy queue ``swapper serve`` runs: bounded workers over two bounded lines.

What it promises (the :class:`~swapper.mirror.queue.CopyQueue` protocol, plus):

- **One copy per target at a time.** A target reference that is queued or being copied is not
  started again: later requests (``delayed`` hand-overs, ``immediate`` waiters, ``force``,
  backfill) share the copy in flight. ``force`` starts a queued copy at once, outside the worker
  limit.
- **Admission first.** Copies wait in two lines by :class:`~swapper.mirror.queue.Priority`:
  admission's (``delayed``, ``immediate``) and the controller's backfill. A free worker takes
  the oldest admission job; a backfill job starts only when no admission job waits, and
  backfill never holds the last worker (at most ``workers - 1`` backfill copies run at once).
  So an admission job that finds no admission copy running starts at once, never queued behind
  backfill. With ``workers`` = 1 the one worker may be busy with a backfill copy: the admission
  copy then starts beside it, so two copies run at once. A backfill job that admission asks for
  is promoted: it moves to the end of the admission line (still one copy).
- **Bounds.** ``workers`` copies run at once (two with ``workers`` = 1, as above); at most
  ``max_queued`` admission jobs and ``max_backfill_queued`` backfill jobs wait, neither line
  counting against the other's bound. A hand-over beyond its line's bound raises
  :class:`~swapper.errors.QueueFull` (admission reports ``queue-full``). A promotion counts
  against ``max_queued``: refused when that line is full, the job keeps its backfill place.
- **No hammering, and no stale belief.** A target copied successfully within ``fresh_for``
  seconds is not copied again, but ``verify`` (the cached existence check) confirms in the
  background that the mirror still has it; when it is gone, it is copied again at once (at the
  priority of who asked). A job with ``recheck`` (a tag pulled with ``imagePullPolicy:
  Always``) is copied again at most once per ``recheck_every`` seconds: the copier compares
  digests and pushes only what changed. A failed target is held back for a backoff that
  doubles per consecutive failure (from ``backoff_min`` up to ``backoff_max``, with jitter), or
  for what the registry asked in ``Retry-After`` if longer. An ``immediate`` or ``force``
  request for a held-back target fails at once with the last reason.
- **Failures are contained.** Each failed copy is logged once (source, target, reason) and
  counted by reason; an exception from the copier never stops a worker.
- **Waiters never cancel a copy.** A deadline ends the wait, not the copy others may share.
- **Bounded memory.** What is remembered per target (copied when, for ``fresh_for``; the last
  failure, for the backoff) is kept for at most ``max_remembered`` targets each, the least
  recently used forgotten first: a forgotten copy is copied again (the copier compares digests
  and sends only what changed), a forgotten failure is tried again sooner.

Copies in flight (queued or running) are a :class:`~swapper.aio.SingleFlight` keyed by target:
every request for a target shares its one task, and a failure nobody waits for is not reported
again by asyncio (it is logged once here). Each task waits for its go; :meth:`_dispatch` gives
it when a worker is free (on each hand-over and at the end of each copy), so "a worker" is a
count, not a task.

The copier does the work; retries of single requests (5xx, resets, 429) live in
:mod:`swapper.oci`, so a copy failing here has already had its retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from swapper.aio import SingleFlight, TTLMap
from swapper.errors import (
    CopyDeadlineExceeded,
    CopyError,
    CopyReason,
    QueueFull,
    RegistryError,
    TransientCopyError,
)
from swapper.logs import get_logger
from swapper.metrics import Metrics
from swapper.mirror.queue import CopyJob, Priority

log = get_logger("swapper.mirror")

Copier = Callable[[CopyJob], Awaitable[Any]]
"""Copies one job; raises :class:`CopyError` (with a ``reason``) when it cannot."""

ADMISSION, BACKFILL = Priority.ADMISSION, Priority.BACKFILL


@dataclass(eq=False)
class _Queued:
    """A copy waiting in its line for a worker (or for ``force``, which lets it start at once).

    It does not name the copy's task: the task's error keeps the copy's frames, which hold
    this, and a cycle would keep every failed copy until a full collection."""

    target: str
    priority: Priority
    go: asyncio.Event = field(default_factory=asyncio.Event)
    on_worker: bool = False  # started by a worker, which it holds until it ends


@dataclass
class _Held:
    until: float
    reason: CopyReason
    failures: int


@dataclass
class QueueSettings:
    """Sizes and timings of the copy queue (``copyQueue`` in the config)."""

    workers: int = 4
    max_queued: int = 1000  # admission jobs waiting
    max_backfill_queued: int = 10_000  # backfill jobs waiting
    fresh_for: float = 3600.0
    recheck_every: float = 60.0
    backoff_min: float = 30.0
    backoff_max: float = 900.0
    max_remembered: int = 10_000  # targets remembered as copied, and as failed (each)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)


class WorkerQueue:
    """The production :class:`~swapper.mirror.queue.CopyQueue` (see the module docstring)."""

    def __init__(
        self,
        copier: Copier,
        settings: QueueSettings | None = None,
        metrics: Metrics | None = None,
        verify: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.copier = copier
        self.verify = verify
        self.settings = settings or QueueSettings()
        self.metrics = metrics or Metrics()
        s = self.settings
        self._copies: SingleFlight[str, None] = SingleFlight()  # queued or running, by target
        self._into: Counter[str] = Counter()  # copies queued or running, by repository
        # not started yet, oldest first, by target: one line per priority, each bounded
        self._lines: dict[Priority, OrderedDict[str, _Queued]] = {
            p: OrderedDict() for p in Priority
        }
        self._busy: dict[Priority, int] = dict.fromkeys(Priority, 0)  # workers held
        self._running = 0  # copies running, forced ones included
        # target -> (copied when, job), fresh for fresh_for
        self._copied: TTLMap[str, tuple[float, CopyJob]] = TTLMap(s.max_remembered, s.clock)
        self._verifications: SingleFlight[str, None] = SingleFlight()
        self._recopy_at: dict[str, Priority] = {}  # a verification's target -> its priority
        # target -> the last failure, held back while fresh; read when stale for the count
        self._held: TTLMap[str, _Held] = TTLMap(s.max_remembered, s.clock)
        self._closed = False

    # -- the protocol -------------------------------------------------------------------------

    def submit(self, job: CopyJob, priority: Priority = ADMISSION) -> None:
        self._admit(job, wait=False, priority=priority)

    async def submit_and_wait(self, job: CopyJob, deadline: float) -> None:
        await self._still_there(job.target)
        await _wait(self._admit(job, wait=True), job, deadline)

    async def copy_now(self, job: CopyJob, deadline: float) -> None:
        await self._still_there(job.target)
        await _wait(self._admit(job, wait=True, now=True), job, deadline)

    async def _still_there(self, target: str) -> None:
        """Before a waiter is told "copied recently", make sure the mirror still has it."""
        if self.verify is None or target not in self._copied:
            return
        with contextlib.suppress(Exception):  # a failed check proves nothing
            if not await self.verify(target):
                self._copied.pop(target)

    async def aclose(self) -> None:
        self._closed = True
        for line in self._lines.values():
            line.clear()
        self.metrics.copy_queue_depth.set(0)
        # Each copy ends with CopyError(shutdown), which its waiters get.
        await asyncio.gather(self._copies.aclose(), self._verifications.aclose())

    def forget(self, target: str, priority: Priority = ADMISSION) -> None:
        """``target`` is gone from the mirror although it was copied: copy it again now."""
        copied = self._copied.pop(target)
        if copied is None or self._closed:
            return
        try:
            self.submit(copied[1], priority)
        except (QueueFull, CopyError) as exc:  # the next request asks again
            log.warning("recopy_not_started", target=target, error=str(exc))

    def _verify_soon(self, target: str, priority: Priority) -> None:
        """Check in the background that a recently copied image is still in the mirror
        (a lifecycle rule or a person may have deleted it); :meth:`forget` is called if not,
        at admission priority if admission asked while the check ran. One check per target at
        a time."""
        if self.verify is None:
            return
        if self._recopy_at.get(target) is not ADMISSION:
            self._recopy_at[target] = priority
        self._verifications.start(target, lambda: self._verify(target))

    async def _verify(self, target: str) -> None:
        assert self.verify is not None
        try:
            if not await self.verify(target):
                self.forget(target, self._recopy_at.get(target, ADMISSION))
        except Exception as exc:  # a failed check proves nothing; the next request asks again
            log.debug("verify_failed", target=target, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._recopy_at.pop(target, None)

    # -- state for tests and metrics ---------------------------------------------------------

    @property
    def queued(self) -> int:
        """Admission jobs waiting (bounded by ``max_queued``)."""
        return len(self._lines[ADMISSION])

    @property
    def queued_backfill(self) -> int:
        """Backfill jobs waiting (bounded by ``max_backfill_queued``)."""
        return len(self._lines[BACKFILL])

    @property
    def in_flight(self) -> int:
        return self._running

    def copying(self, target: str) -> bool:
        """Whether a copy to ``target`` is queued or running now."""
        return target in self._copies

    def copying_into(self, repository: str) -> bool:
        """Whether a copy into ``repository`` (a job's ``repository``) is queued or running
        now: one dict lookup (cleanup asks it per image)."""
        return self._into[repository] > 0

    # -- internals ---------------------------------------------------------------------------

    def _admit(
        self, job: CopyJob, *, wait: bool, now: bool = False, priority: Priority = ADMISSION
    ) -> asyncio.Task[None] | None:
        """The copy to wait on, or None when nothing needs copying."""
        if self._closed:
            raise CopyError("swapper is shutting down", CopyReason.SHUTDOWN)
        shared = self._copies.get(job.target)
        if shared is not None:
            queued = self._lines[ADMISSION].get(job.target) or self._lines[BACKFILL].get(job.target)
            if queued is not None and now:
                del self._lines[queued.priority][job.target]
                self._start(queued, on_worker=False)  # forced: outside the worker limit
            elif queued is not None and priority is ADMISSION and queued.priority is BACKFILL:
                self._bounded(ADMISSION)
                del self._lines[BACKFILL][job.target]
                queued.priority = ADMISSION
                self._lines[ADMISSION][job.target] = queued
            self.metrics.copies_not_started.labels("deduplicated").inc()
            self._dispatch()
            return shared
        clock = self.settings.clock()
        held = self._held.get(job.target)  # fresh while the backoff lasts
        if held is not None:
            self.metrics.copies_not_started.labels("backoff").inc()
            if wait:
                raise CopyError(
                    f"copy of {job.source} failed recently ({held.reason}); retrying in "
                    f"{held.until - clock:.0f}s",
                    held.reason,
                )
            return None
        copied = self._copied.get(job.target)  # fresh for fresh_for
        if copied is not None:
            age = clock - copied[0]
            if not (job.recheck and age >= max(job.recheck, self.settings.recheck_every)):
                self.metrics.copies_not_started.labels("fresh").inc()
                self._verify_soon(job.target, priority)
                return None
        if not now:
            self._bounded(priority)
        queued = _Queued(job.target, priority)
        copy = self._copies.start(job.target, lambda: self._copy(job, queued))
        self._count_into(job.repository, copy)
        if now:
            self._start(queued, on_worker=False)
        else:
            self._lines[priority][job.target] = queued
            self._dispatch()
        return copy

    def _count_into(self, repository: str, copy: asyncio.Task[None]) -> None:
        """Count ``copy`` under its repository until it ends (the callback holds the name
        only, not the job or the task)."""
        self._into[repository] += 1

        def ended(_: asyncio.Task[None]) -> None:
            self._into[repository] -= 1
            if self._into[repository] <= 0:
                del self._into[repository]

        copy.add_done_callback(ended)

    def _bounded(self, priority: Priority) -> None:
        """Raise :class:`QueueFull` (counted) when ``priority``'s line is at its bound."""
        if priority is ADMISSION:
            bound, label, what = self.settings.max_queued, "queue-full", "copy queue"
        else:
            bound, label = self.settings.max_backfill_queued, "backfill-queue-full"
            what = "backfill copy queue"
        if len(self._lines[priority]) >= bound:
            self.metrics.copies_not_started.labels(label).inc()
            raise QueueFull(f"{what} is full ({bound} waiting)")

    def _dispatch(self) -> None:
        """Start what free workers may take: admission jobs first, then backfill jobs while
        no admission job waits and backfill would leave a worker free (module docstring)."""
        if self._closed:
            return
        workers = self.settings.workers
        admission, backfill = self._lines[ADMISSION], self._lines[BACKFILL]
        while admission and (sum(self._busy.values()) < workers or not self._busy[ADMISSION]):
            self._start(admission.popitem(last=False)[1], on_worker=True)
        # An admission job still waiting means every worker is busy: no backfill job starts.
        while (
            backfill
            and sum(self._busy.values()) < workers
            and self._busy[BACKFILL] < max(1, workers - 1)
        ):
            self._start(backfill.popitem(last=False)[1], on_worker=True)
        self.metrics.copy_queue_depth.set(len(admission) + len(backfill))

    def _start(self, queued: _Queued, *, on_worker: bool) -> None:
        """Let ``queued`` (out of its line) start, holding a worker unless forced."""
        if on_worker:
            queued.on_worker = True
            self._busy[queued.priority] += 1
        queued.go.set()

    async def _copy(self, job: CopyJob, queued: _Queued) -> None:
        """The copy's task: wait for a worker (or ``force``), copy, free the worker."""
        try:
            try:
                await queued.go.wait()
            except asyncio.CancelledError:
                raise CopyError("swapper is shutting down", CopyReason.SHUTDOWN) from None
            await self._run(job)
        finally:
            if queued.on_worker:
                queued.on_worker = False
                self._busy[queued.priority] -= 1
                self._dispatch()

    async def _run(self, job: CopyJob) -> None:
        started = time.perf_counter()
        self.metrics.copies_started.inc()
        self.metrics.copies_in_flight.inc()
        self._running += 1
        try:
            await self.copier(job)
        except asyncio.CancelledError:
            raise CopyError("copy cancelled", CopyReason.SHUTDOWN) from None
        # No local names the error: its traceback holds this frame, and a cycle through it
        # would keep every failed copy's frames (and what they hold) until a full collection.
        except CopyError as exc:
            self._failed(job, exc)
            raise
        except Exception as exc:
            raise self._failed(job, _as_copy_error(exc)) from exc
        else:
            self._copied.set(job.target, (self.settings.clock(), job), self.settings.fresh_for)
            self._held.pop(job.target)
            self.metrics.copies_succeeded.inc()
        finally:
            self._running -= 1
            self.metrics.copies_in_flight.dec()
            self.metrics.copy_duration.observe(time.perf_counter() - started)

    def _failed(self, job: CopyJob, error: CopyError) -> CopyError:
        """Count, log and hold back a failed copy; returns ``error``."""
        previous = self._held.entry(job.target)  # the last failure, its backoff over or not
        failures = previous[0].failures + 1 if previous else 1
        s = self.settings
        delay = min(s.backoff_max, s.backoff_min * 2 ** (failures - 1))
        delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
        retry_after = error.retry_after if isinstance(error, TransientCopyError) else None
        if retry_after:
            delay = max(delay, retry_after)
        self._held.set(job.target, _Held(s.clock() + delay, error.reason, failures), delay)
        self._copied.pop(job.target)
        self.metrics.copies_failed.labels(error.reason).inc()
        log.warning(
            "copy_failed",
            source=str(job.source),
            target=job.target,
            namespace=job.namespace,
            reason=error.reason,
            error=str(error)[:500],
            failures=failures,
            retry_in=round(delay),
        )
        return error


async def _wait(copy: asyncio.Task[None] | None, job: CopyJob, deadline: float) -> None:
    """Wait up to ``deadline`` for ``copy`` (None: nothing to wait for).

    The copy's error, raised here, keeps this frame in its traceback: no local (here or in
    the caller) may hold the task that holds the error, or every failed copy would be a
    cycle, freed only by a full collection with all its frames. (``asyncio.wait_for`` keeps
    one such local of its own on Python 3.11, hence ``asyncio.timeout``.)
    """
    if copy is None:
        return
    try:
        async with asyncio.timeout(deadline):
            # shield: a waiter that gives up does not cancel a copy others may share.
            await asyncio.shield(copy)
    except TimeoutError:
        raise CopyDeadlineExceeded(
            f"copy of {job.source} did not finish in {deadline:g}s"
        ) from None
    finally:
        del copy


def _as_copy_error(exc: BaseException) -> CopyError:
    """A failure outside the copy engine: the target registry's API (``target``) or a bug."""
    reason = CopyReason.TARGET if isinstance(exc, RegistryError) else CopyReason.INTERNAL
    return CopyError(_describe(exc), reason)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
