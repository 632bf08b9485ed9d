"""Self-healing and the images-in-use monitor on the real API server, with real registries.

swapper's backends are built as ``swapper serve`` builds them (:func:`build_backends`: the copy
queue, the copier, the source probe, the pods' pull secrets read from the API server), the
source is a ``docker-registry`` behind a token server (only ``public/`` anonymous), the mirror a
plain one. With no kubelet, each test writes the pod status a kubelet writes when a pull
fails, through the status subresource.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e.cluster import Cluster
from e2e.world import docker_config_secret
from helpers import eventually
from registries import (
    Registry,
    TokenServer,
    make_image,
    make_layer,
    push_image,
    start_registry,
)

from swapper.backends import Backends
from swapper.cli import build_target
from swapper.config import Config, load_config
from swapper.controller.runner import HEAL, MONITOR, POD_WATCH, Controller
from swapper.images import parse
from swapper.kube.leases import MemoryLeaseStore
from swapper.metrics import Metrics
from swapper.mutation import image_plan
from swapper.pods import ORIGINAL_IMAGES
from swapper.supervisor import Supervisor
from swapper.wiring import build_backends

ALICE = ("alice", "alice-secret")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tokens = TokenServer(
        tmp_path_factory.mktemp("tokens"), users=dict([ALICE]), public=("public/",)
    ).start()
    registry = start_registry(
        tmp_path_factory.mktemp("source"), token_server=tokens, access_log=True
    )
    yield registry
    registry.stop()
    tokens.stop()


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Registry]:
    registry = start_registry(tmp_path / "mirror", access_log=True)
    yield registry
    registry.stop()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def push(registry: Registry, repo: str, tag: str, seed: str | None = None) -> str:
    """An image of its own (``seed``) at ``repo:tag``; its digest."""
    return push_image(registry, repo, make_image([make_layer(seed or f"{repo}:{tag}")]), tag)


def digest_at(registry: Registry, repo: str, tag: str) -> str | None:
    with registry.client() as client:
        answer = client.head(
            f"/v2/{repo}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
    return answer.headers.get("docker-content-digest") if answer.status_code == 200 else None


def delete(registry: Registry, repo: str, digest: str) -> None:
    with registry.client() as client:
        client.delete(f"/v2/{repo}/manifests/{digest}").raise_for_status()


@dataclass
class Running:
    config: Config
    backends: Backends
    controller: Controller
    supervisor: Supervisor
    metrics: Metrics
    endpoint: str

    def mirror_of(self, source: str) -> str:
        """The mirror reference admission would swap ``source`` to."""
        return image_plan(source, self.endpoint, self.backends.target.is_origin).target

    def repo_of(self, source: str) -> str:
        """The mirror repository (path under the mirror's host) of ``source``."""
        return parse(self.mirror_of(source)).path

    def value(self, name: str, labels: dict[str, str]) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def swapper(
    cluster: Cluster, mirror: Registry, source: Registry
) -> AsyncIterator[Callable[..., Any]]:
    """Starts the controller's leader over real backends: ``await swapper(**config)``."""
    started: list[Running] = []

    async def start(**overrides: Any) -> Running:
        controller = {
            "leaseName": unique("heal"),
            "leaseDuration": "3s",
            "renewDeadline": "2s",
            "retryPeriod": "0.2s",
            "shareCopies": False,
            "backfill": False,
            "heal": {"cooldown": "1s", **overrides.pop("heal", {})},
            "monitor": {"interval": "1h", "maxChecks": 1, **overrides.pop("monitor", {})},
        }
        registry = overrides.pop("mirror_registry", mirror)
        data = {
            "target": {"type": "generic", "generic": {"registry": f"{registry.host}/m"}},
            "mirror": {
                "hosts": {registry.host: {"insecure": True}, source.host: {"insecure": True}},
                **overrides.pop("mirror", {}),
            },
            "controller": controller,
            "supervisor": {"backoffMin": "0.05s", "backoffMax": "0.2s"},
            **overrides,
        }
        config = load_config(data)
        metrics = Metrics()
        api = cluster.api_client()
        backends = build_backends(config, build_target(config), metrics, kube=api)
        supervisor = Supervisor(metrics, config.supervisor)
        for spec in backends.background:
            supervisor.add(spec)
        made = Controller(config, backends, api, supervisor, MemoryLeaseStore(), "one")
        for spec in made.tasks():
            supervisor.add(spec)
        await supervisor.start()
        running = Running(config, backends, made, supervisor, metrics, config.target.endpoint)
        started.append(running)
        await eventually("leading", lambda: POD_WATCH in supervisor.names())
        return running

    yield start
    while Pods.made:
        Pods.made.pop().delete_all()
    for running in started:
        await running.supervisor.stop()
        await running.backends.queue.aclose()
        for close in running.backends.closers:
            await close()
        await running.backends.target.aclose()


class Pods:
    """Pods in one fresh namespace of the real API server, and their Events. Every pod made is
    deleted at the end of the test (no controller-manager would: the next test's pod watch
    must not see them)."""

    made: list[Pods] = []

    def __init__(self, cluster: Cluster, prefix: str) -> None:
        from kubernetes import client

        self.namespace = cluster.namespace(unique(prefix))
        self.core = client.CoreV1Api(cluster.api_client())
        Pods.made.append(self)

    def delete_all(self) -> None:
        self.core.delete_collection_namespaced_pod(self.namespace, grace_period_seconds=0)

    def create(
        self,
        name: str,
        image: str,
        secrets: tuple[str, ...] = (),
        original: str | None = None,
    ) -> None:
        metadata: dict[str, Any] = {"name": name}
        if original:
            metadata["annotations"] = {ORIGINAL_IMAGES: json.dumps({"app": original})}
        spec: dict[str, Any] = {
            "containers": [{"name": "app", "image": image}],
            "automountServiceAccountToken": False,
        }
        if secrets:
            spec["imagePullSecrets"] = [{"name": s} for s in secrets]
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
        self.core.create_namespaced_pod(self.namespace, body)

    def secret(self, name: str, host: str, user: tuple[str, str]) -> None:
        self.core.create_namespaced_secret(
            self.namespace, docker_config_secret(self.namespace, name, host, user)
        )

    def stuck(self, name: str, image: str, reason: str = "ImagePullBackOff") -> None:
        """What the kubelet writes when the pull fails: the status subresource."""
        waiting = {"reason": reason, "message": f'Back-off pulling image "{image}"'}
        status = {
            "status": {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "app",
                        "image": image,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": waiting},
                    }
                ],
            }
        }
        self.core.patch_namespaced_pod_status(name, self.namespace, status)

    def image(self, name: str) -> str:
        pod = self.core.read_namespaced_pod(name, self.namespace)
        return str(pod.spec.containers[0].image)

    def events(self, reason: str) -> list[dict[str, Any]]:
        listed = self.core.list_namespaced_event(self.namespace, _preload_content=False)
        return [e for e in json.loads(listed.data)["items"] if e["reason"] == reason]


async def test_a_mirror_image_deleted_behind_swappers_back_is_copied_back_and_the_pod_told(
    cluster: Cluster, source: Registry, mirror: Registry, swapper: Callable[..., Any]
) -> None:
    repo = f"public/{unique('lost')}"
    digest = push(source, repo, "1.0")
    running = await swapper()
    image = running.mirror_of(f"{source.host}/{repo}:1.0")
    mirror_repo = running.repo_of(f"{source.host}/{repo}:1.0")
    push(mirror, mirror_repo, "1.0", seed=f"{repo}:1.0")  # mirrored once
    delete(mirror, mirror_repo, digest)  # then a lifecycle rule took it
    pods = Pods(cluster, "lost")
    pods.create("web", image)
    start = time.monotonic()
    pods.stuck("web", image)
    stuck_at = time.monotonic() - start
    [event] = await eventually("the Event", lambda: pods.events("MirrorImageRestored"))
    event_at = time.monotonic() - start
    assert digest_at(mirror, mirror_repo, "1.0") == digest  # the same image, same digest
    present_at = time.monotonic() - start
    assert event["type"] == "Normal" and image in event["message"]
    assert pods.image("web") == image  # the pod is not changed: the kubelet's retry pulls it
    restored = {"action": "restore", "result": "restored"}
    assert running.value("swapper_heals_total", restored) == 1
    print(  # the heal timeline, for the closing note (pytest -s)
        f"\nheal timeline: stuck status written {stuck_at:.2f}s, Event {event_at:.2f}s, "
        f"image present again (checked after the Event) {present_at:.2f}s"
    )


async def test_with_revert_a_mirror_refusing_pushes_gets_the_pod_set_back_to_its_source(
    cluster: Cluster,
    source: Registry,
    tmp_path: Path,
    swapper: Callable[..., Any],
) -> None:
    read_only = start_registry(tmp_path / "read-only", read_only=True)
    try:
        repo = f"public/{unique('ro')}"
        push(source, repo, "1.0")
        running = await swapper(mirror_registry=read_only, heal={"revert": True})
        original = f"{source.host}/{repo}:1.0"
        image = running.mirror_of(original)
        pods = Pods(cluster, "revert")
        pods.create("web", image, original=original)
        pods.stuck("web", image, reason="ErrImagePull")
        [event] = await eventually("the Event", lambda: pods.events("ImageReverted"))
        assert pods.image("web") == original
        assert original in event["message"] and event["type"] == "Normal"
        reverted = {"action": "revert", "result": "reverted"}
        assert running.value("swapper_heals_total", reverted) == 1
    finally:
        read_only.stop()


async def test_a_source_gone_as_well_fails_the_heal_and_leaves_the_pod_alone(
    cluster: Cluster, source: Registry, swapper: Callable[..., Any]
) -> None:
    running = await swapper(heal={"revert": True})
    gone = f"{source.host}/public/{unique('gone')}:1.0"
    image = running.mirror_of(gone)
    pods = Pods(cluster, "gone")
    pods.create("web", image)
    pods.stuck("web", image)
    [event] = await eventually("the Event", lambda: pods.events("HealFailed"))
    assert "gone from its source too" in event["message"] and event["type"] == "Warning"
    assert pods.image("web") == image
    assert running.value("swapper_heals_total", {"action": "revert", "result": "source-gone"})


async def test_a_private_source_is_never_reverted_to_nor_copied_with_another_pods_secret(
    cluster: Cluster,
    source: Registry,
    mirror: Registry,
    tmp_path: Path,
    swapper: Callable[..., Any],
) -> None:
    read_only = start_registry(tmp_path / "read-only", read_only=True)
    try:
        repo = f"private/{unique('secret')}"
        push(source, repo, "1.0")
        running = await swapper(mirror_registry=read_only, heal={"revert": True})
        original = f"{source.host}/{repo}:1.0"
        image = running.mirror_of(original)
        reader = Pods(cluster, "reader")  # can read the source, runs the image, not stuck
        reader.secret("alice", source.host, ALICE)
        reader.create("web", image, secrets=("alice",), original=original)
        stranger = Pods(cluster, "stranger")
        stranger.create("web", image, original=original)
        stranger.stuck("web", image)
        [event] = await eventually("the Event", lambda: stranger.events("HealFailed"))
        assert "own credentials cannot read" in event["message"]
        assert stranger.image("web") == image
        assert reader.image("web") == image
        private = {"action": "revert", "result": "private"}
        assert running.value("swapper_heals_total", private) == 1
    finally:
        read_only.stop()
    # A writable mirror: the stranger's heal copies with the stranger's credentials only.
    running = await swapper(monitor={"enabled": False})
    image = running.mirror_of(original)
    stranger = Pods(cluster, "stranger")
    stranger.create("web", image, original=original)
    stranger.stuck("web", image)
    [event] = await eventually("the Event", lambda: stranger.events("HealFailed"))
    assert digest_at(mirror, running.repo_of(original), "1.0") is None


@pytest.mark.parametrize("refresh", ["always", "never"])
async def test_a_moved_tag_is_refreshed_under_always_and_left_under_never(
    cluster: Cluster,
    source: Registry,
    mirror: Registry,
    swapper: Callable[..., Any],
    refresh: str,
) -> None:
    repo = f"public/{unique('moving')}"
    running = await swapper(
        mirror={"refreshTags": refresh, "refreshEvery": "1s", "recheckEvery": "1s"},
        monitor={"interval": "1s", "maxChecks": 10},
        heal={"enabled": False},
    )
    old = push(source, repo, "1.0", seed=f"{repo}-old")
    mirror_repo = running.repo_of(f"{source.host}/{repo}:1.0")
    push(mirror, mirror_repo, "1.0", seed=f"{repo}-old")
    new = push(source, repo, "1.0", seed=f"{repo}-new")  # the tag moved at the source
    pods = Pods(cluster, "moving")
    pods.create("web", running.mirror_of(f"{source.host}/{repo}:1.0"))
    moved = {"state": "tag-moved"}
    if refresh == "always":
        await eventually("refreshed", lambda: digest_at(mirror, mirror_repo, "1.0") == new)
        refreshed = {"reason": "refresh", "result": "queued"}
        assert running.value("swapper_monitor_copies_total", refreshed) >= 1
    else:
        await eventually("reported", lambda: running.value("swapper_images", moved) == 1)
        await asyncio.sleep(3)  # several more checks
        assert digest_at(mirror, mirror_repo, "1.0") == old
        assert running.value("swapper_images", moved) == 1


def manifest_requests(registry: Registry, method: str) -> list[str]:
    pattern = re.compile(rf'"{method} /v2/[^"]*/manifests/')
    return [line for line in registry.logs().splitlines() if pattern.search(line)]


async def test_each_registry_is_asked_no_faster_than_its_pace(
    cluster: Cluster, source: Registry, mirror: Registry, swapper: Callable[..., Any]
) -> None:
    repos = [f"public/{unique('paced')}" for _ in range(12)]
    running = await swapper(
        monitor={"interval": "4s", "maxChecks": 4}, heal={"enabled": False}
    )  # one check a second per registry
    for repo in repos:
        push(source, repo, "1.0")
        push(mirror, running.repo_of(f"{source.host}/{repo}:1.0"), "1.0", seed=f"{repo}:1.0")
    before = len(manifest_requests(mirror, "HEAD")), len(manifest_requests(source, "HEAD"))
    pods = Pods(cluster, "paced")
    for i, repo in enumerate(repos):
        pods.create(f"p{i}", running.mirror_of(f"{source.host}/{repo}:1.0"))
    ours = {running.mirror_of(f"{source.host}/{repo}:1.0") for repo in repos}
    monitor = running.controller.monitor
    assert monitor is not None
    await eventually("watched", lambda: ours <= set(monitor.images))  # pods of other tests too
    started = time.monotonic()
    await asyncio.sleep(6)
    elapsed = time.monotonic() - started
    at_mirror = len(manifest_requests(mirror, "HEAD")) - before[0]
    at_source = len(manifest_requests(source, "HEAD")) - before[1]
    # One per second: plus the first at once, the one in flight at the start of the window, and
    # one for a late log line on a loaded machine; a burst would be several times this.
    allowed = int(elapsed) + 3
    assert 3 <= at_mirror <= allowed, at_mirror
    assert 3 <= at_source <= allowed, at_source
    # (Which images were asked depends on the pods other tests left: the pace does not.)
    checks = running.value("swapper_monitor_checks_total", {"kind": "mirror", "result": "present"})
    checks += running.value("swapper_monitor_checks_total", {"kind": "mirror", "result": "missing"})
    assert checks >= 3


async def test_dry_run_changes_nothing_and_says_what_it_would_do(
    cluster: Cluster, source: Registry, mirror: Registry, swapper: Callable[..., Any]
) -> None:
    repo = f"public/{unique('dry')}"
    push(source, repo, "1.0")
    running = await swapper(
        dryRun=True, heal={"revert": True}, monitor={"interval": "1s", "maxChecks": 10}
    )
    image = running.mirror_of(f"{source.host}/{repo}:1.0")
    pods = Pods(cluster, "dry")
    pods.create("web", image)
    pods.stuck("web", image)
    [event] = await eventually("the Event", lambda: pods.events("MirrorImageMissing"))
    assert event["message"].startswith("dry-run")
    would = {"reason": "missing", "result": "would-copy"}
    await eventually("counted", lambda: running.value("swapper_monitor_copies_total", would))
    await asyncio.sleep(1)
    assert digest_at(mirror, running.repo_of(f"{source.host}/{repo}:1.0"), "1.0") is None
    assert pods.image("web") == image
    assert HEAL in running.supervisor.names() and MONITOR in running.supervisor.names()


def test_the_probe_sees_what_httpx_sees(source: Registry) -> None:
    """The fixtures' own check: an anonymous HEAD of a private image is refused."""
    repo = f"private/{unique('probe')}"
    push(source, repo, "1.0")
    answer = httpx.head(f"{source.url}/v2/{repo}/manifests/1.0", timeout=5)
    assert answer.status_code == 401
