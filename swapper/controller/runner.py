"""The cluster half put together: leader election, and the loops the leader runs.

Every replica runs the elector (a supervised task). The replica that holds the Lease starts the
pod watch and, over it, the backfill, the healer and the monitor as supervised tasks of their
own; when it loses the Lease (or shuts down) it stops them before another replica could take
the Lease over.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from swapper.backends import Backends
from swapper.config import Config, CopyPolicy
from swapper.controller.backfill import Backfill, PodImages, PodPlanner, PodRecord
from swapper.controller.heal import Healer
from swapper.controller.leader import LeaderElector
from swapper.controller.monitor import Monitor, MonitorOptions
from swapper.kube.events import PodEvents
from swapper.kube.informer import Informer
from swapper.kube.leases import LeaseStore
from swapper.kube.pods import PodPatches
from swapper.logs import get_logger
from swapper.mutation import Policy
from swapper.supervisor import Supervisor, TaskSpec

log = get_logger("swapper.controller")

POD_WATCH = "pod-watch"
BACKFILL = "backfill"
HEAL = "heal"
MONITOR = "monitor"
ELECTION = "leader-election"


class PodWatch:
    """Pods of every namespace, paged list then a resumable watch (see
    :class:`~swapper.kube.informer.Informer`), each kept as what ``planner`` makes of it."""

    def __init__(
        self, list_pods: Any, planner: PodPlanner, page_size: int, watch_timeout: int = 300
    ) -> None:
        self.informer: Informer[PodRecord] = Informer(
            "pods",
            list_pods,
            planner,
            page_size=page_size,
            watch_timeout=watch_timeout,
        )
        self.planner = planner

    def records(self) -> list[PodRecord]:
        """A snapshot of the cache's values (the informer's thread changes the dict)."""
        return list(self.informer.items.copy().values())

    def jobs(self) -> list[PodImages]:
        """The backfill's view: each pod's copies."""
        return [record.jobs for record in self.records() if record.jobs]

    async def run(self) -> None:
        """Run the informer in a thread until cancelled; the cache is emptied on the way out,
        so the next leadership starts from a fresh list."""
        stop = threading.Event()
        informer = self.informer
        informer.resource_version = ""
        thread = threading.Thread(target=informer.run, args=(stop,), name="informer-pods")
        thread.daemon = True  # a hung API connection must not keep the process alive
        thread.start()
        gauge = self.planner.metrics.controller_pods
        try:
            while thread.is_alive():
                gauge.set(len(informer.items))
                await asyncio.sleep(1.0)
        finally:
            stop.set()
            informer.interrupt()
            await asyncio.to_thread(thread.join, 10.0)
            informer.items = {}
            informer.synced.clear()
            gauge.set(0)


class Controller:
    """The elector, and the loops it starts and stops (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        backends: Backends,
        api_client: Any,
        supervisor: Supervisor,
        store: LeaseStore,
        identity: str,
        events: PodEvents | None = None,
        patches: PodPatches | None = None,
    ) -> None:
        from kubernetes import client

        from swapper.kube.events import EventRecorder
        from swapper.kube.pods import KubePodPatches

        self.config = config
        self.supervisor = supervisor
        self.metrics = backends.metrics
        settings = config.controller
        self.planner = PodPlanner(
            Policy.from_config(config),
            backends.target.is_origin,
            backends.metrics,
            config.server.max_containers,
        )
        core = client.CoreV1Api(api_client)
        self.watch = PodWatch(core.list_pod_for_all_namespaces, self.planner, settings.page_size)
        self.backfill = Backfill(
            self.watch.jobs,
            lambda: self.watch.informer.generation,
            backends.target,
            backends.queue,
            backends.access,
            backends.metrics,
            copies=copies(config),
            max_images=settings.max_images,
        )
        target = backends.target
        # The mirror asked past the existence cache when there is one (swapper serve's).
        exists_now = getattr(target, "image_exists_now", target.image_exists)
        events = events if events is not None else EventRecorder(api_client)
        self.healer = Healer(
            self.watch.records,
            lambda: self.watch.informer.generation,
            exists_now,
            backends.queue,
            events,
            backends.metrics,
            side_effects=not config.dry_run,
            cooldown=settings.heal.cooldown,
            revert=settings.heal.revert,
            probe=backends.probe,
            patches=patches if patches is not None else KubePodPatches(api_client),
        )
        self.monitor = (
            Monitor(
                self.watch.records,
                lambda: self.watch.informer.generation,
                target.image_digest,
                backends.probe,
                backends.queue,
                events,
                backends.metrics,
                monitor_options(config),
            )
            if backends.probe is not None
            else None
        )
        self.elector = LeaderElector(
            store,
            settings.lease_name,
            identity,
            lease_duration=settings.lease_duration,
            renew_deadline=settings.renew_deadline,
            retry_period=settings.retry_period,
            on_started=self._start,
            on_stopped=self._stop,
            metrics=backends.metrics,
        )
        self._leading = False

    def tasks(self) -> list[TaskSpec]:
        """What every replica runs: the elector."""
        return [TaskSpec(ELECTION, self.elector.run)]

    @property
    def leading(self) -> bool:
        return self._leading

    async def _start(self) -> None:
        self._leading = True
        self.supervisor.spawn(TaskSpec(POD_WATCH, self.watch.run))
        self._spawn_loops()
        log.info(
            "controller_started",
            backfill=self.config.controller.backfill,
            heal=self.config.controller.heal.enabled,
        )

    def _spawn_loops(self) -> None:
        """The leader's loops over the pod watch, as the config has them."""
        if self.config.controller.backfill:
            self.supervisor.spawn(TaskSpec(BACKFILL, self.backfill.run))
        if self.config.controller.heal.enabled:
            self.supervisor.spawn(TaskSpec(HEAL, self.healer.run))
        if self.monitor is not None and self.config.controller.monitor.enabled:
            self.supervisor.spawn(TaskSpec(MONITOR, self.monitor.run))

    async def _stop_loops(self) -> None:
        await self.supervisor.cancel(MONITOR)
        if self.monitor is not None:
            self.monitor.clear()
        await self.supervisor.cancel(HEAL)
        await self.supervisor.cancel(BACKFILL)
        await self.supervisor.cancel(POD_WATCH)

    async def _stop(self) -> None:
        if not self._leading:
            return
        self._leading = False
        await self._stop_loops()
        log.info("controller_stopped")

    async def reconfigure(self, config: Config) -> None:
        """A reloaded config: the new policy for planning, and a fresh list of pods under it
        (the cache holds what the old filters decided)."""
        backfill_changed = config.controller.backfill != self.config.controller.backfill
        self.config = config
        self.planner.policy = Policy.from_config(config)
        self.backfill.copies = copies(config)
        self.healer.side_effects = not config.dry_run
        self.healer.revert = config.controller.heal.revert
        if self.monitor is not None:
            self.monitor.options = monitor_options(config)
        if self._leading:
            await self._stop_loops()
            self.supervisor.spawn(TaskSpec(POD_WATCH, self.watch.run))
            self._spawn_loops()
        log.info("controller_reconfigured", backfill_changed=backfill_changed)


def copies(config: Config) -> bool:
    """Whether the backfill copies: as admission would (never under ``imageCopyPolicy:
    none``), and in dry-run only with ``controller.prefill``."""
    if config.image_copy_policy is CopyPolicy.NONE:
        return False
    return not config.dry_run or config.controller.prefill


def monitor_options(config: Config) -> MonitorOptions:
    """What the monitor acts on, from ``controller.monitor`` and ``mirror``."""
    return MonitorOptions(
        settings=config.controller.monitor,
        refresh=config.mirror.refresh_tags,
        refresh_every=config.mirror.refresh_every,
        compare_digests=not config.mirror.platforms,
        side_effects=copies(config),
        max_images=config.controller.max_images,
    )
