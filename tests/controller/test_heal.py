"""Healing: a pod stuck pulling a mirror image the mirror lost gets the image copied back."""

from __future__ import annotations

import json
from typing import Any

from swapper.config import CopyPolicy, SwapPolicy
from swapper.controller.backfill import PodPlanner, PodRecord
from swapper.controller.heal import Healer
from swapper.filters import Filters
from swapper.kube.memory import MemoryEvents, MemoryPodPatches
from swapper.metrics import Metrics
from swapper.mirror.memory import MemoryCopyQueue, MemoryProbe
from swapper.mutation import Policy
from swapper.pods import ORIGINAL_IMAGES
from swapper.targets.memory import MemoryTarget

ENDPOINT = "mirror.local:5000/m"
MIRROR = f"{ENDPOINT}/docker.io/library/nginx:1.27"


def stuck_pod(
    image: str = MIRROR,
    reason: str = "ImagePullBackOff",
    secrets: tuple[str, ...] = (),
    name: str = "web",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": image}]}
    if secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    return {
        "metadata": {"name": name, "namespace": "apps", "uid": f"uid-{name}"},
        "spec": spec,
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"name": "app", "image": image, "state": {"waiting": {"reason": reason}}}
            ],
        },
    }


def planner(metrics: Metrics | None = None) -> PodPlanner:
    policy = Policy(ENDPOINT, SwapPolicy.EXISTS, CopyPolicy.DELAYED, 1.0, None, Filters(()))
    return PodPlanner(policy, MemoryTarget(ENDPOINT).is_origin, metrics or Metrics())


def healer(
    records: list[PodRecord],
    target: MemoryTarget,
    *,
    side_effects: bool = True,
    cooldown: float = 300.0,
    probe: MemoryProbe | None = None,
    patches: MemoryPodPatches | None = None,
) -> tuple[Healer, MemoryCopyQueue, MemoryEvents, Metrics]:
    queue = MemoryCopyQueue(target)
    events = MemoryEvents()
    metrics = Metrics()
    heal = Healer(
        lambda: records,
        lambda: 1,
        target.image_exists,
        queue,
        events,
        metrics,
        side_effects=side_effects,
        cooldown=cooldown,
        revert=probe is not None,
        probe=probe,
        patches=patches,
    )
    return heal, queue, events, metrics


def heals(metrics: Metrics, result: str, action: str = "restore") -> float:
    value = metrics.registry.get_sample_value(
        "swapper_heals_total", {"action": action, "result": result}
    )
    return value or 0.0


def test_a_container_stuck_on_a_mirror_image_is_kept_with_the_copy_that_restores_it() -> None:
    record = planner()(stuck_pod(secrets=("reader",)))
    assert record is not None and record.jobs == ()
    [stuck] = record.stuck
    assert stuck.container == "app" and stuck.reason == "ImagePullBackOff"
    assert str(stuck.job.source) == "docker.io/library/nginx:1.27"
    assert stuck.job.target == MIRROR
    assert stuck.job.repository == "m/docker.io/library/nginx"
    assert stuck.job.pull_secrets == ("reader",)  # the pod's own secrets, nobody else's


def test_a_pull_failure_on_an_image_outside_the_mirror_or_another_wait_is_not_healed() -> None:
    assert planner()(stuck_pod(image="nginx:1.27")).stuck == ()  # type: ignore[union-attr]
    assert planner()(stuck_pod(reason="ContainerCreating")).stuck == ()  # type: ignore[union-attr]
    assert planner()(stuck_pod(image=f"{ENDPOINT}/not-a-host-path")) is None


def test_odd_statuses_are_ignored_not_a_crash() -> None:
    pod = stuck_pod()
    pod["status"]["containerStatuses"] = ["odd", {"name": "app", "state": {"waiting": "x"}}]
    assert planner()(pod).stuck == ()  # type: ignore[union-attr]
    pod["status"]["containerStatuses"] = None
    assert planner()(pod).stuck == ()  # type: ignore[union-attr]


async def test_an_image_the_mirror_lost_is_copied_back_and_the_pod_gets_an_event() -> None:
    target = MemoryTarget(ENDPOINT)
    record = planner()(stuck_pod())
    assert record is not None
    heal, queue, events, metrics = healer([record], target)
    assert await heal.heal_pass() == 1
    assert MIRROR in target.images
    [(namespace, name, reason, kind, message)] = events.events
    assert (namespace, name, reason, kind) == ("apps", "web", "MirrorImageRestored", "Normal")
    assert "copied back from docker.io/library/nginx:1.27" in message
    assert heals(metrics, "restored") == 1
    await queue.aclose()


async def test_an_image_the_mirror_has_is_not_copied_the_pull_fails_for_another_reason() -> None:
    target = MemoryTarget(ENDPOINT, {MIRROR})
    record = planner()(stuck_pod())
    assert record is not None
    heal, queue, events, metrics = healer([record], target)
    await heal.heal_pass()
    assert queue.jobs == [] and events.events == []
    assert heals(metrics, "not-missing") == 1


async def test_a_copy_that_fails_leaves_a_heal_failed_warning() -> None:
    target = MemoryTarget(ENDPOINT)
    record = planner()(stuck_pod())
    assert record is not None
    heal, queue, events, metrics = healer([record], target)
    queue.fail.add(MIRROR)
    await heal.heal_pass()
    [(_, _, reason, kind, message)] = events.events
    assert (reason, kind) == ("HealFailed", "Warning")
    assert "rejected" in message
    assert heals(metrics, "failed") == 1 and MIRROR not in target.images


async def test_dry_run_copies_nothing_and_says_what_it_would_do() -> None:
    target = MemoryTarget(ENDPOINT)
    record = planner()(stuck_pod())
    assert record is not None
    heal, queue, events, metrics = healer([record], target, side_effects=False)
    await heal.heal_pass()
    assert queue.jobs == [] and MIRROR not in target.images
    [(_, _, reason, kind, message)] = events.events
    assert (reason, kind) == ("MirrorImageMissing", "Warning") and message.startswith("dry-run")
    assert heals(metrics, "dry-run") == 1


async def test_a_pod_is_healed_at_most_once_per_image_per_cooldown() -> None:
    target = MemoryTarget(ENDPOINT)
    record = planner()(stuck_pod())
    assert record is not None
    heal, queue, events, _ = healer([record], target)
    queue.fail.add(MIRROR)
    assert await heal.heal_pass() == 1
    assert await heal.heal_pass() == 0  # still stuck, within the cooldown
    assert len(events.events) == 1
    heal._recent.clear()  # what the cooldown's end does
    assert await heal.heal_pass() == 1


SOURCE = "docker.io/library/nginx:1.27"


def reverting(
    pod: dict[str, Any], readers: set[str] | None = None, served: bool = True
) -> tuple[Healer, MemoryEvents, Metrics, MemoryPodPatches]:
    """A healer with revert on, over a mirror that refuses the copy back."""
    target = MemoryTarget(ENDPOINT)
    record = planner()(pod)
    assert record is not None
    probe = MemoryProbe()
    if served:
        probe.served[SOURCE] = "sha256:" + "1" * 64
    if readers is not None:
        probe.private[SOURCE] = readers
    patches = MemoryPodPatches()
    patches.pods[("apps", "web")] = pod
    heal, queue, events, metrics = healer([record], target, probe=probe, patches=patches)
    queue.fail.add(MIRROR)
    return heal, events, metrics, patches


async def test_with_revert_a_mirror_refusing_the_copy_sets_the_container_back_to_its_source() -> (
    None
):
    pod = stuck_pod()
    pod["metadata"]["annotations"] = {ORIGINAL_IMAGES: json.dumps({"app": "nginx:1.27"})}
    heal, events, metrics, patches = reverting(pod)
    await heal.heal_pass()
    assert patches.patched == [("apps", "web", "/spec/containers/0/image", SOURCE)]
    assert pod["spec"]["containers"][0]["image"] == SOURCE
    [(_, _, reason, kind, message)] = events.events
    assert (reason, kind) == ("ImageReverted", "Normal") and SOURCE in message
    assert heals(metrics, "reverted", "revert") == 1


async def test_a_source_gone_as_well_is_a_heal_failure_and_the_pod_is_not_changed() -> None:
    pod = stuck_pod()
    heal, events, metrics, patches = reverting(pod, served=False)
    await heal.heal_pass()
    assert patches.patched == [] and pod["spec"]["containers"][0]["image"] == MIRROR
    [(_, _, reason, kind, message)] = events.events
    assert (reason, kind) == ("HealFailed", "Warning") and "nothing can help" in message
    assert heals(metrics, "source-gone", "revert") == 1


async def test_a_private_source_the_pod_cannot_read_is_never_reverted_to() -> None:
    pod = stuck_pod()
    heal, events, metrics, patches = reverting(pod, readers={"another-namespace"})
    await heal.heal_pass()
    assert patches.patched == []
    [(_, _, reason, _, message)] = events.events
    assert reason == "HealFailed" and "own credentials cannot read" in message
    assert heals(metrics, "private", "revert") == 1


async def test_a_private_source_the_pod_can_read_is_reverted_to() -> None:
    pod = stuck_pod()
    heal, _, _, patches = reverting(pod, readers={"apps"})
    await heal.heal_pass()
    assert len(patches.patched) == 1


async def test_a_pod_deleted_or_replaced_mid_heal_is_no_error() -> None:
    pod = stuck_pod()
    heal, events, metrics, patches = reverting(pod)
    patches.pods.clear()
    await heal.heal_pass()
    assert patches.patched == [] and events.events == []
    assert heals(metrics, "gone", "revert") == 1
