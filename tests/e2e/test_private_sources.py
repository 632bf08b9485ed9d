"""Private source images through the real API server: swapped only for pods that can read them.

swapper follows the cluster's pull secrets and ServiceAccounts through its informers, as the
chart's ServiceAccount (list/watch granted by ``config.source.podPullSecrets``); every Secret
here is created after swapper started, so only the watch can have told it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from e2e.cluster import Cluster
from e2e.serving import Webhook
from e2e.world import (
    PRIVATE_USER,
    Registries,
    create_pod,
    docker_config_secret,
    images,
    pod,
)

SECRET = "alice-pull"


def _until(predicate: Callable[[], Any], within: float = 15.0) -> Any:
    """Retry ``predicate`` (each try creates a new pod) until it is true, or give up."""
    deadline = time.monotonic() + within
    while True:
        found = predicate()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


class Pods:
    def __init__(self, cluster: Cluster, registries: Registries) -> None:
        self.cluster = cluster
        self.registries = registries
        self.count = 0

    def image_of_new_pod(self, namespace: str, **kwargs: Any) -> str:
        self.count += 1
        body = pod(f"p{self.count}", {"app": self.registries.source_ref("private/app")}, **kwargs)
        return images(create_pod(self.cluster, namespace, body))["app"]


@pytest.fixture(scope="module")
def pods(cluster: Cluster, registries: Registries) -> Pods:
    return Pods(cluster, registries)


def namespace_with_secret(
    cluster: Cluster, registries: Registries, name: str, user: tuple[str, str] = PRIVATE_USER
) -> str:
    """A new namespace holding the pull secret ``SECRET`` with ``user``'s credentials."""
    from kubernetes import client

    namespace = cluster.namespace(name)
    core = client.CoreV1Api(cluster.api_client())
    core.create_namespaced_secret(
        namespace, docker_config_secret(namespace, SECRET, registries.source.host, user)
    )
    return namespace


@pytest.fixture(scope="module")
def team(cluster: Cluster, registries: Registries, swapper: Webhook) -> str:
    """A namespace whose pull secret, created after swapper started, reads the private image."""
    return namespace_with_secret(cluster, registries, "e2e-private-team")


def test_a_pod_whose_own_pull_secret_reads_the_private_source_is_swapped(
    team: str, pods: Pods, registries: Registries
) -> None:
    mirrored = registries.mirror_ref("private/app")
    assert _until(lambda: pods.image_of_new_pod(team, secrets=(SECRET,)) == mirrored)


def test_the_private_image_is_not_swapped_in_a_namespace_without_that_secret(
    cluster: Cluster, team: str, pods: Pods, registries: Registries
) -> None:
    mirrored = registries.mirror_ref("private/app")
    assert _until(lambda: pods.image_of_new_pod(team, secrets=(SECRET,)) == mirrored)
    other = cluster.namespace("e2e-private-other")
    source = registries.source_ref("private/app")
    assert pods.image_of_new_pod(other) == source
    assert pods.image_of_new_pod(other, secrets=(SECRET,)) == source  # same name, other ns


def test_a_service_accounts_pull_secrets_count_for_its_pods(
    cluster: Cluster, team: str, pods: Pods, registries: Registries
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    core.create_namespaced_service_account(
        team, {"metadata": {"name": "builder"}, "imagePullSecrets": [{"name": SECRET}]}
    )
    mirrored = registries.mirror_ref("private/app")

    def swapped() -> bool:
        body = pod(f"sa{time.monotonic_ns()}", {"app": registries.source_ref("private/app")})
        body["spec"]["serviceAccountName"] = "builder"
        return images(create_pod(cluster, team, body))["app"] == mirrored

    assert _until(swapped)


def test_a_deleted_pull_secret_stops_granting_the_private_image(
    cluster: Cluster, registries: Registries, pods: Pods, swapper: Webhook
) -> None:
    from kubernetes import client

    namespace = namespace_with_secret(cluster, registries, "e2e-private-revoked")
    core = client.CoreV1Api(cluster.api_client())
    mirrored = registries.mirror_ref("private/app")
    assert _until(lambda: pods.image_of_new_pod(namespace, secrets=(SECRET,)) == mirrored)
    core.delete_namespaced_secret(SECRET, namespace)
    source = registries.source_ref("private/app")
    assert _until(lambda: pods.image_of_new_pod(namespace, secrets=(SECRET,)) == source)


def test_a_pull_secret_whose_credentials_change_is_followed(
    cluster: Cluster, registries: Registries, pods: Pods, swapper: Webhook
) -> None:
    from kubernetes import client

    namespace = namespace_with_secret(cluster, registries, "e2e-private-rotated", ("alice", "no"))
    core = client.CoreV1Api(cluster.api_client())
    source = registries.source_ref("private/app")
    assert pods.image_of_new_pod(namespace, secrets=(SECRET,)) == source
    right = docker_config_secret(namespace, SECRET, registries.source.host, PRIVATE_USER)
    core.replace_namespaced_secret(SECRET, namespace, right)
    mirrored = registries.mirror_ref("private/app")
    assert _until(lambda: pods.image_of_new_pod(namespace, secrets=(SECRET,)) == mirrored)


def test_naming_the_mirror_of_a_private_image_directly_is_refused_by_the_api_server(
    cluster: Cluster, team: str, pods: Pods, registries: Registries
) -> None:
    from kubernetes.client.exceptions import ApiException

    mirrored = registries.mirror_ref("private/app")
    assert _until(lambda: pods.image_of_new_pod(team, secrets=(SECRET,)) == mirrored)
    other = cluster.namespace("e2e-private-bypass")
    with pytest.raises(ApiException) as refused:
        create_pod(cluster, other, pod("bypass", {"app": mirrored}, secrets=("swapper-pull",)))
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert mirrored in message
    assert f"{registries.source_ref('private/app')} is not readable without credentials" in message


def test_naming_the_mirror_directly_with_the_sources_own_pull_secret_is_allowed(
    cluster: Cluster, team: str, registries: Registries
) -> None:
    mirrored = registries.mirror_ref("private/app")
    created = create_pod(cluster, team, pod("direct", {"app": mirrored}, secrets=(SECRET,)))
    assert images(created) == {"app": mirrored}
