"""The admission handler with its backends (the target pull secret is provisioned first), its
reconfiguration, and the app's lifespan under the supervisor."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import orjson
from helpers import make_pod, make_review, review_body

from swapper.admission.app import AdmissionHandler, create_app
from swapper.admission.review import parse_review
from swapper.backends import Backends
from swapper.config import load_config
from swapper.kube.memory import MemoryPullSecrets
from swapper.mirror.memory import MemoryCopyQueue
from swapper.supervisor import Supervisor, TaskSpec
from swapper.targets.memory import MemoryTarget

CONFIG = {
    "imageSwapPolicy": "always",
    "imageCopyPolicy": "none",
    "source": {"checkAccess": False},
    "target": {
        "type": "generic",
        "generic": {"registry": "mirror.local/m"},
        "pullSecret": {"enabled": True},
    },
}


def handler(pull_secrets: MemoryPullSecrets, **config: Any) -> AdmissionHandler:
    target = MemoryTarget("mirror.local/m")
    backends = Backends(target, MemoryCopyQueue(target), pull_secrets=pull_secrets)
    return AdmissionHandler(load_config({**CONFIG, **config}), backends)


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return list(json.loads(base64.b64decode(answer["response"]["patch"])))


async def test_the_pull_secret_is_provisioned_before_a_pod_refers_to_it() -> None:
    secrets = MemoryPullSecrets()
    answer = await handler(secrets)(make_review(make_pod("nginx:1.27"), namespace="team"))
    assert secrets.namespaces == {"team"}
    paths = [op["path"] for op in patch_of(dict(answer))]
    assert "/spec/imagePullSecrets" in paths


async def test_when_the_pull_secret_cannot_be_provisioned_the_pod_is_left_unchanged() -> None:
    secrets = MemoryPullSecrets()
    secrets.fail.add("team")
    answer = await handler(secrets)(make_review(make_pod("nginx:1.27"), namespace="team"))
    response = answer["response"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert any("pull-secret" in w for w in response.get("warnings", []))


async def test_a_pod_that_already_carries_the_secret_needs_no_provisioning() -> None:
    secrets = MemoryPullSecrets()
    pod = make_pod("nginx:1.27", secrets=("swapper-pull-secret",))
    await handler(secrets)(make_review(pod, namespace="team"))
    assert secrets.namespaces == set()


async def test_dry_run_writes_no_secret() -> None:
    secrets = MemoryPullSecrets()
    await handler(secrets, dryRun=True)(make_review(make_pod("nginx:1.27"), namespace="team"))
    await handler(secrets)(make_review(make_pod("nginx:1.27"), namespace="web", dry_run=True))
    assert secrets.namespaces == set()


async def test_a_server_side_dry_run_is_answered_with_the_patch_and_writes_no_secret() -> None:
    secrets = MemoryPullSecrets()
    answer = await handler(secrets)(make_review(make_pod("nginx:1.27"), dry_run=True))
    assert [op["path"] for op in patch_of(dict(answer))] == [
        "/spec/containers/0/image",
        "/spec/imagePullSecrets",
        "/metadata/annotations",
    ]
    assert secrets.namespaces == set()


async def test_in_audit_mode_a_server_side_dry_run_is_only_reported() -> None:
    secrets = MemoryPullSecrets()
    review = make_review(make_pod("nginx:1.27"), dry_run=True)
    response = (await handler(secrets, dryRun=True)(review))["response"]
    assert "patch" not in response
    assert response["warnings"] == [
        "containers[c0]: would swap nginx:1.27 -> mirror.local/m/docker.io/library/nginx:1.27"
    ]


async def test_a_pod_under_an_operation_swapper_does_not_know_is_left_unchanged() -> None:
    secrets = MemoryPullSecrets()
    doc = orjson.loads(review_body(make_pod("nginx:1.27"), namespace="team"))
    doc["request"]["operation"] = "PATCH"
    answer = await handler(secrets)(parse_review(orjson.dumps(doc)))
    assert answer["response"] == {"uid": doc["request"]["uid"], "allowed": True}
    assert secrets.namespaces == set()


class GatedPullSecrets(MemoryPullSecrets):
    """Holds each provisioning until ``gate`` is set; ``waiting`` is set meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def ensure(self, namespace: str, service_account: str = "") -> None:
        self.waiting.set()
        await self.gate.wait()
        await super().ensure(namespace, service_account)


def swapped(answer: Any) -> bool:
    return "patch" in answer["response"] and any(
        op["path"] == "/spec/containers/0/image" for op in patch_of(dict(answer))
    )


async def test_a_reconfigured_handler_answers_new_requests_and_lets_those_in_flight_finish() -> (
    None
):
    secrets = GatedPullSecrets()
    admission = handler(secrets)
    in_flight = asyncio.create_task(
        admission(make_review(make_pod("nginx:1.27"), namespace="team"))
    )
    async with asyncio.timeout(5):
        await secrets.waiting.wait()
    skip_team = {"jmespath": "obj.metadata.namespace == 'team'"}
    admission.reconfigure(
        load_config({**CONFIG, "source": {"checkAccess": False, "filters": [skip_team]}})
    )
    secrets.gate.set()
    async with asyncio.timeout(5):
        assert swapped(await in_flight)  # decided and answered under the config it began with
    assert not swapped(await admission(make_review(make_pod("nginx:1.27"), namespace="team")))
    assert swapped(await admission(make_review(make_pod("nginx:1.27"), namespace="web")))
    assert admission.config.source.filters[0].jmespath == skip_team["jmespath"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_readyz_names_a_critical_task_down_longer_than_the_threshold() -> None:
    clock, failed, retry, back = Clock(), asyncio.Event(), asyncio.Event(), asyncio.Event()
    runs = 0

    async def informers() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("watch failed")
        back.set()
        await asyncio.Event().wait()

    async def backoff(_: float) -> None:
        failed.set()
        await retry.wait()

    config = load_config({**CONFIG, "supervisor": {"notReadyAfter": "10s"}})
    target = MemoryTarget("mirror.local/m")
    backends = Backends(
        target,
        MemoryCopyQueue(target),
        background=[TaskSpec("informers", informers, critical=True)],
    )
    supervisor = Supervisor(backends.metrics, config.supervisor, clock, sleep=backoff)
    app = create_app(config, backends, supervisor)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://swapper") as client,
    ):
        async with asyncio.timeout(5):
            await failed.wait()
        assert (await client.get("/readyz")).status_code == 200  # not down for long yet
        clock.now += 11
        answer = await client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json() == {"status": "not ready", "down": ["informers"]}
        assert backends.metrics.registry.get_sample_value("swapper_ready") == 0
        retry.set()
        async with asyncio.timeout(5):
            await back.wait()
        assert (await client.get("/readyz")).status_code == 200
        assert backends.metrics.registry.get_sample_value("swapper_ready") == 1


async def test_the_lifespan_stops_the_tasks_in_reverse_before_closing_the_backends() -> None:
    events: list[str] = []
    started = asyncio.Event()

    def task(name: str) -> TaskSpec:
        async def run() -> None:
            try:
                started.set()
                await asyncio.Event().wait()
            finally:
                events.append(f"stopped {name}")

        return TaskSpec(name, run)

    async def close() -> None:
        events.append("closed")

    target = MemoryTarget("mirror.local/m")
    backends = Backends(
        target, MemoryCopyQueue(target), background=[task("first"), task("second")], closers=[close]
    )
    supervisor = Supervisor(backends.metrics)
    app = create_app(load_config(CONFIG), backends, supervisor)
    async with app.router.lifespan_context(app):
        async with asyncio.timeout(5):
            await started.wait()
        assert supervisor.names() == ["log-flusher", "first", "second"]
    assert events == ["stopped second", "stopped first", "closed"]
    assert supervisor.names() == []
