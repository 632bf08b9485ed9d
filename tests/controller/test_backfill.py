"""The backfill: pods planned as admission would, missing images queued below admission."""

from __future__ import annotations

import json
from typing import Any

import pytest

from swapper.config import CopyPolicy, SwapPolicy
from swapper.controller.backfill import Backfill, PodImages, PodPlanner, distinct_images
from swapper.filters import Filters
from swapper.metrics import Metrics
from swapper.mirror.memory import MemoryAccess, MemoryCopyQueue
from swapper.mirror.queue import CopyJob, Priority
from swapper.mutation import Policy
from swapper.pods import ORIGINAL_IMAGES
from swapper.targets.memory import MemoryTarget

ENDPOINT = "mirror.local:5000/m"


def pod(
    name: str,
    *images: str,
    namespace: str = "apps",
    secrets: tuple[str, ...] = (),
    phase: str = "Running",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    }
    if secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
        "status": {"phase": phase},
    }


def planner(filters: tuple[str, ...] = (), metrics: Metrics | None = None) -> PodPlanner:
    policy = Policy(ENDPOINT, SwapPolicy.EXISTS, CopyPolicy.DELAYED, 1.0, None, Filters(filters))
    return PodPlanner(policy, MemoryTarget(ENDPOINT).is_origin, metrics or Metrics(), 10)


class RecordingQueue(MemoryCopyQueue):
    """The memory queue, recording each hand-over's priority."""

    def __init__(self, target: MemoryTarget, bound: int = 1000) -> None:
        super().__init__(target, bound)
        self.priorities: list[tuple[str, Priority]] = []

    def submit(self, job: CopyJob, priority: Priority = Priority.ADMISSION) -> None:
        self.priorities.append((job.target, priority))
        super().submit(job, priority)


def backfill(
    pods: list[dict[str, Any]],
    *,
    copies: bool = True,
    access: MemoryAccess | None = None,
    present: set[str] | None = None,
    filters: tuple[str, ...] = (),
) -> tuple[Backfill, MemoryTarget, RecordingQueue, Metrics]:
    metrics = Metrics()
    plan = planner(filters, metrics)
    items: list[PodImages] = [kept.jobs for p in pods if (kept := plan(p)) is not None]
    target = MemoryTarget(ENDPOINT, present)
    queue = RecordingQueue(target)
    job = Backfill(
        lambda: items,
        lambda: 1,
        target,
        queue,
        access or MemoryAccess(),
        metrics,
        copies=copies,
    )
    return job, target, queue, metrics


def gauge(metrics: Metrics, state: str) -> float:
    value = metrics.registry.get_sample_value("swapper_backfill_images", {"state": state})
    assert value is not None
    return value


def test_a_pod_is_kept_as_the_copies_admission_would_ask_for() -> None:
    record = planner()(pod("web", "nginx:1.27"))
    assert record is not None and record.stuck == ()
    [job] = record.jobs
    assert job.target == f"{ENDPOINT}/docker.io/library/nginx:1.27"
    assert job.namespace == "apps"


def test_a_pod_already_at_the_mirror_is_kept_for_the_monitor_only() -> None:
    at_mirror = pod("web", f"{ENDPOINT}/docker.io/library/nginx:1.27")
    record = planner()(at_mirror)
    assert record is not None and record.jobs == () and record.stuck == ()
    [restore] = record.mirrored
    assert (str(restore.source), restore.target) == (
        "docker.io/library/nginx:1.27",
        f"{ENDPOINT}/docker.io/library/nginx:1.27",
    )


def test_the_original_image_annotation_names_the_source_only_when_it_mirrors_to_the_image() -> None:
    at_mirror = pod("web", f"{ENDPOINT}/docker.io/library/nginx:1.27")
    at_mirror["metadata"]["annotations"] = {ORIGINAL_IMAGES: json.dumps({"web": "nginx:1.27"})}
    [restore] = planner()(at_mirror).mirrored  # type: ignore[union-attr]
    assert str(restore.source) == "docker.io/library/nginx:1.27"
    forged = json.dumps({"web": "ghcr.io/evil/payload:1"})
    at_mirror["metadata"]["annotations"] = {ORIGINAL_IMAGES: forged}
    [restore] = planner()(at_mirror).mirrored  # type: ignore[union-attr]
    assert str(restore.source) == "docker.io/library/nginx:1.27"


def test_a_filtered_out_pod_is_not_kept() -> None:
    skipped = planner(("obj.metadata.namespace == 'kube-system'",))
    assert skipped(pod("dns", "coredns:1.11", namespace="kube-system")) is None
    assert skipped(pod("dns", "coredns:1.11", namespace="apps")) is not None


def test_a_finished_pod_is_not_kept() -> None:
    assert planner()(pod("job", "busybox:1", phase="Succeeded")) is None


def test_a_malformed_pod_is_skipped_with_a_metric_not_a_crash() -> None:
    metrics = Metrics()
    plan = planner(metrics=metrics)
    odd = {"metadata": {"name": "odd", "namespace": "x"}, "spec": {"containers": "nope"}}
    assert plan(odd) is None
    assert plan({"metadata": {"name": "nospec"}}) is None
    huge = pod("huge", *[f"img{i}:1" for i in range(11)])
    assert plan(huge) is None
    skipped = metrics.registry.get_sample_value
    assert skipped("swapper_controller_pods_skipped_total", {"reason": "malformed"}) == 2
    assert skipped("swapper_controller_pods_skipped_total", {"reason": "too-many-containers"}) == 1


def test_distinct_images_keep_a_few_askers_and_respect_the_limit() -> None:
    plan = planner()
    items = [
        plan(pod(f"p{i}", "nginx:1.27", namespace=f"ns{i}", secrets=(f"s{i}",))) for i in range(9)
    ]
    images, over = distinct_images([i.jobs for i in items if i], limit=10)
    [image] = images.values()
    assert len(image.jobs) == 4 and over == 0
    many = [plan(pod("p", f"img{i}:1")) for i in range(5)]
    images, over = distinct_images([i.jobs for i in many if i], limit=3)
    assert len(images) == 3 and over == 2


async def test_missing_images_are_queued_at_backfill_priority_and_present_ones_are_not() -> None:
    present = f"{ENDPOINT}/docker.io/library/redis:7"
    job, _, queue, metrics = backfill(
        [pod("a", "nginx:1.27", "redis:7"), pod("b", "nginx:1.27")], present={present}
    )
    counts = await job.scan()
    assert counts["queued"] == 1 and counts["present"] == 1
    assert queue.priorities == [(f"{ENDPOINT}/docker.io/library/nginx:1.27", Priority.BACKFILL)]
    assert gauge(metrics, "queued") == 1 and gauge(metrics, "present") == 1
    await queue.aclose()


async def test_a_second_scan_does_not_hand_the_same_image_over_again() -> None:
    job, _, queue, _ = backfill([pod("a", "nginx:1.27")])
    await job.scan()
    await job.scan()
    assert len(queue.priorities) == 1
    await queue.aclose()


async def test_dry_run_copies_nothing_and_reports_would_copy() -> None:
    job, target, queue, metrics = backfill([pod("a", "nginx:1.27")], copies=False)
    counts = await job.scan()
    assert counts["would-copy"] == 1
    assert queue.priorities == [] and queue.jobs == [] and target.images == set()
    value = metrics.registry.get_sample_value(
        "swapper_backfill_copies_total", {"result": "would-copy"}
    )
    assert value == 1


async def test_a_private_image_is_copied_only_with_a_pod_that_can_read_it() -> None:
    access = MemoryAccess(private={"docker.io/acme/private": {"reader"}})
    pods = [
        pod("a", "acme/private:1", namespace="one", secrets=("other",)),
        pod("b", "acme/private:1", namespace="two", secrets=("reader",)),
    ]
    job, _, queue, _ = backfill(pods, access=access)
    await job.scan()
    [copied] = queue.jobs if queue.jobs else [None]
    await queue.aclose()
    assert copied is not None
    assert copied.namespace == "two" and copied.pull_secrets == ("reader",)


async def test_a_private_image_no_pod_can_read_is_not_copied() -> None:
    access = MemoryAccess(private={"docker.io/acme/private": {"reader"}})
    job, _, queue, _ = backfill([pod("a", "acme/private:1", secrets=("other",))], access=access)
    counts = await job.scan()
    assert counts["skipped-private"] == 1 and queue.priorities == []


async def test_a_full_queue_is_reported_and_tried_again_later() -> None:
    job, target, _, _ = backfill([pod("a", "nginx:1.27", "redis:7")])
    job.queue = full = RecordingQueue(target, bound=0)
    counts = await job.scan()
    assert counts["queue-full"] == 2
    job._states.clear()  # what the retry lifetime does
    job.queue = RecordingQueue(target)
    counts = await job.scan()
    assert counts["queued"] == 2
    await full.aclose()
    await job.queue.aclose()


@pytest.mark.parametrize("failure", [RuntimeError("boom"), OSError("no route")])
async def test_a_failing_mirror_check_is_an_error_state_not_a_crash(failure: Exception) -> None:
    job, target, _, _ = backfill([pod("a", "nginx:1.27")])
    target.fail_with = failure
    counts = await job.scan()
    assert counts["error"] == 1


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, True),
        ({"dryRun": True}, False),
        ({"dryRun": True, "controller": {"prefill": True}}, True),
        ({"imageCopyPolicy": "none"}, False),
        ({"imageCopyPolicy": "none", "dryRun": True, "controller": {"prefill": True}}, False),
        ({"imageCopyPolicy": "immediate"}, True),
    ],
)
def test_the_backfill_copies_as_admission_would_and_in_dry_run_only_with_prefill(
    settings: dict[str, Any], expected: bool
) -> None:
    from swapper.config import load_config
    from swapper.controller.runner import copies

    config = load_config(
        {"target": {"type": "generic", "generic": {"registry": ENDPOINT}}, **settings}
    )
    assert copies(config) is expected
