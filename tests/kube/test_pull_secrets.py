"""The target pull secret, provisioned and refreshed through the (fake) API server."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from kube_fake import FakeKubeAPI

from swapper.errors import KubeError
from swapper.kube.pull_secrets import MANAGED_BY, KubePullSecrets
from swapper.targets.base import Credentials
from swapper.targets.memory import MemoryTarget

NAME = "swapper-pull-secret"
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def token(value: str) -> Credentials:
    return Credentials("AWS", value, dt.datetime(2026, 11, 24, tzinfo=dt.UTC))


@pytest.fixture
def target() -> MemoryTarget:
    return MemoryTarget(REGISTRY, credentials=token("token-1"))


@pytest.fixture
def reports() -> list[str]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def secrets(
    kube_api: FakeKubeAPI, target: MemoryTarget, reports: list[str], clock: Clock
) -> KubePullSecrets:
    return KubePullSecrets(
        kube_api.api_client(),
        NAME,
        target,
        REGISTRY,
        cleanup=True,
        cleanup_grace=600,
        clock=clock,
        on_report=reports.append,
    )


def stored_auth(kube_api: FakeKubeAPI, namespace: str) -> dict[str, Any]:
    secret = kube_api.get("secrets", NAME, namespace)
    assert secret is not None
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    return dict(config["auths"][REGISTRY])


def writes(kube_api: FakeKubeAPI) -> int:
    return len([r for r in kube_api.writes() if "/secrets" in r.path])


async def test_the_secret_is_created_with_the_targets_credentials(
    kube_api: FakeKubeAPI, secrets: KubePullSecrets
) -> None:
    await secrets.ensure("team")
    secret = kube_api.get("secrets", NAME, "team")
    assert secret is not None
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["labels"][MANAGED_BY] == "swapper"
    auth = stored_auth(kube_api, "team")
    assert (auth["username"], auth["password"]) == ("AWS", "token-1")
    assert base64.b64decode(auth["auth"]) == b"AWS:token-1"


async def test_a_namespace_already_provisioned_costs_no_api_call(
    kube_api: FakeKubeAPI, secrets: KubePullSecrets
) -> None:
    await secrets.ensure("team")
    before = len(kube_api.requests)
    for _ in range(50):
        await secrets.ensure("team")
    assert len(kube_api.requests) == before


async def test_new_target_credentials_are_written_to_every_namespace_before_the_old_expire(
    kube_api: FakeKubeAPI, secrets: KubePullSecrets, target: MemoryTarget
) -> None:
    await secrets.ensure("team")
    await secrets.ensure("web")
    target.credentials = token("token-2")  # the target renewed its token
    assert await secrets.refresh() == 2
    assert stored_auth(kube_api, "team")["password"] == "token-2"
    assert stored_auth(kube_api, "web")["password"] == "token-2"
    assert await secrets.refresh() == 0  # nothing changed since


async def test_a_secret_swapper_does_not_manage_is_never_overwritten(
    kube_api: FakeKubeAPI, secrets: KubePullSecrets, reports: list[str]
) -> None:
    theirs = {
        "metadata": {"namespace": "team", "name": NAME},
        "type": "Opaque",
        "data": {"owner": base64.b64encode(b"someone else").decode()},
    }
    kube_api.put("secrets", theirs)
    await secrets.ensure("team")
    await secrets.ensure("team")
    assert kube_api.get("secrets", NAME, "team")["data"] == theirs["data"]  # type: ignore[index]
    assert reports == ["unmanaged"]
    assert writes(kube_api) == 0


async def test_a_failure_is_raised_and_reported_as_an_event_on_the_service_account(
    kube_api: FakeKubeAPI, secrets: KubePullSecrets, reports: list[str]
) -> None:
    kube_api.fail("POST", "/api/v1/namespaces/team/secrets", 403, "Forbidden", times=1)
    with pytest.raises(KubeError, match="403"):
        await secrets.ensure("team", "builder")
    assert reports == ["failed"]
    events = [r for r in kube_api.writes() if r.path == "/api/v1/namespaces/team/events"]
    assert len(events) == 1
    body = events[0].body
    assert body["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "name": "builder",
        "namespace": "team",
    }
    assert body["reason"] == "PullSecretFailed"
    assert "token-1" not in json.dumps(body)


async def test_a_concurrent_change_is_read_again_and_written(
    kube_api: FakeKubeAPI, secrets: KubePullSecrets, target: MemoryTarget
) -> None:
    await secrets.ensure("team")
    target.credentials = token("token-2")

    def someone_else_writes() -> None:
        current = kube_api.get("secrets", NAME, "team")
        assert current is not None
        current["metadata"].setdefault("annotations", {})["touched"] = "yes"
        kube_api.put("secrets", current)

    kube_api.before("PUT", f"/api/v1/namespaces/team/secrets/{NAME}", someone_else_writes)
    assert await secrets.refresh() == 1
    assert stored_auth(kube_api, "team")["password"] == "token-2"
    stored = kube_api.get("secrets", NAME, "team")
    assert stored is not None and stored["metadata"]["annotations"]["touched"] == "yes"


async def test_after_a_restart_managed_secrets_are_found_and_refreshed(
    kube_api: FakeKubeAPI, secrets: KubePullSecrets, target: MemoryTarget, clock: Clock
) -> None:
    for namespace in ("team", "web", "quiet"):
        kube_api.put("namespaces", {"metadata": {"name": namespace}})
    await secrets.ensure("team")
    await secrets.ensure("web")
    target.credentials = token("token-2")
    restarted = KubePullSecrets(kube_api.api_client(), NAME, target, REGISTRY, clock=clock)
    restarted.discover()
    assert restarted.namespaces == {"team", "web"}
    assert await restarted.refresh() == 2
    assert stored_auth(kube_api, "web")["password"] == "token-2"


async def test_an_anonymous_mirror_needs_no_secret(
    kube_api: FakeKubeAPI, secrets: KubePullSecrets, target: MemoryTarget
) -> None:
    target.credentials = None
    await secrets.ensure("team")
    assert kube_api.get("secrets", NAME, "team") is None


async def test_cleanup_removes_the_secret_where_no_pod_refers_to_it_after_the_grace_period(
    kube_api: FakeKubeAPI, secrets: KubePullSecrets, clock: Clock, reports: list[str]
) -> None:
    await secrets.ensure("team")
    await secrets.ensure("busy")
    kube_api.put(
        "pods",
        {
            "metadata": {"namespace": "busy", "name": "web"},
            "spec": {"containers": [], "imagePullSecrets": [{"name": NAME}]},
        },
    )
    await secrets.refresh()
    assert kube_api.get("secrets", NAME, "team") is not None  # within the grace period
    clock.now += 601
    await secrets.refresh()
    assert kube_api.get("secrets", NAME, "team") is None
    assert kube_api.get("secrets", NAME, "busy") is not None
    assert reports.count("deleted") == 1
    assert secrets.namespaces == {"busy"}
