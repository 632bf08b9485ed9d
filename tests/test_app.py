"""The admission handler with its backends: the target pull secret is provisioned first."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
from helpers import make_pod, make_review, review_body

from swapper.admission.app import AdmissionHandler
from swapper.admission.review import parse_review
from swapper.backends import Backends
from swapper.config import load_config
from swapper.kube.memory import MemoryPullSecrets
from swapper.mirror.memory import MemoryCopyQueue
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
