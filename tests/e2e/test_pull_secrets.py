"""The target pull secret written through the real API server: Events, and several replicas.

Writes are counted from the API server's audit log (Secrets' create/update/patch/delete are
recorded at Metadata level: who, what, never the data).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from e2e.cluster import Cluster
from e2e.install import Installed
from e2e.serving import Webhook, start_swapper, stop
from e2e.world import Registries, create_pod, images, pod, pull_secrets

PULL_SECRET = "mirror-pull"


def _writes(cluster: Cluster, installed: Installed, namespace: str) -> list[str]:
    who = f"system:serviceaccount:{installed.namespace}:{installed.service_account}"
    return cluster.writes("secrets", namespace, PULL_SECRET, user=who)


def test_a_pull_secret_that_cannot_be_written_leaves_the_pod_unchanged_with_an_event(
    cluster: Cluster, registries: Registries, swapper: Webhook
) -> None:
    from kubernetes import client

    namespace = cluster.namespace("e2e-no-secrets-allowed")
    core = client.CoreV1Api(cluster.api_client())
    # A quota of no Secrets at all: the ResourceQuota admission plugin refuses the write.
    core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "no-secrets"}, "spec": {"hard": {"secrets": "0"}}}
    )
    core.patch_namespaced_resource_quota_status(
        "no-secrets",
        namespace,
        {"status": {"hard": {"secrets": "0"}, "used": {"secrets": "0"}}},
    )
    source = registries.source_ref("public/app")
    created = create_pod(cluster, namespace, pod("web", {"web": source}))
    assert images(created) == {"web": source}
    assert pull_secrets(created) == []  # never a reference to a Secret that is not there
    events = core.list_namespaced_event(namespace).items
    failed = [e for e in events if e.reason == "PullSecretFailed"]
    assert failed, [e.reason for e in events]
    assert failed[0].type == "Warning"
    assert (failed[0].involved_object.kind, failed[0].involved_object.name) == (
        "ServiceAccount",
        "default",
    )
    assert "quota" in failed[0].message.lower()


def test_two_replicas_do_not_fight_over_the_pull_secret(
    cluster: Cluster,
    registries: Registries,
    installed: Installed,
    swapper: Webhook,
    repoint: Callable[[str], None],
    tmp_path: Path,
) -> None:
    second = start_swapper(installed, tmp_path / "b", name="b")
    try:
        namespaces = [cluster.namespace("e2e-replicas-1"), cluster.namespace("e2e-replicas-2")]
        source = registries.source_ref("public/app")
        count = 0
        for replica in (swapper, second, swapper, second):
            repoint(replica.url)
            for namespace in namespaces:
                count += 1
                created = create_pod(cluster, namespace, pod(f"p{count}", {"c": source}))
                assert pull_secrets(created) == [PULL_SECRET]
        time.sleep(3)  # time for any write that would follow another one
    finally:
        stop(second)
    assert [_writes(cluster, installed, n) for n in namespaces] == [["create"], ["create"]]
