"""Cleanup run by the controller's leader on the real API server, with a real mirror.

swapper's backends are built as ``swapper serve`` builds them (:func:`build_backends`), the
mirror is a ``docker-registry`` with deletes on, and the leader runs the pod watch, the usage
marks and the cleanup loop. A pod runs one mirrored image; another mirrored image, which no
pod runs, carries only an old mark of a cluster gone since. Time for marks and cleanup is one
movable clock (the Controller's ``clock``), so a retention of hours passes at once.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from e2e.cluster import Cluster
from helpers import eventually
from registries import Registry, make_image, make_layer, push_image, start_registry

from swapper.cli import build_target
from swapper.config import GenericRegistry, load_config
from swapper.controller.runner import CLEANUP, MARKS, POD_WATCH, Controller
from swapper.kube.leases import MemoryLeaseStore
from swapper.metrics import Metrics
from swapper.mirror.marks import Marker, OCIMarkStore, mark_tag
from swapper.oci import HostConfig, RegistryClient
from swapper.supervisor import Supervisor
from swapper.targets.generic import GenericTarget
from swapper.wiring import build_backends

RETENTION = timedelta(hours=2)


class Clock:
    """Wall-clock time that moves only when told."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Registry]:
    registry = start_registry(tmp_path / "mirror", access_log=True)  # deletes on
    yield registry
    registry.stop()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def digest_at(registry: Registry, repo: str, reference: str) -> str | None:
    with registry.client() as client:
        answer = client.head(
            f"/v2/{repo}/manifests/{reference}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
    return answer.headers.get("docker-content-digest") if answer.status_code == 200 else None


def tags_of(registry: Registry, repo: str) -> set[str]:
    with registry.client() as client:
        answer = client.get(f"/v2/{repo}/tags/list")
    if answer.status_code == 404:
        return set()
    answer.raise_for_status()
    return set(answer.json().get("tags") or [])


@dataclass
class Running:
    controller: Controller
    supervisor: Supervisor
    metrics: Metrics
    clock: Clock

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def passes(self) -> float:
        return sum(
            self.value("swapper_cleanup_passes_total", result=r)
            for r in ("done", "refused", "error")
        )


@pytest.fixture
async def swapper(cluster: Cluster, mirror: Registry) -> AsyncIterator[Callable[..., Any]]:
    """Starts the controller's leader with cleanup on: ``await swapper(**config)``."""
    started: list[tuple[Running, Any]] = []

    async def start(clock: Clock, **overrides: Any) -> Running:
        data = {
            "target": {"type": "generic", "generic": {"registry": f"{mirror.host}/m"}},
            "mirror": {"hosts": {mirror.host: {"insecure": True}}},
            "source": {"checkAccess": False, "podPullSecrets": False},
            "controller": {
                "leaseName": unique("cleanup"),
                "leaseDuration": "3s",
                "renewDeadline": "2s",
                "retryPeriod": "0.2s",
                "shareCopies": False,
                "backfill": False,
                "heal": {"enabled": False},
                "monitor": {"enabled": False},
            },
            "supervisor": {"backoffMin": "0.05s", "backoffMax": "0.2s"},
            "clusterName": "test-a",
            **overrides,
        }
        data["cleanup"] = {
            "enabled": True,
            "dryRun": False,
            "interval": "1s",
            "retention": "2h",
            "markEvery": "1h",
            **overrides.get("cleanup", {}),
        }
        config = load_config(data)
        metrics = Metrics()
        api = cluster.api_client()
        backends = build_backends(config, build_target(config), metrics, kube=api)
        supervisor = Supervisor(metrics, config.supervisor)
        for spec in backends.background:
            supervisor.add(spec)
        made = Controller(config, backends, api, supervisor, MemoryLeaseStore(), "one", clock=clock)
        for spec in made.tasks():
            supervisor.add(spec)
        await supervisor.start()
        running = Running(made, supervisor, metrics, clock)
        started.append((running, backends))
        await eventually("leading", lambda: POD_WATCH in supervisor.names())
        return running

    yield start
    for running, backends in started:
        await running.supervisor.stop()
        await backends.queue.aclose()
        for close in backends.closers:
            await close()
        await backends.target.aclose()


class Pods:
    """Pods in one fresh namespace (deleted at the end: no controller-manager would)."""

    def __init__(self, cluster: Cluster) -> None:
        from kubernetes import client

        self.namespace = cluster.namespace(unique("cleanup"))
        self.core = client.CoreV1Api(cluster.api_client())

    def create(self, name: str, image: str) -> None:
        spec = {
            "containers": [{"name": "app", "image": image}],
            "automountServiceAccountToken": False,
        }
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
        self.core.create_namespaced_pod(self.namespace, body)

    def delete(self, name: str) -> None:
        self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)

    def delete_all(self) -> None:
        self.core.delete_collection_namespaced_pod(self.namespace, grace_period_seconds=0)


@dataclass
class Images:
    """Two mirrored images: ``used`` (a pod runs it) and ``unused`` (an old mark only)."""

    used_repo: str
    used: str  # its digest
    unused_repo: str
    unused: str


async def mirrored_images(mirror: Registry, clock: Clock) -> Images:
    used_repo = f"m/docker.io/library/{unique('used')}"
    unused_repo = f"m/docker.io/library/{unique('unused')}"
    used = push_image(mirror, used_repo, make_image([make_layer(used_repo)]), "1.0")
    unused = push_image(mirror, unused_repo, make_image([make_layer(unused_repo)]), "1.0")
    # A cluster that ran the unused image long ago marked it then, and is gone since.
    client = RegistryClient(hosts={mirror.host: HostConfig(plain_http=True)})
    admin = GenericTarget(GenericRegistry(registry=f"{mirror.host}/m", insecure=True))
    try:
        then = clock.now - RETENTION - timedelta(hours=1)
        gone = Marker("gone", OCIMarkStore(client, mirror.host), admin, clock=lambda: then)
        assert await gone.mark(unused_repo, "1.0")
    finally:
        await client.aclose()
        await admin.aclose()
    return Images(used_repo, used, unused_repo, unused)


@pytest.mark.parametrize("dry_run", ["off", "cleanup.dryRun", "dryRun"])
async def test_the_leader_marks_what_pods_run_and_deletes_what_no_cluster_ran_for_retention(
    cluster: Cluster, mirror: Registry, swapper: Callable[..., Any], dry_run: str
) -> None:
    clock = Clock()
    images = await mirrored_images(mirror, clock)
    gone_mark = mark_tag("gone", images.unused)
    assert tags_of(mirror, images.unused_repo) == {"1.0", gone_mark}
    pods = Pods(cluster)
    try:
        pods.create("web", f"{mirror.host}/{images.used_repo}:1.0")
        overrides: dict[str, Any] = {}
        if dry_run == "cleanup.dryRun":
            overrides["cleanup"] = {"dryRun": True}
        elif dry_run == "dryRun":
            overrides["dryRun"] = True  # the global one: cleanup's dryRun is false
        running = await swapper(clock, **overrides)
        assert {MARKS, CLEANUP} <= set(running.supervisor.names())

        # The used image gets this cluster's mark, and is kept.
        our_mark = mark_tag("test-a", images.used)
        await eventually("marked", lambda: our_mark in tags_of(mirror, images.used_repo))
        await eventually("a pass", lambda: running.passes() >= 1)
        assert running.value("swapper_cleanup_passes_total", result="done") >= 1
        assert digest_at(mirror, images.used_repo, "1.0") == images.used
        assert running.value("swapper_cleanup_kept_total", reason="in-use") >= 1
        assert running.value("swapper_cleanup_marks_total", result="written") >= 1

        if dry_run != "off":  # reported, never deleted
            running.clock.advance(timedelta(seconds=2))  # past the interval: another pass
            await eventually("a second pass", lambda: running.passes() >= 2)
            assert digest_at(mirror, images.unused_repo, "1.0") == images.unused
            assert tags_of(mirror, images.unused_repo) == {"1.0", gone_mark}
            assert running.value("swapper_cleanup_kept_total", reason="dry-run") >= 1
            assert running.value("swapper_cleanup_deleted_total", kind="image") == 0
            return

        # The unused image, whose only mark is older than the retention, is gone with its mark.
        # (the image goes first, then its marks: wait for both)
        await eventually("deleted", lambda: not tags_of(mirror, images.unused_repo))
        assert digest_at(mirror, images.unused_repo, "1.0") is None
        assert running.value("swapper_cleanup_deleted_total", kind="image") == 1
        await eventually(
            "counted", lambda: running.value("swapper_cleanup_deleted_total", kind="mark") == 1
        )

        # Once no pod runs the used image and its mark has aged past the retention, it goes too.
        pods.delete("web")
        await eventually(
            "the pod gone",
            lambda: not any(images.used_repo in t for t in running.controller.in_use()),
        )
        passes = running.passes()
        running.clock.advance(timedelta(seconds=2))  # past the interval: another pass
        await eventually("a later pass", lambda: running.passes() > passes)
        assert digest_at(mirror, images.used_repo, "1.0") == images.used  # its mark is fresh
        assert running.value("swapper_cleanup_kept_total", reason="young-mark") >= 1
        running.clock.advance(RETENTION + timedelta(minutes=1))
        await eventually("aged out", lambda: not tags_of(mirror, images.used_repo))
        assert digest_at(mirror, images.used_repo, "1.0") is None
        assert running.value("swapper_cleanup_deleted_total", kind="image") == 2
    finally:
        pods.delete_all()


async def test_a_reload_to_dry_run_makes_cleanup_a_dry_run_and_the_loops_stop_with_the_lead(
    cluster: Cluster, mirror: Registry, swapper: Callable[..., Any]
) -> None:
    running = await swapper(Clock(), cleanup={"interval": "1h"})
    controller = running.controller
    assert controller.cleanup is not None and not controller.cleanup.options.dry_run
    await controller.reconfigure(controller.config.model_copy(update={"dry_run": True}))
    assert controller.cleanup.options.dry_run  # the global dryRun is live
    await eventually("respawned", lambda: {MARKS, CLEANUP} <= set(running.supervisor.names()))
    await controller._stop()
    assert not {MARKS, CLEANUP, POD_WATCH} & set(running.supervisor.names())


async def test_without_cleanup_no_marks_or_cleanup_loop_runs(
    cluster: Cluster, mirror: Registry, swapper: Callable[..., Any]
) -> None:
    running = await swapper(Clock(), cleanup={"enabled": False})
    assert running.controller.cleanup is None and running.controller.marker is None
    assert not {MARKS, CLEANUP} & set(running.supervisor.names())
