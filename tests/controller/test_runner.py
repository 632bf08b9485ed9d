"""The controller put together, its pod watch on the real API server: the leader backfills,
a loop made to crash is restarted and counted, a lost Lease stops the loops."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from e2e.cluster import Cluster

from swapper.backends import Backends
from swapper.config import Config, load_config
from swapper.controller.runner import BACKFILL, POD_WATCH, Controller
from swapper.errors import KubeError
from swapper.kube.leases import MemoryLeaseStore
from swapper.metrics import Metrics
from swapper.mirror.memory import MemoryCopyQueue
from swapper.supervisor import Supervisor
from swapper.targets.memory import MemoryTarget

ENDPOINT = "mirror.local:5000/m"


def config(**controller: Any) -> Config:
    return load_config(
        {
            "target": {"type": "generic", "generic": {"registry": ENDPOINT}},
            "source": {"checkAccess": False},
            "controller": {
                "leaseName": f"runner-{uuid.uuid4().hex[:6]}",
                "leaseDuration": "3s",
                "renewDeadline": "2s",
                "retryPeriod": "0.2s",
                **controller,
            },
            "supervisor": {"backoffMin": "0.05s", "backoffMax": "0.2s"},
        }
    )


async def eventually(what: str, check: Callable[[], bool], within: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, f"{what}: not within {within:g}s"
        await asyncio.sleep(0.05)


@dataclass
class Parts:
    """A controller over memory backends and a memory Lease store, its pod watch on the real
    API server, under a supervisor that holds its tasks but has not started them."""

    controller: Controller
    supervisor: Supervisor
    store: MemoryLeaseStore
    target: MemoryTarget
    queue: MemoryCopyQueue
    metrics: Metrics


def parts(cluster: Cluster) -> Parts:
    settings = config()
    metrics = Metrics()
    target = MemoryTarget(ENDPOINT)
    queue = MemoryCopyQueue(target)
    backends = Backends(target=target, queue=queue, metrics=metrics)
    supervisor = Supervisor(metrics, settings.supervisor)
    store = MemoryLeaseStore()
    controller = Controller(settings, backends, cluster.api_client(), supervisor, store, "one")
    for spec in controller.tasks():
        supervisor.add(spec)
    return Parts(controller, supervisor, store, target, queue, metrics)


def make_pod(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "app", "image": image}],
            "automountServiceAccountToken": False,
        },
    }


async def test_the_leader_backfills_real_pods_and_a_loop_made_to_crash_is_restarted_and_counted(
    cluster: Cluster,
) -> None:
    from kubernetes import client

    namespace = cluster.namespace(f"runner-{uuid.uuid4().hex[:6]}")
    core = client.CoreV1Api(cluster.api_client())
    tag = uuid.uuid4().hex[:8]
    for i in range(3):
        core.create_namespaced_pod(namespace, make_pod(f"p{i}", f"runner/app{i}:{tag}"))
    wanted = {f"{ENDPOINT}/docker.io/runner/app{i}:{tag}" for i in range(3)}

    made = parts(cluster)
    controller, supervisor, target, metrics = (
        made.controller,
        made.supervisor,
        made.target,
        made.metrics,
    )
    scan = controller.backfill.scan
    crashes = 0

    async def crash_once() -> dict[str, int]:
        nonlocal crashes
        if crashes == 0:
            crashes += 1
            raise RuntimeError("made to crash")
        return await scan()

    controller.backfill.scan = crash_once  # type: ignore[method-assign]
    await supervisor.start()
    try:
        await eventually("the backfill copies the pods' images", lambda: wanted <= target.images)
        restarts = metrics.registry.get_sample_value(
            "swapper_task_restarts_total", {"task": BACKFILL}
        )
        assert restarts == 1
        assert controller.leading and BACKFILL in supervisor.names()
    finally:
        await supervisor.stop()
        await made.queue.aclose()


async def test_a_leader_that_cannot_renew_its_lease_stops_the_loops(cluster: Cluster) -> None:
    made = parts(cluster)
    controller, supervisor, store, metrics = (
        made.controller,
        made.supervisor,
        made.store,
        made.metrics,
    )
    await supervisor.start()
    try:
        await eventually("leading", lambda: POD_WATCH in supervisor.names())
        store.failure = KubeError("the API server is gone")
        await eventually("the loops stopped", lambda: POD_WATCH not in supervisor.names(), 5)
        assert BACKFILL not in supervisor.names()
        assert not controller.leading
        assert metrics.registry.get_sample_value("swapper_leader") == 0
    finally:
        await supervisor.stop()
        await made.queue.aclose()


async def test_a_pod_the_kubelet_reports_stuck_on_a_lost_mirror_image_is_healed_with_an_event(
    cluster: Cluster,
) -> None:
    from kubernetes import client

    namespace = cluster.namespace(f"heal-{uuid.uuid4().hex[:6]}")
    core = client.CoreV1Api(cluster.api_client())
    mirror = f"{ENDPOINT}/docker.io/heal/app:{uuid.uuid4().hex[:8]}"
    core.create_namespaced_pod(namespace, make_pod("stuck", mirror))
    made = parts(cluster)
    await made.supervisor.start()
    try:
        await eventually("leading", lambda: POD_WATCH in made.supervisor.names())
        # What the kubelet writes when the pull fails: the status subresource.
        status = {
            "status": {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "app",
                        "image": mirror,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {
                            "waiting": {"reason": "ImagePullBackOff", "message": "not found"}
                        },
                    }
                ],
            }
        }
        core.patch_namespaced_pod_status("stuck", namespace, status)
        await eventually("the image is copied back", lambda: mirror in made.target.images)

        def restored() -> list[Any]:
            listed = core.list_namespaced_event(namespace, _preload_content=False)
            items = json.loads(listed.data)["items"]
            return [e for e in items if e["reason"] == "MirrorImageRestored"]

        await eventually("the pod's Event", lambda: bool(restored()))
        [event] = restored()
        assert event["involvedObject"]["kind"] == "Pod"
        assert event["involvedObject"]["name"] == "stuck"
        assert event["type"] == "Normal" and mirror in event["message"]
        heals = made.metrics.registry.get_sample_value(
            "swapper_heals_total", {"action": "restore", "result": "restored"}
        )
        assert heals == 1
    finally:
        await made.supervisor.stop()
        await made.queue.aclose()
