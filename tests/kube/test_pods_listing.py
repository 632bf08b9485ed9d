"""Pods listed page by page from the real API server (swapper.kube.pods)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e.cluster import Cluster

from swapper.errors import KubeError
from swapper.kube import pods as kube_pods
from swapper.kube.pods import PodPages

LIST_PODS = {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}


def make_pods(cluster: Cluster, namespace: str, count: int, start: int = 0) -> set[str]:
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    names = set()
    for i in range(start, start + count):
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"p{i}"},
            "spec": {
                "automountServiceAccountToken": False,
                "containers": [{"name": "c", "image": f"nginx:1.{i}"}],
            },
        }
        core.create_namespaced_pod(namespace, body, _preload_content=False)
        names.add(f"p{i}")
    return names


def names_in(pages: list[list[dict[str, Any]]]) -> list[str]:
    return [pod["metadata"]["name"] for page in pages for pod in page]


def test_a_namespace_is_read_in_pages_of_the_limit_and_every_pod_comes_once(
    cluster: Cluster, namespaces: Callable[[str], str]
) -> None:
    namespace = namespaces("paged")
    made = make_pods(cluster, namespace, 5)
    pages = PodPages(cluster.api_client(), namespace, limit=2)
    read = list(pages)
    assert [len(page) for page in read] == [2, 2, 1]
    assert sorted(names_in(read)) == sorted(made)
    assert pages.pages == 3
    assert not pages.inconsistent and not pages.forbidden


def test_all_namespaces_are_read_when_no_namespace_is_named(
    cluster: Cluster, namespaces: Callable[[str], str]
) -> None:
    first, second = namespaces("one"), namespaces("two")
    make_pods(cluster, first, 2)
    make_pods(cluster, second, 1)
    seen = {
        (pod["metadata"]["namespace"], pod["metadata"]["name"])
        for page in PodPages(cluster.api_client(), limit=1)
        for pod in page
    }
    assert {(first, "p0"), (first, "p1"), (second, "p0")} <= seen


def test_an_expired_continue_token_goes_on_from_the_next_pod_without_reading_any_twice(
    cluster: Cluster, namespaces: Callable[[str], str]
) -> None:
    namespace = namespaces("expired")
    made = make_pods(cluster, namespace, 5)
    pages = PodPages(cluster.api_client(), namespace, limit=2)
    read = iter(pages)
    first = next(read)
    # A write after the first page, then compaction: the first page's snapshot is gone.
    made |= make_pods(cluster, namespace, 1, start=5)
    cluster.compact_etcd()
    rest = list(read)
    names = names_in([first, *rest])
    assert len(names) == len(set(names)), names
    assert set(names) == made
    assert pages.inconsistent


def test_a_namespace_the_identity_may_not_list_ends_the_pages_and_says_why_once(
    cluster: Cluster,
    namespaces: Callable[[str], str],
    account: Callable[..., Path],
) -> None:
    mine, other = namespaces("mine"), namespaces("other")
    make_pods(cluster, other, 1)
    kubeconfig = account(mine, "lister", rules=[LIST_PODS])
    api = cluster.api_client(kubeconfig)
    pages = PodPages(api, other)
    assert list(pages) == []
    assert "HTTP 403" in pages.forbidden and f"namespace {other}" in pages.forbidden
    assert kube_pods.namespaces(api) is None


def test_namespaces_are_listed_for_an_identity_that_may(
    cluster: Cluster, namespaces: Callable[[str], str]
) -> None:
    made = namespaces("listed")
    found = kube_pods.namespaces(cluster.api_client())
    assert found is not None and made in found


def test_an_unreachable_api_server_is_a_kube_error(tmp_path: Path, cluster: Cluster) -> None:
    kubeconfig = cluster.write_kubeconfig(tmp_path / "k", {"token": "x"})
    text = kubeconfig.read_text().replace(cluster.url, "https://127.0.0.1:1")
    kubeconfig.write_text(text)
    from swapper.kube import api_client

    api = api_client(str(kubeconfig))
    api.configuration.retries = 0
    with pytest.raises(KubeError, match="list pods in all namespaces"):
        list(PodPages(api))
