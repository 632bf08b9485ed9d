"""Public answers of the access check survive a restart during a source outage.

Real parts: the session's kube-apiserver (the ``cluster`` fixture) holding the source-access
ConfigMap, swapper running as a ServiceAccount that may touch that one object only (the chart's
Role), a plain-HTTP Debian ``docker-registry`` source that is stopped to make the outage, a
target registry, and ``swapper serve`` (``exists`` swap policy, ``immediate`` copies) started
twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.cluster import Cluster
from helpers import make_pod, post_review, review_body
from registries import Registry, make_image, make_layer, push_image, start_registry
from webhook_process import Webhook, start_webhook, stop

from swapper.images import parse, target_reference

HOME = "api-remembered"
CONFIG_MAP = "swapper-source-access"


@pytest.fixture(scope="module")
def kubeconfig(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kubernetes import client

    cluster.namespace(HOME)
    cluster.service_account(HOME, "swapper")
    api = cluster.api_client()
    client.CoreV1Api(api).create_namespaced_config_map(HOME, {"metadata": {"name": CONFIG_MAP}})
    rbac = client.RbacAuthorizationV1Api(api)
    rule = {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": [CONFIG_MAP],
        "verbs": ["get", "list", "watch", "update"],
    }
    rbac.create_namespaced_role(HOME, {"metadata": {"name": "swapper"}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        HOME,
        {
            "metadata": {"name": "swapper"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "swapper"},
            "subjects": [{"kind": "ServiceAccount", "name": "swapper", "namespace": HOME}],
        },
    )
    path = tmp_path_factory.mktemp("remembered") / "swapper.kubeconfig"
    return cluster.service_account_kubeconfig(HOME, "swapper", path)


def start(tmp: Path, source: Registry, target: Registry, kubeconfig: Path) -> Webhook:
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "imageSwapPolicy": "exists",
                "imageCopyPolicy": "immediate",
                "imageCopyDeadline": "6s",
                "admissionTimeout": "8s",
                "source": {"podPullSecrets": False, "access": {"configMap": CONFIG_MAP}},
                "target": {
                    "type": "generic",
                    "generic": {"registry": f"{target.host}/mirror", "insecure": True},
                },
                "mirror": {"hosts": {source.host: {"insecure": True}}},
            }
        )
    )
    return start_webhook(tmp, config, env={"KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": HOME})


def admit(hook: Webhook, image: str) -> dict[str, Any]:
    return post_review(hook, review_body(make_pod(image, namespace="team"), "team"))


def stored(cluster: Cluster) -> dict[str, int]:
    from kubernetes import client

    found = client.CoreV1Api(cluster.api_client()).read_namespaced_config_map(CONFIG_MAP, HOME)
    return dict(json.loads((found.data or {}).get("public.json") or "{}"))


def wait_for(check: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not seen in time"
        time.sleep(0.1)


@pytest.fixture
def registries(tmp_path: Path) -> Iterator[tuple[Registry, Registry]]:
    source = start_registry(tmp_path / "source")
    target = start_registry(tmp_path / "target")
    push_image(source, "team/app", make_image([make_layer("remembered")]), "1.0")
    try:
        yield source, target
    finally:
        source.stop()
        target.stop()


def test_after_a_restart_during_an_outage_a_remembered_public_image_is_still_swapped(
    cluster: Cluster,
    kubeconfig: Path,
    registries: tuple[Registry, Registry],
    tmp_path: Path,
) -> None:
    source, target = registries
    image = f"{source.host}/team/app:1.0"
    mirror = target_reference(parse(image), f"{target.host}/mirror")
    first = start(tmp_path / "first", source, target, kubeconfig)
    try:
        assert admit(first, image)["patch"][0]["value"] == mirror  # copied, and swapped
        wait_for(lambda: parse(image).name in stored(cluster))  # written by the first replica
    finally:
        stop(first)
    source.stop()  # the outage
    again = start(tmp_path / "again", source, target, kubeconfig)
    try:
        response = admit(again, image)
        never_seen = admit(again, f"{source.host}/team/other:1.0")
    finally:
        stop(again)
    assert response["patch"][0]["value"] == mirror  # under exists: the mirror has it
    assert never_seen["auditAnnotations"] == {"skipped": "c0=skipped-unverified"}


def test_a_public_answer_one_replica_got_serves_the_other_replica(
    cluster: Cluster,
    kubeconfig: Path,
    registries: tuple[Registry, Registry],
    tmp_path: Path,
) -> None:
    source, target = registries
    image = f"{source.host}/team/app:1.0"
    mirror = target_reference(parse(image), f"{target.host}/mirror")
    one = start(tmp_path / "one", source, target, kubeconfig)
    other = start(tmp_path / "other", source, target, kubeconfig)
    try:
        admit(one, image)
        wait_for(lambda: parse(image).name in stored(cluster))
        time.sleep(1.0)  # the other replica's watch delivers the write
        source.stop()  # the other replica never asked the source, and now cannot
        response = admit(other, image)
    finally:
        stop(one)
        stop(other)
    assert response["patch"][0]["value"] == mirror
