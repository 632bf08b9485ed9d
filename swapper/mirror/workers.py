"""The copy queue ``swapper serve`` runs: bounded workers over a bounded queue.

What it promises (the :class:`~swapper.mirror.queue.CopyQueue` protocol, plus):

- **One copy per target at a time.** A target reference that is queued or being copied is not
  started again: later requests (``delayed`` hand-overs, ``immediate`` waiters, ``force``) share
  the copy in flight. ``force`` starts a queued copy at once, outside the worker limit.
- **Bounds.** ``workers`` copies run at once; at most ``max_queued`` wait. A hand-over beyond
  that raises :class:`~swapper.errors.QueueFull` (admission reports ``queue-full``).
- **No hammering, and no stale belief.** A target copied successfully within ``fresh_for``
  seconds is not copied again, but ``verify`` (the cached existence check) confirms in the
  background that the mirror still has it; when it is gone, it is copied again at once. A job
  with ``recheck`` (a tag pulled with ``imagePullPolicy: Always``) is copied again at most once
  per ``recheck_every`` seconds: the copier compares digests and pushes only what changed. A
  failed target is held back for a backoff that doubles per consecutive failure (from
  ``backoff_min`` up to ``backoff_max``, with jitter), or for what the registry asked in
  ``Retry-After`` if longer. An ``immediate`` or ``force`` request for a held-back target fails
  at once with the last reason.
- **Failures are contained.** Each failed copy is logged once (source, target, reason) and
  counted by reason; an exception from the copier never stops a worker.
- **Waiters never cancel a copy.** A deadline ends the wait, not the copy others may share.
- **Bounded memory.** What is remembered per target (copied when, for ``fresh_for``; the last
  failure, for the backoff) is kept for at most ``max_remembered`` targets each, the least
  recently used forgotten first: a forgotten copy is copied again (the copier compares digests
  and sends only what changed), a forgotten failure is tried again sooner.

Copies in flight (queued or running) are a :class:`~swapper.aio.SingleFlight` keyed by target:
every request for a target shares its one task, and a failure nobody waits for is not reported
again by asyncio (it is logged once here).

The copier does the work; retries of single requests (5xx, resets, 429) live in
:mod:`swapper.oci`, so a copy failing here has already had its retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
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
from swapper.mirror.queue import CopyJob

log = get_logger("swapper.mirror")

Copier = Callable[[CopyJob], Awaitable[Any]]
"""Copies one job; raises :class:`CopyError` (with a ``reason``) when it cannot."""


@dataclass(eq=False)
class _Queued:
    """A copy waiting for a worker to let it start (or for ``force``, which lets it at once)."""

    target: str
    copy: asyncio.Task[None]  # its task in the flight, waiting for go
    go: asyncio.Event


@dataclass
class _Held:
    until: float
    reason: CopyReason
    failures: int


@dataclass
class QueueSettings:
    """Sizes and timings of the copy queue (``copyQueue`` in the config)."""

    workers: int = 4
    max_queued: int = 1000
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
        self._queued: dict[str, _Queued] = {}  # not started yet (at most max_queued)
        self._waiting: asyncio.Queue[_Queued] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._running = 0
        # target -> (copied when, job), fresh for fresh_for
        self._copied: TTLMap[str, tuple[float, CopyJob]] = TTLMap(s.max_remembered, s.clock)
        self._verifications: SingleFlight[str, None] = SingleFlight()
        # target -> the last failure, held back while fresh; read when stale for the count
        self._held: TTLMap[str, _Held] = TTLMap(s.max_remembered, s.clock)
        self._closed = False

    # -- the protocol -------------------------------------------------------------------------

    def submit(self, job: CopyJob) -> None:
        self._admit(job, wait=False)

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
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        # Each copy ends with CopyError(shutdown), which its waiters get.
        await asyncio.gather(self._copies.aclose(), self._verifications.aclose())
        self._queued.clear()
        self._workers.clear()

    def forget(self, target: str) -> None:
        """``target`` is gone from the mirror although it was copied: copy it again now."""
        copied = self._copied.pop(target)
        if copied is None or self._closed:
            return
        try:
            self.submit(copied[1])
        except (QueueFull, CopyError) as exc:  # the next admission asks again
            log.warning("recopy_not_started", target=target, error=str(exc))

    def _verify_soon(self, target: str) -> None:
        """Check in the background that a recently copied image is still in the mirror
        (a lifecycle rule or a person may have deleted it); :meth:`forget` is called if not.
        One check per target at a time."""
        if self.verify is not None:
            self._verifications.start(target, lambda: self._verify(target))

    async def _verify(self, target: str) -> None:
        assert self.verify is not None
        try:
            if not await self.verify(target):
                self.forget(target)
        except Exception as exc:  # a failed check proves nothing; the next request asks again
            log.debug("verify_failed", target=target, error=f"{type(exc).__name__}: {exc}")

    # -- state for tests and metrics ---------------------------------------------------------

    @property
    def queued(self) -> int:
        return self._waiting.qsize() if self._waiting else 0

    @property
    def in_flight(self) -> int:
        return self._running

    # -- internals ---------------------------------------------------------------------------

    def _admit(self, job: CopyJob, *, wait: bool, now: bool = False) -> asyncio.Task[None] | None:
        """The copy to wait on, or None when nothing needs copying."""
        if self._closed:
            raise CopyError("swapper is shutting down", CopyReason.SHUTDOWN)
        shared = self._copies.get(job.target)
        if shared is not None:
            self.metrics.copies_not_started.labels("deduplicated").inc()
            queued = self._queued.pop(job.target, None) if now else None
            if queued is not None:
                queued.go.set()  # forced: it starts at once, outside the worker limit
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
            if not (job.recheck and age >= self.settings.recheck_every):
                self.metrics.copies_not_started.labels("fresh").inc()
                self._verify_soon(job.target)
                return None
        if not now and self.queued >= self.settings.max_queued:
            self.metrics.copies_not_started.labels("queue-full").inc()
            raise QueueFull(f"copy queue is full ({self.settings.max_queued} waiting)")
        go = asyncio.Event()
        copy = self._copies.start(job.target, lambda: self._copy(job, go))
        if now:
            go.set()
        else:
            self._ensure_workers()
            assert self._waiting is not None
            queued = self._queued[job.target] = _Queued(job.target, copy, go)
            self._waiting.put_nowait(queued)
            self.metrics.copy_queue_depth.set(self._waiting.qsize())
        return copy

    def _ensure_workers(self) -> None:
        if self._waiting is None:
            self._waiting = asyncio.Queue()
        if not self._workers:
            self._workers = [
                asyncio.get_running_loop().create_task(self._worker(), name=f"copy-worker-{i}")
                for i in range(self.settings.workers)
            ]

    async def _worker(self) -> None:
        assert self._waiting is not None
        while True:
            # No local keeps the last copy (and its error's traceback) while the queue is empty.
            await self._turn(await self._waiting.get())

    async def _turn(self, queued: _Queued) -> None:
        """A worker's turn: start ``queued`` (unless it was forced meanwhile), wait for it."""
        assert self._waiting is not None
        self.metrics.copy_queue_depth.set(self._waiting.qsize())
        if queued.go.is_set():
            return  # forced meanwhile
        if self._queued.get(queued.target) is queued:
            del self._queued[queued.target]
        queued.go.set()
        await asyncio.wait([queued.copy])  # its outcome is its waiters'

    async def _copy(self, job: CopyJob, go: asyncio.Event) -> None:
        """The copy's task: wait for a worker (or ``force``), then copy."""
        try:
            await go.wait()
        except asyncio.CancelledError:
            raise CopyError("swapper is shutting down", CopyReason.SHUTDOWN) from None
        await self._run(job)

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
