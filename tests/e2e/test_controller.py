"""The cluster half on the real API server: backfill, leader election, copies shared by replicas.

Each test runs its own ``swapper serve`` replicas (as the chart's ServiceAccount, with the
chart's config) on a Lease of its own, mirroring into a registry of this module's (so what the
backfill copies never changes what the other end-to-end tests see in the shared mirror).
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from e2e.cluster import Cluster
from e2e.install import Installed
from e2e.serving import start_swapper, stop, stopped_url
from e2e.world import (
    MIRROR_USER,
    PRIVATE_USER,
    Registries,
    create_pod,
    docker_config_secret,
    in_mirror,
    metric,
    pod,
)
from helpers import review_body
from registries import Registry, push_image, start_registry
from webhook_process import Webhook


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """This module's target registry (basic auth, the same user as the shared one), with an
    access log to count requests."""
    registry = start_registry(
        tmp_path_factory.mktemp("controller-mirror"), users=dict([MIRROR_USER]), access_log=True
    )
    try:
        yield registry
    finally:
        registry.stop()


def config_for(installed: Installed, mirror: Registry, lease: str, **extra: Any) -> dict[str, Any]:
    """The chart's config with this module's mirror as target and the Lease ``lease``."""
    chart = installed.config()
    target = copy.deepcopy(chart["target"])
    target["generic"]["registry"] = f"{mirror.host}/mirror"
    controller = {**chart.get("controller", {}), "enabled": True, "leaseName": lease}
    controller.update(extra.pop("controller", {}))
    return {"target": target, "controller": controller, **extra}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> float:
    """Seconds until ``check()`` is true; fails the test after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout:g}s")
        time.sleep(0.1)
    return time.monotonic() - started


def leader_of(cluster: Cluster, namespace: str, lease: str) -> str:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CoordinationV1Api(cluster.api_client())
    try:
        raw = api.read_namespaced_lease(lease, namespace, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return ""
        raise
    return str(json.loads(raw.data)["spec"].get("holderIdentity") or "")


def leading(hook: Webhook) -> bool:
    try:
        return metric(hook, "swapper_leader") == 1
    except Exception:  # a process just killed answers nothing
        return False


def name_of(hook: Webhook) -> str:
    """The replica's ``$POD_NAME``, from its folder (``start_swapper`` names both alike)."""
    return f"swapper-{hook.cert_dir.parent.name}"


@pytest.fixture
def replicas(
    installed: Installed, tmp_path: Path
) -> Iterator[Callable[[dict[str, Any], str], Webhook]]:
    """Start replicas of ``swapper serve``; every one still running is stopped afterwards."""
    started: list[Webhook] = []

    def start(config: dict[str, Any], name: str) -> Webhook:
        hook = start_swapper(installed, tmp_path / name, config, name=name)
        started.append(hook)
        return hook

    yield start
    for hook in started:
        if hook.process.poll() is None:
            stop(hook)


def test_pods_created_before_swapper_starts_are_mirrored_by_the_backfill(
    cluster: Cluster,
    installed: Installed,
    registries: Registries,
    mirror: Registry,
    repoint: Callable[[str], None],
    replicas: Callable[[dict[str, Any], str], Webhook],
) -> None:
    namespace = cluster.namespace("backfill-before")
    repoint(stopped_url())  # swapper is not there yet: failurePolicy Ignore lets pods through
    secret = docker_config_secret(namespace, "source-pull", registries.source.host, PRIVATE_USER)
    from kubernetes import client

    client.CoreV1Api(cluster.api_client()).create_namespaced_secret(namespace, secret)
    source = registries.source_ref
    create_pod(
        cluster,
        namespace,
        pod("web", {"app": source("public/app"), "sc": source("public/sidecar")}),
    )
    create_pod(
        cluster, namespace, pod("priv", {"app": source("private/app")}, secrets=("source-pull",))
    )
    # A private image no pod may read is never copied with anyone else's credentials.
    create_pod(cluster, namespace, pod("nosecret", {"app": source("private/app", "2.0")}))
    assert not in_mirror(registries, mirror, "public/app")

    hook = replicas(config_for(installed, mirror, "backfill-before"), "backfill")
    took = wait_for(
        "the backfill mirrors the running pods' images",
        lambda: all(
            in_mirror(registries, mirror, repo)
            for repo in ("public/app", "public/sidecar", "private/app")
        ),
    )
    assert took < 30
    assert metric(hook, "swapper_backfill_copies_total") >= 3
    assert not in_mirror(registries, mirror, "private/app", "2.0")


def elected(
    replicas: Callable[[dict[str, Any], str], Webhook],
    installed: Installed,
    mirror: Registry,
    prefix: str,
) -> tuple[str, Webhook, Webhook]:
    """Two replicas on a new Lease (no backfill), once one leads: the Lease, leader, other."""
    lease = f"{prefix}-{uuid.uuid4().hex[:6]}"
    config = config_for(installed, mirror, lease, controller={"backfill": False})
    a, b = replicas(config, "a"), replicas(config, "b")
    wait_for("a leader", lambda: leading(a) or leading(b))
    return (lease, a, b) if leading(a) else (lease, b, a)


def test_two_replicas_elect_exactly_one_leader(
    cluster: Cluster,
    installed: Installed,
    mirror: Registry,
    replicas: Callable[[dict[str, Any], str], Webhook],
) -> None:
    lease, leader, other = elected(replicas, installed, mirror, "one-leader")
    time.sleep(3)  # a retry period and more: the other replica has tried and failed meanwhile
    assert leading(leader) and not leading(other)
    assert leader_of(cluster, installed.namespace, lease) == name_of(leader)


def test_a_killed_leader_is_replaced_within_the_lease_duration_and_a_retry_period(
    cluster: Cluster,
    installed: Installed,
    mirror: Registry,
    replicas: Callable[[dict[str, Any], str], Webhook],
) -> None:
    lease, leader, other = elected(replicas, installed, mirror, "failover")
    leader.process.kill()  # SIGKILL: no chance to release the Lease
    leader.process.wait()
    took = wait_for("the other replica leads", lambda: leading(other), timeout=40)
    print(f"failover after SIGKILL: {took:.1f}s")
    # The lease duration, counted from when the other replica saw the last renewal (up to one
    # jittered retry period, 2 s x (1 + up to 1.2), after it), then its next try after expiry.
    assert took <= 15 + 2 * (2 * 2.2) + 2
    assert took > 5  # the dead leader's Lease was respected until it expired
    assert leader_of(cluster, installed.namespace, lease) == name_of(other)


def test_sigterm_hands_leadership_over_at_once(
    cluster: Cluster,
    installed: Installed,
    mirror: Registry,
    replicas: Callable[[dict[str, Any], str], Webhook],
) -> None:
    _, leader, other = elected(replicas, installed, mirror, "handover")
    started = time.monotonic()
    stop(leader)  # SIGTERM: the Lease is released on the way out
    took = wait_for("the other replica leads", lambda: leading(other), timeout=20)
    total = time.monotonic() - started
    print(f"handover after SIGTERM: {took:.1f}s after exit, {total:.1f}s after the signal")
    assert took < 2 * 2.2 + 2.5  # the next (jittered) try takes the released Lease, not 15 s


FLEET = 50


@pytest.fixture(scope="module")
def fleet(registries: Registries) -> list[str]:
    """FLEET repositories at the source (one image each, sharing their layers), never mirrored
    before."""
    repos = [f"public/fleet{i}" for i in range(FLEET)]
    for repo in repos:
        push_image(registries.source, repo, registries.image, "1.0")
    return repos


def test_two_replicas_admitting_the_same_new_images_copy_each_once(
    cluster: Cluster,
    installed: Installed,
    registries: Registries,
    mirror: Registry,
    fleet: list[str],
    replicas: Callable[[dict[str, Any], str], Webhook],
) -> None:
    lease = f"shared-{uuid.uuid4().hex[:6]}"
    config = config_for(
        installed,
        mirror,
        lease,
        controller={"backfill": False, "shareCopies": True},
        imageSwapPolicy="always",
        imageCopyPolicy="delayed",
    )
    a, b = replicas(config, "a"), replicas(config, "b")
    containers = {f"c{i}": registries.source_ref(repo) for i, repo in enumerate(fleet)}
    body = review_body(pod("fleet", containers))

    def admit(hook: Webhook) -> int:
        with hook.client() as client:
            return client.post("/mutate", content=body).status_code

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(admit, (a, b))) == [200, 200]
    wait_for(
        f"all {FLEET} images mirrored",
        lambda: all(in_mirror(registries, mirror, repo) for repo in fleet),
        timeout=120,
    )
    # Pushes that the registry took (201). A push it refuses fails that copy: the replica
    # waiting on the image's Lease then finds it missing and copies it, as it should.
    log = mirror.logs()
    puts = re.findall(r'"PUT /v2/mirror/[^ ]*/(public/fleet\d+)/manifests/1.0 HTTP/1.1" 201 ', log)
    per_image = {repo: puts.count(repo) for repo in fleet}
    acquired = sum(metric(hook, 'swapper_copy_leases_total{result="acquired"}') for hook in (a, b))
    held = sum(
        metric(hook, 'swapper_copy_leases_total{result="held-elsewhere"}') for hook in (a, b)
    )
    print(f"successful manifest pushes per image: {sorted(set(per_image.values()))}")
    print(f"leases acquired {acquired:.0f}, held elsewhere {held:.0f}")
    assert per_image == dict.fromkeys(fleet, 1)
