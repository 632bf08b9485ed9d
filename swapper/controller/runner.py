"""The cluster half put together: leader election, and the loops the leader runs.

Every replica runs the elector (a supervised task). The replica that holds the Lease starts the
pod watch and, over it, the backfill, the healer and the monitor as supervised tasks of their
own; when it loses the Lease (or shuts down) it stops them before another replica could take
the Lease over.

With ``cleanup.enabled`` the leader runs two more: ``marks`` writes this cluster's usage marks
(:class:`~swapper.mirror.marks.Marker`) on every image its pods run, and ``cleanup``
(:class:`~swapper.controller.cleanup.Cleanup`) deletes the images no cluster runs any more.
Both wait for the pod watch's first full list: before it, every image would look unused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from swapper.backends import Backends
from swapper.config import Config, CopyPolicy
from swapper.controller.backfill import Backfill, PodImages, PodPlanner, PodRecord
from swapper.controller.cleanup import Cleanup, CleanupOptions
from swapper.controller.heal import Healer
from swapper.controller.leader import LeaderElector
from swapper.controller.monitor import Monitor, MonitorOptions
from swapper.kube.events import PodEvents
from swapper.kube.informer import Informer
from swapper.kube.leases import LeaseStore
from swapper.kube.pods import PodPatches
from swapper.logs import get_logger
from swapper.mirror.marks import Marker, utc_now
from swapper.mutation import Policy
from swapper.supervisor import Supervisor, TaskSpec
from swapper.targets.admin import RegistryAdmin

log = get_logger("swapper.controller")

POD_WATCH = "pod-watch"
BACKFILL = "backfill"
HEAL = "heal"
MONITOR = "monitor"
MARKS = "marks"
CLEANUP = "cleanup"
ELECTION = "leader-election"

MARK_LOOK_EVERY = 3600.0
"""The marks loop looks at the pods' images at least this often (and at least four times per
``cleanup.markEvery``); the :class:`~swapper.mirror.marks.Marker` asks the registry about each
image at most once per ``markEvery``."""
_NOT_SYNCED_WAIT = 1.0  # seconds between looks at a pod watch that has not listed yet


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
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """``clock``: the wall-clock time of the usage marks and of cleanup (tests move it)."""
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
        self.marker: Marker | None = None
        self.cleanup: Cleanup | None = None
        if config.cleanup.enabled:
            self._build_cleanup(config, backends, clock)
        self._leading = False

    def _build_cleanup(
        self, config: Config, backends: Backends, clock: Callable[[], datetime]
    ) -> None:
        """The marker and the cleanup, over the target's admin protocol and the mark store
        the wiring built (none: cleanup is not run, with one log line)."""
        admin = backends.admin
        if admin is None and isinstance(backends.target, RegistryAdmin):
            admin = backends.target
        if admin is None or backends.marks is None:
            log.warning(
                "cleanup_unavailable",
                key="cleanup.enabled",
                reason="no mark store or no admin protocol for the target: cleanup does not run",
            )
            return
        self.marker = Marker(
            config.cluster_name,
            backends.marks,
            admin,
            mark_every=config.cleanup.mark_every,
            clock=clock,
            metrics=backends.metrics,
        )
        self.cleanup = Cleanup(
            admin,
            self.marker,
            self.in_use,
            backends.queue.copying_into,
            backends.metrics,
            cleanup_options(config),
            ready=self.watch.informer.synced.is_set,
            clock=clock,
            on_deleted=forget_deleted(backends.target, config.target.endpoint),
        )

    def in_use(self) -> list[str]:
        """The mirror references the watched pods run or would run (swapped or to be)."""
        return [job.target for record in self.watch.records() for job in record.in_use()]

    async def run_marks(self) -> None:
        """Forever, once the pod watch has listed every pod: mark the images in use (the
        marker skips, without asking the registry, what it marked within ``markEvery``)."""
        assert self.marker is not None
        while True:
            if not self.watch.informer.synced.is_set():
                await asyncio.sleep(_NOT_SYNCED_WAIT)
                continue
            await self.marker.mark_targets(self.in_use())
            await asyncio.sleep(mark_look_every(self.marker.mark_every))

    async def run_cleanup(self) -> None:
        """The cleanup loop, started once the pod watch has listed every pod (the loop itself
        also waits for that, but only looks every half minute)."""
        assert self.cleanup is not None
        # synced is a threading.Event, set by the informer's thread: polled, not awaited.
        while not self.watch.informer.synced.is_set():  # noqa: ASYNC110
            await asyncio.sleep(_NOT_SYNCED_WAIT)
        await self.cleanup.run()

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
        if self.marker is not None and self.cleanup is not None:
            self.supervisor.spawn(TaskSpec(MARKS, self.run_marks))
            self.supervisor.spawn(TaskSpec(CLEANUP, self.run_cleanup))

    async def _stop_loops(self) -> None:
        await self.supervisor.cancel(CLEANUP)
        await self.supervisor.cancel(MARKS)
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
        if self.cleanup is not None and self.marker is not None:
            self.cleanup.options = cleanup_options(config)
            self.marker.mark_every = config.cleanup.mark_every
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


def cleanup_options(config: Config) -> CleanupOptions:
    """What a cleanup pass acts on, from ``cleanup``: a dry run under ``cleanup.dryRun`` or
    the global ``dryRun``."""
    options = CleanupOptions.of(config.cleanup)
    return dataclasses.replace(options, dry_run=options.dry_run or config.dry_run)


def forget_deleted(target: object, endpoint: str) -> Callable[[str, str, tuple[str, ...]], None]:
    """What cleanup calls for each image it deleted: the image's references (``host/repo:tag``
    for each tag, and ``host/repo@digest``) are dropped from ``target``'s existence cache (the
    wiring's :class:`~swapper.targets.cache.ExistenceCache`), when it has one. Other replicas'
    caches notice within ``target.existenceCache.ttl``."""
    host = endpoint.split("/", 1)[0]
    invalidate: Callable[[str], None] | None = getattr(target, "invalidate", None)

    def forget(repository: str, digest: str, tags: tuple[str, ...]) -> None:
        if invalidate is None:
            return
        for tag in tags:
            invalidate(f"{host}/{repository}:{tag}")
        invalidate(f"{host}/{repository}@{digest}")

    return forget


def mark_look_every(mark_every: float) -> float:
    """Seconds between two looks of the marks loop (see :data:`MARK_LOOK_EVERY`)."""
    return min(mark_every / 4, MARK_LOOK_EVERY)
