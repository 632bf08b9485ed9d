"""The control plane under the end-to-end tests is a real, locked-down one."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e.cluster import Cluster


def test_the_api_server_is_the_pinned_release(cluster: Cluster) -> None:
    from kubernetes import client

    version = client.VersionApi(cluster.api_client()).get_code()
    assert version.git_version == cluster.binaries.kubernetes_version


def test_a_service_account_token_from_token_request_authenticates_as_that_account(
    cluster: Cluster, tmp_path: Path
) -> None:
    from kubernetes import client

    namespace = cluster.namespace("cluster-tokens")
    cluster.service_account(namespace, "someone")
    kubeconfig = cluster.service_account_kubeconfig(namespace, "someone", tmp_path / "kc")
    review = client.AuthenticationV1Api(cluster.api_client(kubeconfig)).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:someone"


def test_rbac_denies_what_no_binding_grants(cluster: Cluster, tmp_path: Path) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    namespace = cluster.namespace("cluster-rbac")
    cluster.service_account(namespace, "nobody")
    kubeconfig = cluster.service_account_kubeconfig(namespace, "nobody", tmp_path / "kc")
    core = client.CoreV1Api(cluster.api_client(kubeconfig))
    with pytest.raises(ApiException) as denied:
        core.list_namespaced_secret(namespace)
    assert denied.value.status == 403


def test_the_service_account_admission_plugin_needs_the_account_to_exist(
    cluster: Cluster,
) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(cluster.api_client())
    core.create_namespace({"metadata": {"name": "cluster-no-default-account"}})
    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
    }
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod("cluster-no-default-account", pod)
    assert refused.value.status == 403
    assert "serviceaccount" in str(refused.value.body).lower()
