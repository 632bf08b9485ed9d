"""The supervisor keeps named tasks running: restarts with backoff, readiness, ordered stop."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from e2e.cluster import Cluster

from swapper import supervisor as supervisor_module
from swapper.access.keyring import DOCKER_CONFIG_JSON
from swapper.access.source_credentials import SourceCredentials
from swapper.config import SupervisorSettings
from swapper.metrics import Metrics
from swapper.supervisor import JITTER, Supervisor, TaskSpec


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Waits:
    """Backoff waits that end when the test says so; their delays are recorded."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.waiting = asyncio.Event()
        self._go = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self._go = asyncio.Event()
        self.waiting.set()
        await self._go.wait()

    def release(self) -> None:
        self.waiting.clear()
        self._go.set()


class Lines:
    """Stands in for the module's logger: the events logged, with their fields."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []
        self._seen: dict[str, asyncio.Event] = {}

    def __getattr__(self, level: str) -> Callable[..., None]:
        def record(event: str, **fields: Any) -> None:
            self.lines.append((event, fields))
            self.seen(event).set()

        return record

    def seen(self, event: str) -> asyncio.Event:
        """Set once ``event`` was logged."""
        return self._seen.setdefault(event, asyncio.Event())

    def events(self) -> list[str]:
        return [event for event, _ in self.lines]


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Lines:
    recorder = Lines()
    monkeypatch.setattr(supervisor_module, "log", recorder)
    return recorder


def settings(**values: Any) -> SupervisorSettings:
    return SupervisorSettings.model_validate(
        {"backoffMin": 1, "backoffMax": 4, "notReadyAfter": 10, "shutdownTimeout": 5, **values}
    )


def sample(metrics: Metrics, name: str, task: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"task": task})


class Flaky:
    """Raises ``failures`` times, then runs until cancelled; ``started`` counts its runs."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.started = 0
        self.running = asyncio.Event()

    async def run(self) -> None:
        self.started += 1
        if self.started <= self.failures:
            raise RuntimeError(f"failure {self.started}")
        self.running.set()
        await asyncio.Event().wait()


async def within(waitable: Awaitable[Any]) -> None:
    async with asyncio.timeout(5):
        await waitable


async def test_a_task_that_raises_is_restarted_with_backoff(lines: Lines) -> None:
    metrics, waits, task = Metrics(), Waits(), Flaky(failures=4)
    supervisor = Supervisor(metrics, settings(), Clock(), sleep=waits)
    supervisor.add(TaskSpec("flaky", task.run))
    await supervisor.start()
    for _ in range(4):
        await within(waits.waiting.wait())
        assert sample(metrics, "swapper_task_up", "flaky") == 0
        waits.release()
    await within(task.running.wait())
    assert sample(metrics, "swapper_task_up", "flaky") == 1
    assert sample(metrics, "swapper_task_restarts_total", "flaky") == 4
    # 1s doubling to the 4s cap, each shortened by at most the jitter
    for delay, longest in zip(waits.delays, [1, 2, 4, 4], strict=True):
        assert longest * (1 - JITTER) <= delay <= longest
    failed = [fields for event, fields in lines.lines if event == "task_failed"]
    assert [f["error"] for f in failed] == [f"RuntimeError: failure {n}" for n in range(1, 5)]
    assert {f["task"] for f in failed} == {"flaky"}
    assert [f["retry_in"] for f in failed] == [round(d, 3) for d in waits.delays]
    await supervisor.stop()


async def test_the_backoff_starts_over_after_the_task_ran_fine_for_a_while(lines: Lines) -> None:
    clock, waits = Clock(), Waits()
    runs = 0

    async def fails_later() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:  # the third run lasts long enough to count as fine
            clock.now += 61
        raise RuntimeError("down")

    supervisor = Supervisor(Metrics(), settings(), clock, sleep=waits)
    supervisor.add(TaskSpec("later", fails_later))
    await supervisor.start()
    for _ in range(2):
        await within(waits.waiting.wait())
        waits.release()
    await within(waits.waiting.wait())
    assert [round(d / (1 - JITTER / 2)) for d in waits.delays] == [1, 2, 1]
    await supervisor.stop()


async def test_a_task_that_returns_is_not_restarted(lines: Lines) -> None:
    metrics, waits = Metrics(), Waits()
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1

    supervisor = Supervisor(metrics, settings(), Clock(), sleep=waits)
    supervisor.add(TaskSpec("once", once))
    await supervisor.start()
    await within(lines.seen("task_finished").wait())
    assert runs == 1
    assert waits.delays == []
    assert sample(metrics, "swapper_task_up", "once") == 0
    assert sample(metrics, "swapper_task_restarts_total", "once") is None
    assert supervisor.names() == []
    await supervisor.stop()


async def test_a_critical_task_down_longer_than_the_threshold_makes_it_not_ready(
    lines: Lines,
) -> None:
    clock, waits, task = Clock(), Waits(), Flaky(failures=1)
    supervisor = Supervisor(Metrics(), settings(notReadyAfter=10), clock, sleep=waits)
    supervisor.add(TaskSpec("informers", task.run, critical=True))
    await supervisor.start()
    await within(waits.waiting.wait())
    clock.now += 10
    assert supervisor.ready()  # down, but not longer than the threshold yet
    clock.now += 0.5
    assert not supervisor.ready()
    assert supervisor.down() == ["informers"]
    waits.release()
    await within(task.running.wait())
    assert supervisor.ready()
    assert supervisor.down() == []
    await supervisor.stop()


async def test_a_non_critical_task_that_stays_down_does_not_affect_readiness(
    lines: Lines,
) -> None:
    clock, waits, task = Clock(), Waits(), Flaky(failures=1)
    supervisor = Supervisor(Metrics(), settings(), clock, sleep=waits)
    supervisor.add(TaskSpec("flusher", task.run))
    await supervisor.start()
    await within(waits.waiting.wait())
    clock.now += 3600
    assert supervisor.ready()
    assert supervisor.down() == []
    await supervisor.stop()


async def test_stop_cancels_the_tasks_in_the_reverse_order_of_their_addition(
    lines: Lines,
) -> None:
    stopped: list[str] = []
    started = asyncio.Event()

    def until_cancelled(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            try:
                started.set()
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0)  # stopping takes a turn of the loop
                stopped.append(name)

        return run

    supervisor = Supervisor(Metrics(), settings(), Clock())
    for name in ("certificates", "informers", "answers"):
        supervisor.add(TaskSpec(name, until_cancelled(name)))
    await supervisor.start()
    supervisor.spawn(TaskSpec("backfill", until_cancelled("backfill")))
    await within(started.wait())
    await supervisor.stop()
    assert stopped == ["backfill", "answers", "informers", "certificates"]
    assert supervisor.names() == []


async def test_stop_ends_within_the_shutdown_timeout_despite_a_task_that_ignores_cancellation(
    lines: Lines,
) -> None:
    stubborn_running = asyncio.Event()
    polite_stopped = asyncio.Event()
    released = asyncio.Event()  # lets the stubborn task end once the test is done

    async def stubborn() -> None:
        while not released.is_set():
            try:
                stubborn_running.set()
                await released.wait()
            except asyncio.CancelledError:
                continue

    async def polite() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            polite_stopped.set()

    supervisor = Supervisor(Metrics(), settings(shutdownTimeout=0.2), Clock())
    supervisor.add(TaskSpec("polite", polite))
    supervisor.add(TaskSpec("stubborn", stubborn))
    await supervisor.start()
    await within(stubborn_running.wait())
    began = time.monotonic()
    await supervisor.stop()
    assert time.monotonic() - began < 1.0
    assert polite_stopped.is_set()  # the budget was spent, yet the next task was cancelled
    assert ("task_abandoned", {"task": "stubborn", "waited": 0.2}) in [
        (event, {k: round(v, 1) if k == "waited" else v for k, v in fields.items()})
        for event, fields in lines.lines
    ]
    released.set()


async def test_a_task_spawned_while_running_can_be_cancelled_by_name(lines: Lines) -> None:
    metrics = Metrics()
    running, stopped = asyncio.Event(), asyncio.Event()

    async def loop() -> None:
        try:
            running.set()
            await asyncio.Event().wait()
        finally:
            stopped.set()

    supervisor = Supervisor(metrics, settings(), Clock())
    await supervisor.start()
    supervisor.spawn(TaskSpec("pod-watch", loop))
    await within(running.wait())
    assert supervisor.names() == ["pod-watch"]
    assert sample(metrics, "swapper_task_up", "pod-watch") == 1
    await supervisor.cancel("pod-watch")
    assert stopped.is_set()  # cancel waited for it
    assert supervisor.names() == []
    assert sample(metrics, "swapper_task_up", "pod-watch") == 0
    running.clear()
    supervisor.spawn(TaskSpec("pod-watch", loop))  # the name is free again
    await within(running.wait())
    await supervisor.cancel("unknown")  # nothing to stop
    await supervisor.stop()


async def test_a_task_waiting_out_its_backoff_is_cancelled_at_once(lines: Lines) -> None:
    waits, task = Waits(), Flaky(failures=1)
    supervisor = Supervisor(Metrics(), settings(), Clock(), sleep=waits)
    await supervisor.start()
    supervisor.spawn(TaskSpec("flaky", task.run))
    await within(waits.waiting.wait())
    await within(supervisor.cancel("flaky"))
    assert task.started == 1


async def test_two_tasks_cannot_share_a_name(lines: Lines) -> None:
    supervisor = Supervisor(Metrics(), settings(), Clock())
    supervisor.add(TaskSpec("one", Flaky(0).run))
    with pytest.raises(ValueError, match="'one'"):
        supervisor.add(TaskSpec("one", Flaky(0).run))
    await supervisor.start()
    with pytest.raises(ValueError, match="'one'"):
        supervisor.spawn(TaskSpec("one", Flaky(0).run))
    with pytest.raises(RuntimeError):
        supervisor.add(TaskSpec("two", Flaky(0).run))
    await supervisor.stop()


async def _eventually(condition: Callable[[], bool], what: str) -> None:
    for _ in range(500):  # 10 s
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what}: not in time")


async def test_pull_secret_informers_restarted_under_the_same_name_follow_the_cluster_again(
    cluster: Cluster, lines: Lines
) -> None:
    from kubernetes import client

    namespace = cluster.namespace(f"supervisor-{uuid.uuid4().hex[:6]}")
    core = client.CoreV1Api(cluster.api_client())
    store = SourceCredentials(cluster.api_client(), watch_timeout=1)
    supervisor = Supervisor(Metrics(), settings(), Clock())
    await supervisor.start()
    try:
        supervisor.spawn(TaskSpec("source-credentials", store.run, critical=True))
        await _eventually(lambda: store.synced, "first sync")
        await supervisor.cancel("source-credentials")
        supervisor.spawn(TaskSpec("source-credentials", store.run, critical=True))
        auths = {"ghcr.io": {"username": "robot", "password": "robot-pw"}}
        data = base64.b64encode(json.dumps({"auths": auths}).encode()).decode()
        secret = {
            "metadata": {"namespace": namespace, "name": "ghcr"},
            "type": DOCKER_CONFIG_JSON,
            "data": {".dockerconfigjson": data},
        }
        await asyncio.to_thread(core.create_namespaced_secret, namespace, secret)

        def found() -> bool:
            keyring = store.keyring(namespace, ["ghcr"])
            return [c.username for c in keyring.lookup("ghcr.io/acme/app")] == ["robot"]

        await _eventually(found, "the secret created after the restart")
    finally:
        await supervisor.stop()
