"""The images in use, watched at the source and in the mirror, at a bounded pace per registry."""

from __future__ import annotations

import itertools
from typing import Any

from swapper.config import CopyPolicy, MonitorSettings, RefreshTags, SwapPolicy
from swapper.controller.backfill import PodPlanner, PodRecord
from swapper.controller.monitor import (
    GONE,
    GONE_EVENT,
    MIRRORED,
    MISSING,
    MOVED,
    PRIVATE,
    UNREACHABLE,
    Monitor,
    MonitorOptions,
)
from swapper.filters import Filters
from swapper.kube.memory import MemoryEvents
from swapper.metrics import Metrics
from swapper.mirror.memory import MemoryCopyQueue, MemoryProbe
from swapper.mirror.queue import Priority
from swapper.mutation import Policy
from swapper.targets.memory import MemoryTarget

ENDPOINT = "mirror.local:5000/m"
OLD, NEW = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def mirror_of(image: str) -> str:
    return f"{ENDPOINT}/{image}"


def pod(name: str, image: str, namespace: str = "apps", secrets: tuple[str, ...] = ()) -> Any:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": image}]}
    if secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": spec,
        "status": {"phase": "Running"},
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class World:
    """A monitor over pods planned as the controller would, a memory mirror and sources."""

    def __init__(self, *pods: Any, **options: Any) -> None:
        policy = Policy(ENDPOINT, SwapPolicy.EXISTS, CopyPolicy.DELAYED, 1.0, None, Filters(()))
        self.metrics = Metrics()
        planner = PodPlanner(policy, MemoryTarget(ENDPOINT).is_origin, self.metrics)
        self.records: list[PodRecord] = [r for p in pods if (r := planner(p)) is not None]
        self.generation = 1
        self.target = MemoryTarget(ENDPOINT)
        self.queue = MemoryCopyQueue(self.target)
        self.events = MemoryEvents()
        self.probe = MemoryProbe()
        self.clock = Clock()
        settings = options.pop("settings", MonitorSettings(interval=10, maxChecks=10))
        self.monitor = Monitor(
            lambda: self.records,
            lambda: self.generation,
            self.target.image_digest,
            self.probe,
            self.queue,
            self.events,
            self.metrics,
            MonitorOptions(settings=settings, **options),
            clock=self.clock,
        )

    def has(self, image: str, digest: str = OLD) -> None:
        """The mirror has ``image`` (a source reference as written), at ``digest``."""
        self.target.add_image(mirror_of(image), digest)

    async def run_for(self, seconds: float, tick: float = 0.5) -> int:
        checks = 0
        end = self.clock.now + seconds
        while self.clock.now <= end:
            checks += await self.monitor.step()
            await self.monitor.drain()
            self.clock.now += tick
        return checks

    def state(self, image: str) -> str:
        return self.monitor.images[mirror_of(image)].state

    def gauge(self, state: str) -> float:
        value = self.metrics.registry.get_sample_value("swapper_images", {"state": state})
        return value or 0.0


NGINX = "docker.io/library/nginx:1.27"


async def test_an_image_the_mirror_and_the_source_both_serve_alike_is_mirrored() -> None:
    world = World(pod("web", mirror_of(NGINX)))
    world.has(NGINX)
    world.probe.served[NGINX] = OLD
    await world.run_for(2)
    assert world.state(NGINX) == MIRRORED
    assert world.gauge(MIRRORED) == 1 and world.gauge(MISSING) == 0
    assert world.queue.submitted == []


async def test_an_image_the_mirror_lost_is_copied_again_at_backfill_priority() -> None:
    world = World(pod("web", mirror_of(NGINX), secrets=("reader",)))
    world.probe.served[NGINX] = OLD
    world.target.digests[mirror_of(NGINX)] = OLD  # what the copy will serve
    await world.run_for(2)
    assert world.queue.submitted == [(mirror_of(NGINX), Priority.BACKFILL)]
    [job] = world.queue.jobs
    assert job.pull_secrets == ("reader",)  # the pod's own credentials
    await world.run_for(3)  # the mirror is asked again soon after, and has it now
    assert world.state(NGINX) == MIRRORED


async def test_an_image_gone_from_source_and_mirror_warns_every_pod_once_per_change() -> None:
    world = World(pod("a", mirror_of(NGINX)), pod("b", mirror_of(NGINX), namespace="other"))
    world.queue.fail.add(mirror_of(NGINX))  # what a copy from a gone source does
    world.target.digests[mirror_of(NGINX)] = OLD
    await world.run_for(25)  # checked twice at least (interval 10 s)
    assert world.state(NGINX) == MISSING
    warned = [
        (ns, name) for ns, name, reason, kind, _ in world.events.events if reason == GONE_EVENT
    ]
    assert sorted(warned) == [("apps", "a"), ("other", "b")]
    assert mirror_of(NGINX) not in world.target.images  # nothing to copy from
    world.queue.fail.clear()
    world.probe.served[NGINX] = OLD  # back at the source: copied, then mirrored
    await world.run_for(25)
    assert world.state(NGINX) == MIRRORED
    world.target.delete_image(mirror_of(NGINX))
    world.queue.fail.add(mirror_of(NGINX))
    del world.probe.served[NGINX]  # gone again: a new state change, a new warning each
    await world.run_for(25)
    assert len([e for e in world.events.events if e[2] == GONE_EVENT]) == 4


async def test_a_source_gone_unreachable_or_private_is_told_apart() -> None:
    images = {"gone": "docker.io/library/gone:1", "down": "quay.io/x/down:1"}
    images["private"] = "ghcr.io/acme/private:1"
    world = World(*(pod(k, mirror_of(v)) for k, v in images.items()))
    for image in images.values():
        world.has(image)
    world.probe.unreachable.add(images["down"])
    world.probe.private[images["private"]] = {"someone-else"}
    world.probe.served[images["private"]] = OLD
    await world.run_for(2)
    assert (world.state(images["gone"]), world.state(images["down"])) == (GONE, UNREACHABLE)
    assert world.state(images["private"]) == PRIVATE
    assert world.gauge(GONE) == world.gauge(UNREACHABLE) == world.gauge(PRIVATE) == 1


async def test_a_moved_tag_is_refreshed_under_always_and_kept_under_never() -> None:
    for refresh, copied in ((RefreshTags.ALWAYS, True), (RefreshTags.NEVER, False)):
        world = World(pod("web", mirror_of(NGINX)), refresh=refresh, refresh_every=60.0)
        world.has(NGINX, OLD)
        world.probe.served[NGINX] = NEW
        await world.run_for(2)
        assert world.state(NGINX) == MOVED
        assert bool(world.queue.submitted) is copied, refresh
        if copied:
            [job] = world.queue.jobs
            assert job.recheck == 60.0  # the copy looks at the source again


async def test_a_digest_pinned_reference_never_counts_as_moved() -> None:
    pinned = f"docker.io/library/nginx:1.27@{OLD}"
    world = World(pod("web", mirror_of(pinned)), refresh=RefreshTags.ALWAYS)
    world.has(pinned, OLD)
    world.probe.served[pinned] = NEW
    await world.run_for(2)
    assert world.state(pinned) == MIRRORED


async def test_with_platform_filtering_a_move_is_judged_against_the_first_source_digest() -> None:
    world = World(pod("web", mirror_of(NGINX)), compare_digests=False)
    world.has(NGINX, "sha256:" + "f" * 64)  # filtered: never the source's digest
    world.probe.served[NGINX] = OLD
    await world.run_for(2)
    assert world.state(NGINX) == MIRRORED
    world.probe.served[NGINX] = NEW
    await world.run_for(12)
    assert world.state(NGINX) == MOVED


async def test_dry_run_copies_nothing_and_counts_what_it_would_have_copied() -> None:
    world = World(pod("web", mirror_of(NGINX)), side_effects=False)
    world.probe.served[NGINX] = OLD
    await world.run_for(2)
    assert world.queue.submitted == [] and world.target.images == set()
    would = world.metrics.registry.get_sample_value(
        "swapper_monitor_copies_total", {"reason": "missing", "result": "would-copy"}
    )
    assert would == 1


async def test_each_registry_is_asked_at_its_pace_spread_over_the_interval() -> None:
    images = [f"docker.io/library/app{i}:1" for i in range(30)]
    settings = MonitorSettings.model_validate(
        {
            "interval": "10s",
            "maxChecks": 5,
            "registries": {"docker.io": {"interval": "10s", "maxChecks": 2}},
        }
    )
    world = World(*(pod(f"p{i}", mirror_of(im)) for i, im in enumerate(images)), settings=settings)
    for image in images:
        world.has(image)
        world.probe.served[image] = OLD
    times: list[float] = []
    original = world.probe.probe

    async def timed(source: Any, askers: Any) -> Any:
        times.append(world.clock.now)
        return await original(source, askers)

    world.probe.probe = timed  # type: ignore[method-assign]
    await world.run_for(30, tick=0.25)
    assert 6 <= len(times) <= 7  # docker.io: 2 per 10 s over 30 s
    assert all(b - a >= 5 for a, b in itertools.pairwise(times))  # never a burst
    mirror = world.monitor.paces["mirror.local:5000"]
    assert 15 <= mirror.checks <= 16  # the mirror: 5 per 10 s


async def test_a_registry_that_asks_to_wait_is_left_alone_for_its_retry_after() -> None:
    world = World(pod("a", mirror_of("quay.io/x/a:1")), pod("b", mirror_of("quay.io/x/b:1")))
    world.probe.unreachable |= {"quay.io/x/a:1", "quay.io/x/b:1"}
    world.probe.retry_after = 20.0
    await world.run_for(15)
    assert len(world.probe.asked) == 1
    rate_limited = world.metrics.registry.get_sample_value(
        "swapper_monitor_checks_total", {"kind": "source", "result": "rate-limited"}
    )
    assert rate_limited == 1
    await world.run_for(10)
    assert len(world.probe.asked) == 2


async def test_images_no_pod_runs_are_dropped_and_the_info_metric_is_bounded() -> None:
    images = [f"docker.io/library/app{i}:1" for i in range(5)]
    settings = MonitorSettings.model_validate({"maxInfo": 2})
    world = World(*(pod(f"p{i}", mirror_of(im)) for i, im in enumerate(images)), settings=settings)
    await world.run_for(0)
    assert len(world.monitor.images) == 5
    info = [s for s in world.metrics.registry.collect() if s.name == "swapper_image_info"]
    assert len(info[0].samples) == 2
    world.records = world.records[:1]
    world.generation += 1
    await world.run_for(0)
    assert list(world.monitor.images) == [mirror_of(images[0])]


async def test_the_watched_set_is_bounded_by_max_images() -> None:
    images = [f"docker.io/library/app{i}:1" for i in range(8)]
    world = World(*(pod(f"p{i}", mirror_of(im)) for i, im in enumerate(images)), max_images=3)
    await world.run_for(0)
    assert len(world.monitor.images) == 3
