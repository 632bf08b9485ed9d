"""``swapper serve`` end to end: admission, copy, and private images kept private.

Real parts: two Debian ``docker-registry`` processes (the source with bearer-token auth where
only ``public/`` is anonymous, the target plain HTTP), the ``swapper serve`` process over HTTPS,
and the real ``kubernetes`` client in it talking to the session's real API server (the
``cluster`` fixture) as a ServiceAccount that may only list and watch Secrets and
ServiceAccounts: that is how it learns the pods' pull secrets. Swap policy ``exists`` with
``immediate`` copies: a pod is swapped only once its image is really in the mirror.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.cluster import Cluster
from helpers import make_pod, post_review, review_body
from registries import (
    Registry,
    TokenServer,
    get_manifest,
    make_image,
    make_layer,
    push_image,
    start_registry,
)
from webhook_process import Webhook, start_webhook, stop

from swapper.images import parse

# This module's namespaces on the shared API server (the AdmissionReviews name them).
HOME = "api-mirroring"  # swapper's ServiceAccount
TEAM = "api-mirroring-team"  # holds alice-pull
OTHER = "api-mirroring-other"
ELSEWHERE = "api-mirroring-elsewhere"
RBAC = "rbac.authorization.k8s.io"
READER = "api-mirroring-swapper"  # its ClusterRole and ClusterRoleBinding, deleted at the end


class World:
    def __init__(self, source: Registry, target: Registry, hook: Webhook):
        self.source = source
        self.target = target
        self.hook = hook


def _eventually(attempt: Callable[[], object], within: float = 15.0) -> None:
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + within
    while True:
        try:
            attempt()
            return
        except ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def pull_secret_reader(cluster: Cluster, kubeconfig: Path) -> Iterator[Path]:
    """A kubeconfig for a ServiceAccount that may list and watch Secrets and ServiceAccounts
    everywhere (what swapper's informers need), and nothing else; its RBAC is removed on exit."""
    from kubernetes import client

    cluster.namespace(HOME)
    cluster.service_account(HOME, "swapper")
    rbac = client.RbacAuthorizationV1Api(cluster.api_client())
    rules = [
        {"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["list", "watch"]}
    ]
    rbac.create_cluster_role({"metadata": {"name": READER}, "rules": rules})
    try:
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": READER},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": READER},
                "subjects": [{"kind": "ServiceAccount", "name": "swapper", "namespace": HOME}],
            }
        )
        try:
            cluster.service_account_kubeconfig(HOME, "swapper", kubeconfig)
            core = client.CoreV1Api(cluster.api_client(kubeconfig))
            _eventually(lambda: core.list_secret_for_all_namespaces(limit=1))  # RBAC in effect
            _eventually(lambda: core.list_service_account_for_all_namespaces(limit=1))
            yield kubeconfig
        finally:
            rbac.delete_cluster_role_binding(READER)
    finally:
        rbac.delete_cluster_role(READER)


@pytest.fixture(scope="module")
def world(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from kubernetes import client

    tmp = tmp_path_factory.mktemp("mirroring")
    tokens = TokenServer(tmp / "tokens", users={"alice": "alice-secret"}, public=("public/",))
    tokens.start()
    source = start_registry(tmp / "source", token_server=tokens)
    target = start_registry(tmp / "target")
    image = make_image([make_layer("mirroring-a"), make_layer("mirroring-b")])
    push_image(source, "public/app", image, "1.0")
    push_image(source, "private/app", image, "1.0")
    auths = {source.host: {"username": "alice", "password": "alice-secret"}}
    config = tmp / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "imageSwapPolicy": "exists",
                "imageCopyPolicy": "immediate",
                "imageCopyDeadline": "6s",
                "admissionTimeout": "8s",
                "target": {
                    "type": "generic",
                    "generic": {"registry": f"{target.host}/mirror", "insecure": True},
                    "existenceCache": {"ttl": "1s"},
                },
                "mirror": {"hosts": {source.host: {"insecure": True}}},
            }
        )
    )
    try:
        for namespace in (TEAM, OTHER, ELSEWHERE):
            cluster.namespace(namespace)
        client.CoreV1Api(cluster.api_client()).create_namespaced_secret(
            TEAM,
            {
                "metadata": {"name": "alice-pull"},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {
                    ".dockerconfigjson": base64.b64encode(
                        json.dumps({"auths": auths}).encode()
                    ).decode()
                },
            },
        )
        with pull_secret_reader(cluster, tmp / "swapper.kubeconfig") as kubeconfig:
            hook = start_webhook(tmp, config, env={"KUBECONFIG": str(kubeconfig)})
            try:
                yield World(source, target, hook)
            finally:
                stop(hook)
    finally:
        target.stop()
        source.stop()
        tokens.stop()


def review(namespace: str, image: str, secrets: tuple[str, ...] = ()) -> bytes:
    pod = make_pod(image, namespace=namespace, secrets=secrets or None)
    pod["spec"]["containers"][0]["name"] = "app"
    return review_body(pod, namespace)


def admit(world: World, body: bytes) -> dict[str, Any]:
    return post_review(world.hook, body)


def mirror_repo(source: str) -> str:
    return f"mirror/{parse(source).mirror_path()}"


def swapped_image(response: dict[str, Any]) -> str | None:
    for op in response.get("patch", []):
        if op["path"] == "/spec/containers/0/image":
            return str(op["value"])
    return None


def test_a_public_image_is_copied_and_the_pod_swapped_to_it(world: World) -> None:
    source = f"{world.source.host}/public/app:1.0"
    response = admit(world, review("default", source))
    assert swapped_image(response) == f"{world.target.host}/{mirror_repo(source)}:1.0"
    copied = get_manifest(world.target, mirror_repo(source), "1.0")
    original = get_manifest(world.source, "public/app", "1.0")
    assert copied is not None and original is not None
    assert copied[0] == original[0]  # byte for byte: the same digest


def test_a_private_image_is_copied_with_the_pods_own_pull_secret(world: World) -> None:
    source = f"{world.source.host}/private/app:1.0"
    response = admit(world, review(TEAM, source, ("alice-pull",)))
    assert swapped_image(response) == f"{world.target.host}/{mirror_repo(source)}:1.0"
    assert get_manifest(world.target, mirror_repo(source), "1.0")


def test_a_pod_that_cannot_read_the_private_source_is_not_swapped_to_its_mirror(
    world: World,
) -> None:
    source = f"{world.source.host}/private/app:1.0"
    admit(world, review(TEAM, source, ("alice-pull",)))  # the mirror has it now
    response = admit(world, review(OTHER, source))
    assert swapped_image(response) is None
    assert response["auditAnnotations"] == {"skipped": "app=skipped-private"}
    assert any(
        "is not readable without credentials (private, or not there)" in w
        for w in response["warnings"]
    )


def test_a_pull_secret_with_the_same_name_in_another_namespace_grants_nothing(
    world: World,
) -> None:
    source = f"{world.source.host}/private/app:1.0"
    response = admit(world, review(ELSEWHERE, source, ("alice-pull",)))
    assert swapped_image(response) is None


def test_copy_metrics_are_exported(world: World) -> None:
    admit(world, review("default", f"{world.source.host}/public/app:1.0"))
    with world.hook.client() as client:
        text = client.get("/metrics").text
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["swapper_copies_succeeded_total"] >= 1
    assert values["swapper_copy_bytes_total"] > 0


def test_an_image_deleted_from_the_mirror_is_copied_again_before_pods_use_it(
    world: World,
) -> None:
    source = f"{world.source.host}/public/app:1.0"
    admit(world, review("default", source))
    repo = mirror_repo(source)
    with world.target.client() as client:
        digest = client.head(
            f"/v2/{repo}/manifests/1.0",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ).headers["docker-content-digest"]
        assert client.delete(f"/v2/{repo}/manifests/{digest}").status_code == 202
    assert get_manifest(world.target, repo, "1.0") is None  # a lifecycle rule expired it
    time.sleep(1.2)  # the existence cache's ttl in this config is 1 s
    response = admit(world, review("default", source))
    assert swapped_image(response) == f"{world.target.host}/{repo}:1.0"
    assert get_manifest(world.target, repo, "1.0") == get_manifest(
        world.source, "public/app", "1.0"
    )
