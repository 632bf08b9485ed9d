"""Keeps swapper's long-running tasks running, each by name.

A :class:`Supervisor` starts every task it was given (:meth:`~Supervisor.add`, in dependency
order) and more while it runs (:meth:`~Supervisor.spawn`: the controller's loops, started and
stopped with the leadership). A task that raises is logged (``task_failed``), counted
(``swapper_task_restarts_total``) and started again after a backoff that doubles from
``supervisor.backoffMin`` to ``supervisor.backoffMax`` (with jitter, back to the minimum once
the task has run fine for a while). A task that returns has finished: it is not started again.

:meth:`~Supervisor.ready` is False while a *critical* task (one the webhook depends on) has
been waiting to restart for longer than ``supervisor.notReadyAfter``. :meth:`~Supervisor.stop`
cancels the tasks in the reverse order of their addition, all within
``supervisor.shutdownTimeout``; a task that ignores its cancellation is abandoned, with a line.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from swapper.config import SupervisorSettings
from swapper.logs import get_logger
from swapper.metrics import Metrics

log = get_logger("swapper.supervisor")

RESET_AFTER = 60.0
"""Seconds a task runs without failing before its backoff starts over from the minimum
(or ``backoffMax``, when that is longer)."""
JITTER = 0.2
"""Each backoff is shortened by a random part of up to this fraction of it."""
_MAX_DOUBLINGS = 32


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One long-running task: ``run`` is called again for each restart."""

    name: str
    run: Callable[[], Awaitable[None]]
    critical: bool = False  # the webhook depends on it: /readyz fails while it stays down


class _Slot:
    __slots__ = ("down_since", "failures", "spec", "stopping", "task")

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.task: asyncio.Task[None] | None = None
        self.down_since: float | None = None  # clock() when it failed; None while it runs
        self.failures = 0  # in a row, for the backoff
        self.stopping = False


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Supervisor:
    """Owns every long-running task by name (see the module docstring).

    ``clock`` times failures for :meth:`ready` and the backoff reset; ``sleep`` waits out a
    backoff (tests pass their own for both).
    """

    def __init__(
        self,
        metrics: Metrics,
        settings: SupervisorSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.metrics = metrics
        self.settings = settings or SupervisorSettings()
        self.clock = clock
        self._sleep = sleep
        self._slots: dict[str, _Slot] = {}  # in the order of addition
        self._running = False
        self._reset_after = max(RESET_AFTER, self.settings.backoff_max)

    @property
    def running(self) -> bool:
        return self._running

    def names(self) -> list[str]:
        """The tasks it holds, running or waiting to restart, in the order of addition."""
        return [name for name, slot in self._slots.items() if not _finished(slot)]

    def add(self, spec: TaskSpec) -> None:
        """Add a task to start with :meth:`start` (before it: afterwards, :meth:`spawn`)."""
        if self._running:
            raise RuntimeError(f"the supervisor runs already: spawn {spec.name!r} instead")
        self._check_name(spec.name)
        self._slots[spec.name] = _Slot(spec)

    async def start(self) -> None:
        """Start every task added, in the order of addition."""
        self._running = True
        for slot in list(self._slots.values()):
            if slot.task is None:
                self._launch(slot)

    def spawn(self, spec: TaskSpec) -> None:
        """Start a task now, beside the others (the supervisor must be running)."""
        if not self._running:
            raise RuntimeError(f"the supervisor is not running: cannot spawn {spec.name!r}")
        self._check_name(spec.name)
        slot = _Slot(spec)
        self._slots[spec.name] = slot
        self._launch(slot)

    async def cancel(self, name: str) -> None:
        """Stop one task and wait for it (at most ``shutdownTimeout``); no task: nothing."""
        slot = self._slots.pop(name, None)
        if slot is not None:
            await self._halt(slot, self.settings.shutdown_timeout)

    async def stop(self) -> None:
        """Stop every task, in the reverse order of addition, within ``shutdownTimeout``."""
        self._running = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout
        while self._slots:
            _, slot = self._slots.popitem()  # the last added first
            await self._halt(slot, max(0.0, deadline - loop.time()))

    def ready(self) -> bool:
        """False while a critical task has been down longer than ``notReadyAfter``."""
        return not self.down()

    def down(self) -> list[str]:
        """The critical tasks down (waiting to restart) longer than ``notReadyAfter``."""
        now = self.clock()
        limit = self.settings.not_ready_after
        return [
            name
            for name, slot in self._slots.items()
            if slot.spec.critical and slot.down_since is not None and now - slot.down_since > limit
        ]

    # -- inside -----------------------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        held = self._slots.get(name)
        if held is not None and not _finished(held):
            raise ValueError(f"a task named {name!r} is supervised already")

    def _launch(self, slot: _Slot) -> None:
        name = slot.spec.name
        slot.task = asyncio.get_running_loop().create_task(self._keep(slot), name=name)

    def backoff(self, failures: int) -> float:
        """The longest wait after ``failures`` failures in a row (before its jitter)."""
        doublings = min(max(failures - 1, 0), _MAX_DOUBLINGS)
        return float(min(self.settings.backoff_max, self.settings.backoff_min * 2**doublings))

    async def _keep(self, slot: _Slot) -> None:
        name = slot.spec.name
        up = self.metrics.task_up.labels(name)
        try:
            while True:
                slot.down_since = None
                up.set(1)
                started = self.clock()
                try:
                    await slot.spec.run()
                except Exception as exc:
                    if slot.stopping:
                        return
                    if self.clock() - started >= self._reset_after:
                        slot.failures = 0
                    slot.failures += 1
                    delay = self.backoff(slot.failures) * (1 - JITTER * random.random())  # noqa: S311
                    slot.down_since = self.clock()
                    up.set(0)
                    self.metrics.task_restarts.labels(name).inc()
                    log.warning(
                        "task_failed",
                        task=name,
                        error=_describe(exc),
                        retry_in=round(delay, 3),
                        failures=slot.failures,
                    )
                    await self._sleep(delay)
                else:
                    if not slot.stopping:
                        log.info("task_finished", task=name)
                    return
        finally:
            up.set(0)
            slot.down_since = None

    async def _halt(self, slot: _Slot, within: float) -> None:
        task = slot.task
        if task is None or task.done():
            return
        slot.stopping = True
        task.cancel()
        if task is asyncio.current_task():  # a task stopping itself: it ends when it yields
            return
        done, _ = await asyncio.wait({task}, timeout=within)
        if not done:
            log.warning("task_abandoned", task=slot.spec.name, waited=round(within, 3))
            slot.down_since = None
            self.metrics.task_up.labels(slot.spec.name).set(0)
        elif not task.cancelled():
            task.exception()  # retrieved (``_keep`` raises nothing but its cancellation)


def _finished(slot: _Slot) -> bool:
    return slot.task is not None and slot.task.done()
