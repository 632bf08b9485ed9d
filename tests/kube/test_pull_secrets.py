"""The target pull secret, provisioned and refreshed through the real API server.

Each test has its own namespaces and its own Secret name (a restarted swapper looks for that
name in every namespace of the shared cluster). Writes are counted from the API server's audit
log. Two tests run on the fake (tests/kube_fake.py), which records every request and can run a
concurrent writer between swapper's read and its write.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e.cluster import Cluster
from helpers import Clock
from kube_fake import FakeKubeAPI

from swapper.credentials import Credentials
from swapper.errors import KubeError
from swapper.kube.pull_secrets import MANAGED_BY, KubePullSecrets
from swapper.targets.memory import MemoryTarget

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"

Namespaces = Callable[[str], str]


def token(value: str) -> Credentials:
    return Credentials("AWS", value, expires_at=dt.datetime(2026, 11, 24, tzinfo=dt.UTC))


class Kube:
    """The real API server as the admin sees it, and this test's Secret name."""

    def __init__(self, cluster: Cluster) -> None:
        from kubernetes import client

        self.cluster = cluster
        self.core = client.CoreV1Api(cluster.api_client())
        self.name = f"swapper-pull-{uuid.uuid4().hex[:6]}"

    def stored(self, namespace: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            response = self.core.read_namespaced_secret(
                self.name, namespace, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        found: dict[str, Any] = json.loads(response.data)
        return found

    def stored_auth(self, namespace: str) -> dict[str, Any]:
        secret = self.stored(namespace)
        assert secret is not None
        config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
        return dict(config["auths"][REGISTRY])

    def writes(self, namespace: str) -> list[str]:
        """The verbs of every write of the Secret that the API server audited, in order."""
        return self.cluster.writes("secrets", namespace, self.name)


@pytest.fixture
def kube(cluster: Cluster) -> Kube:
    return Kube(cluster)


@pytest.fixture
def target() -> MemoryTarget:
    return MemoryTarget(REGISTRY, credentials=token("token-1"))


@pytest.fixture
def reports() -> list[str]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock(1_000_000.0)


@pytest.fixture
def secrets(kube: Kube, target: MemoryTarget, reports: list[str], clock: Clock) -> KubePullSecrets:
    return KubePullSecrets(
        kube.cluster.api_client(),
        kube.name,
        target,
        REGISTRY,
        cleanup=True,
        cleanup_grace=600,
        clock=clock,
        on_report=reports.append,
    )


async def test_the_secret_is_created_with_the_targets_credentials(
    kube: Kube, namespaces: Namespaces, secrets: KubePullSecrets
) -> None:
    team = namespaces("team")
    await secrets.ensure(team)
    secret = kube.stored(team)
    assert secret is not None
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["labels"][MANAGED_BY] == "swapper"
    auth = kube.stored_auth(team)
    assert (auth["username"], auth["password"]) == ("AWS", "token-1")
    assert base64.b64decode(auth["auth"]) == b"AWS:token-1"


async def test_new_target_credentials_are_written_to_every_namespace_before_the_old_expire(
    kube: Kube, namespaces: Namespaces, secrets: KubePullSecrets, target: MemoryTarget
) -> None:
    team, web = namespaces("team"), namespaces("web")
    await secrets.ensure(team)
    await secrets.ensure(web)
    target.credentials = token("token-2")  # the target renewed its token
    assert await secrets.refresh() == 2
    assert kube.stored_auth(team)["password"] == "token-2"
    assert kube.stored_auth(web)["password"] == "token-2"
    assert await secrets.refresh() == 0  # nothing changed since


async def test_a_secret_swapper_does_not_manage_is_never_overwritten(
    kube: Kube, namespaces: Namespaces, secrets: KubePullSecrets, reports: list[str]
) -> None:
    team = namespaces("team")
    theirs = {
        "metadata": {"name": kube.name},
        "type": "Opaque",
        "data": {"owner": base64.b64encode(b"someone else").decode()},
    }
    kube.core.create_namespaced_secret(team, theirs)
    await secrets.ensure(team)
    await secrets.ensure(team)
    assert kube.stored(team)["data"] == theirs["data"]  # type: ignore[index]
    assert reports == ["unmanaged"]
    assert kube.writes(team) == ["create"]  # theirs, and nothing since


async def test_a_failure_is_raised_and_reported_as_an_event_on_the_service_account(
    kube: Kube,
    namespaces: Namespaces,
    account: Callable[..., Path],
    target: MemoryTarget,
    reports: list[str],
) -> None:
    team = namespaces("team")
    # An account that may read Secrets and write Events, but not create Secrets: a real 403.
    kubeconfig = account(
        team,
        "swapper",
        rules=[
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        ],
    )
    secrets = KubePullSecrets(
        kube.cluster.api_client(kubeconfig), kube.name, target, REGISTRY, on_report=reports.append
    )
    with pytest.raises(KubeError, match="403"):
        await secrets.ensure(team, "builder")
    assert reports == ["failed"]
    listed = kube.core.list_namespaced_event(team, _preload_content=False)
    events = [e for e in json.loads(listed.data)["items"] if e["reason"] == "PullSecretFailed"]
    assert len(events) == 1
    assert events[0]["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "name": "builder",
        "namespace": team,
    }
    assert events[0]["type"] == "Warning"
    assert "token-1" not in json.dumps(events[0])


async def test_after_a_restart_managed_secrets_are_found_and_refreshed(
    kube: Kube,
    namespaces: Namespaces,
    secrets: KubePullSecrets,
    target: MemoryTarget,
    clock: Clock,
) -> None:
    team, web, _quiet = namespaces("team"), namespaces("web"), namespaces("quiet")
    await secrets.ensure(team)
    await secrets.ensure(web)
    target.credentials = token("token-2")
    restarted = KubePullSecrets(kube.cluster.api_client(), kube.name, target, REGISTRY, clock=clock)
    restarted.discover()
    assert restarted.namespaces == {team, web}
    assert await restarted.refresh() == 2
    assert kube.stored_auth(web)["password"] == "token-2"


async def test_an_anonymous_mirror_needs_no_secret(
    kube: Kube, namespaces: Namespaces, secrets: KubePullSecrets, target: MemoryTarget
) -> None:
    team = namespaces("team")
    target.credentials = None
    await secrets.ensure(team)
    assert kube.stored(team) is None


async def test_cleanup_removes_the_secret_where_no_pod_refers_to_it_after_the_grace_period(
    kube: Kube,
    namespaces: Namespaces,
    secrets: KubePullSecrets,
    clock: Clock,
    reports: list[str],
) -> None:
    team, busy = namespaces("team"), namespaces("busy")
    await secrets.ensure(team)
    await secrets.ensure(busy)
    kube.core.create_namespaced_pod(
        busy,
        {
            "metadata": {"name": "web"},
            "spec": {
                "containers": [{"name": "web", "image": "registry.example.com/web:1.0"}],
                "imagePullSecrets": [{"name": kube.name}],
            },
        },
    )
    await secrets.refresh()
    assert kube.stored(team) is not None  # within the grace period
    clock.now += 601
    await secrets.refresh()
    assert kube.stored(team) is None
    assert kube.stored(busy) is not None
    assert reports.count("deleted") == 1
    assert secrets.namespaces == {busy}


# -- on the fake: exact requests, and a writer between the read and the write --------------------

NAME = "swapper-pull-secret"


def fake_pull_secrets(fake: FakeKubeAPI, target: MemoryTarget) -> KubePullSecrets:
    return KubePullSecrets(fake.api_client(), NAME, target, REGISTRY)


def fake_stored_auth(fake: FakeKubeAPI, namespace: str) -> dict[str, Any]:
    secret = fake.get("secrets", NAME, namespace)
    assert secret is not None
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    return dict(config["auths"][REGISTRY])


async def test_a_namespace_already_provisioned_costs_no_api_call(
    kube_api: FakeKubeAPI, target: MemoryTarget
) -> None:
    secrets = fake_pull_secrets(kube_api, target)
    await secrets.ensure("team")
    before = len(kube_api.requests)
    assert before > 0
    for _ in range(50):
        await secrets.ensure("team")
    assert len(kube_api.requests) == before


async def test_a_concurrent_change_is_read_again_and_written(
    kube_api: FakeKubeAPI, target: MemoryTarget
) -> None:
    secrets = fake_pull_secrets(kube_api, target)
    await secrets.ensure("team")
    target.credentials = token("token-2")

    def someone_else_writes() -> None:
        current = kube_api.get("secrets", NAME, "team")
        assert current is not None
        current["metadata"].setdefault("annotations", {})["touched"] = "yes"
        kube_api.put("secrets", current)

    kube_api.before("PUT", f"/api/v1/namespaces/team/secrets/{NAME}", someone_else_writes)
    assert await secrets.refresh() == 1
    assert fake_stored_auth(kube_api, "team")["password"] == "token-2"
    stored = kube_api.get("secrets", NAME, "team")
    assert stored is not None and stored["metadata"]["annotations"]["touched"] == "yes"
    puts = [r for r in kube_api.writes() if r.method == "PUT"]
    assert len(puts) == 2  # the first answered 409 Conflict
