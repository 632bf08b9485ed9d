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

from swapper.errors import (
    CopyDeadlineExceeded,
    CopyError,
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


@dataclass
class _Entry:
    job: CopyJob
    done: asyncio.Future[None]
    started: bool = False


@dataclass
class _Held:
    until: float
    reason: str
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
        self._entries: dict[str, _Entry] = {}
        self._waiting: asyncio.Queue[_Entry] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._forced: set[asyncio.Task[None]] = set()
        self._copied: dict[str, tuple[float, CopyJob]] = {}  # target -> (copied when, job)
        self._verifying: set[str] = set()
        self._held: dict[str, _Held] = {}
        self._closed = False

    # -- the protocol -------------------------------------------------------------------------

    def submit(self, job: CopyJob) -> None:
        self._admit(job, wait=False)

    async def submit_and_wait(self, job: CopyJob, deadline: float) -> None:
        await self._still_there(job.target)
        entry = self._admit(job, wait=True)
        if entry is not None:
            await self._wait(entry, deadline)

    async def copy_now(self, job: CopyJob, deadline: float) -> None:
        await self._still_there(job.target)
        entry = self._admit(job, wait=True, now=True)
        if entry is not None:
            await self._wait(entry, deadline)

    async def _still_there(self, target: str) -> None:
        """Before a waiter is told "copied recently", make sure the mirror still has it."""
        if self.verify is None or target not in self._copied:
            return
        with contextlib.suppress(Exception):  # a failed check proves nothing
            if not await self.verify(target):
                self._copied.pop(target, None)

    async def aclose(self) -> None:
        self._closed = True
        tasks = [*self._workers, *self._forced]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for entry in self._entries.values():
            if not entry.done.done():
                entry.done.set_exception(CopyError("swapper is shutting down", "shutdown"))
        self._entries.clear()
        self._workers.clear()

    def forget(self, target: str) -> None:
        """``target`` is gone from the mirror although it was copied: copy it again now."""
        copied = self._copied.pop(target, None)
        if copied is None or self._closed:
            return
        try:
            self.submit(copied[1])
        except (QueueFull, CopyError) as exc:  # the next admission asks again
            log.warning("recopy_not_started", target=target, error=str(exc))

    def _verify_soon(self, target: str) -> None:
        """Check in the background that a recently copied image is still in the mirror
        (a lifecycle rule or a person may have deleted it); :meth:`forget` is called if not."""
        if self.verify is None or target in self._verifying:
            return
        self._verifying.add(target)
        task = asyncio.get_running_loop().create_task(self._verify(target))
        self._forced.add(task)
        task.add_done_callback(self._forced.discard)

    async def _verify(self, target: str) -> None:
        assert self.verify is not None
        try:
            if not await self.verify(target):
                self.forget(target)
        except Exception as exc:  # a failed check proves nothing; the next request asks again
            log.debug("verify_failed", target=target, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._verifying.discard(target)

    # -- state for tests and metrics ---------------------------------------------------------

    @property
    def queued(self) -> int:
        return self._waiting.qsize() if self._waiting else 0

    @property
    def in_flight(self) -> int:
        return sum(1 for e in self._entries.values() if e.started)

    # -- internals ---------------------------------------------------------------------------

    def _admit(self, job: CopyJob, *, wait: bool, now: bool = False) -> _Entry | None:
        """The entry to wait on, or None when nothing needs copying."""
        if self._closed:
            raise CopyError("swapper is shutting down", "shutdown")
        entry = self._entries.get(job.target)
        if entry is not None:
            self.metrics.copies_not_started.labels("deduplicated").inc()
            if now and not entry.started:
                self._start_forced(entry)
            return entry
        clock = self.settings.clock()
        held = self._held.get(job.target)
        if held is not None and clock < held.until:
            self.metrics.copies_not_started.labels("backoff").inc()
            if wait:
                raise CopyError(
                    f"copy of {job.source} failed recently ({held.reason}); retrying in "
                    f"{held.until - clock:.0f}s",
                    held.reason,
                )
            return None
        copied = self._copied.get(job.target)
        if copied is not None:
            age = clock - copied[0]
            if age < self.settings.fresh_for and not (
                job.recheck and age >= self.settings.recheck_every
            ):
                self.metrics.copies_not_started.labels("fresh").inc()
                self._verify_soon(job.target)
                return None
        if not now and self.queued >= self.settings.max_queued:
            raise QueueFull(f"copy queue is full ({self.settings.max_queued} waiting)")
        loop = asyncio.get_running_loop()
        entry = _Entry(job, loop.create_future())
        entry.done.add_done_callback(_consume)
        self._entries[job.target] = entry
        if now:
            self._start_forced(entry)
        else:
            self._ensure_workers()
            assert self._waiting is not None
            self._waiting.put_nowait(entry)
            self.metrics.copy_queue_depth.set(self._waiting.qsize())
        return entry

    def _ensure_workers(self) -> None:
        if self._waiting is None:
            self._waiting = asyncio.Queue()
        if not self._workers:
            self._workers = [
                asyncio.get_running_loop().create_task(self._worker(), name=f"copy-worker-{i}")
                for i in range(self.settings.workers)
            ]

    def _start_forced(self, entry: _Entry) -> None:
        entry.started = True  # a worker that dequeues it later skips it
        task = asyncio.get_running_loop().create_task(self._run(entry))
        self._forced.add(task)
        task.add_done_callback(self._forced.discard)

    async def _worker(self) -> None:
        assert self._waiting is not None
        while True:
            entry = await self._waiting.get()
            self.metrics.copy_queue_depth.set(self._waiting.qsize())
            if entry.started or entry.done.done():
                continue
            entry.started = True
            await self._run(entry)

    async def _run(self, entry: _Entry) -> None:
        job = entry.job
        started = time.perf_counter()
        self.metrics.copies_started.inc()
        self.metrics.copies_in_flight.inc()
        try:
            await self.copier(job)
        except asyncio.CancelledError:
            if not entry.done.done():
                entry.done.set_exception(CopyError("copy cancelled", "shutdown"))
            raise
        except Exception as exc:
            error = exc if isinstance(exc, CopyError) else _as_copy_error(exc)
            self._failed(job, error)
            if not entry.done.done():
                entry.done.set_exception(error)
        else:
            self._copied[job.target] = (self.settings.clock(), job)
            self._held.pop(job.target, None)
            self.metrics.copies_succeeded.inc()
            if not entry.done.done():
                entry.done.set_result(None)
        finally:
            self.metrics.copies_in_flight.dec()
            self.metrics.copy_duration.observe(time.perf_counter() - started)
            if self._entries.get(job.target) is entry:
                del self._entries[job.target]

    def _failed(self, job: CopyJob, error: CopyError) -> None:
        previous = self._held.get(job.target)
        failures = previous.failures + 1 if previous else 1
        s = self.settings
        delay = min(s.backoff_max, s.backoff_min * 2 ** (failures - 1))
        delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
        retry_after = error.retry_after if isinstance(error, TransientCopyError) else None
        if retry_after:
            delay = max(delay, retry_after)
        self._held[job.target] = _Held(s.clock() + delay, error.reason, failures)
        self._copied.pop(job.target, None)
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

    async def _wait(self, entry: _Entry, deadline: float) -> None:
        try:
            # shield: a waiter that gives up does not cancel a copy others may share.
            await asyncio.wait_for(asyncio.shield(entry.done), deadline)
        except TimeoutError:
            raise CopyDeadlineExceeded(
                f"copy of {entry.job.source} did not finish in {deadline:g}s"
            ) from None


def _consume(future: asyncio.Future[None]) -> None:
    """Mark a copy's outcome as seen, so a failure nobody waited for is not reported twice
    (it is logged once by the queue)."""
    with contextlib.suppress(asyncio.CancelledError):
        future.exception()


def _as_copy_error(exc: BaseException) -> CopyError:
    """A failure outside the copy engine: the target registry's API (``target``) or a bug."""
    reason = "target" if isinstance(exc, RegistryError) else "internal"
    return CopyError(_describe(exc), reason)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
