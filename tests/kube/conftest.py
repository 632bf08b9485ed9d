"""Tests of ``swapper.kube`` run the real ``kubernetes`` client against the real API server.

The session's kube-apiserver and etcd (the ``cluster`` fixture of tests/conftest.py) serve
every test that needs no injected fault; each test makes its own namespaces (``namespaces``)
and identities (``account``). The few tests that need a fault a real server cannot be made to
show at a chosen moment use the fake (``kube_api``, tests/kube_fake.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from e2e.cluster import Cluster
from kube_fake import kube_api

__all__ = ["account", "kube_api", "namespaces"]

Rule = dict[str, Any]
RBAC = "rbac.authorization.k8s.io"


@pytest.fixture
def namespaces(cluster: Cluster, request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Makes namespaces of this test only: ``kube-<module>-<role>-<random>``, with their
    ``default`` ServiceAccount."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    suffix = uuid.uuid4().hex[:6]
    return lambda role: cluster.namespace(f"kube-{module}-{role}-{suffix}")


def _allowed(api: Any, namespace: str, rule: Rule) -> bool:
    for group in rule.get("apiGroups") or [""]:
        for resource in rule["resources"]:
            for verb in rule["verbs"]:
                for name in rule.get("resourceNames") or [""]:
                    review = api.create_self_subject_access_review(
                        {
                            "apiVersion": "authorization.k8s.io/v1",
                            "kind": "SelfSubjectAccessReview",
                            "spec": {
                                "resourceAttributes": {
                                    "namespace": namespace,
                                    "group": group,
                                    "resource": resource,
                                    "verb": verb,
                                    "name": name,
                                }
                            },
                        }
                    )
                    if not review.status.allowed:
                        return False
    return True


@pytest.fixture
def account(cluster: Cluster, tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Makes a ServiceAccount allowed exactly ``rules`` in its namespace (a Role) and
    ``cluster_rules`` everywhere (a ClusterRole, deleted after the test); returns a kubeconfig
    that authenticates as it, once the API server's authorizer grants every rule."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    rbac = client.RbacAuthorizationV1Api(cluster.api_client())
    cluster_objects: list[str] = []

    def make(
        namespace: str, name: str, rules: Sequence[Rule] = (), cluster_rules: Sequence[Rule] = ()
    ) -> Path:
        cluster.service_account(namespace, name)
        subjects = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
        if rules:
            rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
            rbac.create_namespaced_role_binding(
                namespace,
                {
                    "metadata": {"name": name},
                    "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
                    "subjects": subjects,
                },
            )
        if cluster_rules:
            unique = f"{namespace}-{name}"
            cluster_objects.append(unique)
            rbac.create_cluster_role({"metadata": {"name": unique}, "rules": cluster_rules})
            rbac.create_cluster_role_binding(
                {
                    "metadata": {"name": unique},
                    "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": unique},
                    "subjects": subjects,
                }
            )
        kubeconfig = cluster.service_account_kubeconfig(
            namespace, name, tmp_path / f"{namespace}-{name}.kubeconfig"
        )
        reviews = client.AuthorizationV1Api(cluster.api_client(kubeconfig))
        deadline = time.monotonic() + 15
        while not all(_allowed(reviews, namespace, r) for r in [*rules, *cluster_rules]):
            if time.monotonic() > deadline:
                raise AssertionError(f"RBAC for {namespace}/{name} not in effect after 15 s")
            time.sleep(0.05)
        return kubeconfig

    yield make
    for unique in cluster_objects:
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(unique)
            except ApiException as exc:
                if exc.status != 404:
                    raise
