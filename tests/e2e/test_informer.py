"""swapper's informer against the real watch, as the chart's ServiceAccount.

The API server here has no watch cache, so a watch is served by etcd: once etcd has compacted
past the informer's last resourceVersion, resuming from it answers 410 Gone (HTTP 200, then an
``ERROR`` event with code 410 in the stream), as it does in a cluster for a client that fell
behind. The informer must then list again at once (an expired version is not a failure) and
hold exactly what the API server holds. The informer's paging, its other 410s and its resuming
after a dropped connection are tested in tests/kube/test_informer.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.cluster import Cluster
from e2e.install import Installed
from e2e.world import docker_config_secret

from swapper.kube.informer import Informer

TYPE = "kubernetes.io/dockerconfigjson"


def _wait(predicate: Callable[[], bool], within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Gate:
    """Wraps the client's list method; holds the ``hold_at``-th watch until released."""

    def __init__(self, list_all: Callable[..., Any], hold_at: int) -> None:
        self.list_all = list_all
        self.hold_at = hold_at
        self.watches: list[str] = []
        self.statuses: list[int] = []  # the HTTP status each watch request was answered
        self.waiting = threading.Event()
        self.release = threading.Event()

    def __call__(self, **kwargs: Any) -> Any:
        if kwargs.get("watch"):
            self.watches.append(str(kwargs.get("resource_version")))
            if len(self.watches) == self.hold_at:
                self.waiting.set()
                self.release.wait(30)
            try:
                response = self.list_all(**kwargs)
            except Exception as exc:
                self.statuses.append(getattr(exc, "status", 0))
                raise
            self.statuses.append(response.status)
            return response
        return self.list_all(**kwargs)


@pytest.fixture
def core(cluster: Cluster) -> Any:
    from kubernetes import client

    return client.CoreV1Api(cluster.api_client())


@pytest.fixture
def follow(
    cluster: Cluster, installed: Installed, tmp_path: Path
) -> Iterator[Callable[[int], tuple[Informer[Any], Gate]]]:
    """Start an informer over pull-secret Secrets as swapper's own account."""
    from kubernetes import client

    kubeconfig = installed.swapper_kubeconfig(tmp_path / "swapper.kubeconfig")
    core = client.CoreV1Api(cluster.api_client(kubeconfig))
    stop = threading.Event()
    threads: list[tuple[Informer[Any], threading.Thread, Gate]] = []

    def start(hold_at: int) -> tuple[Informer[Any], Gate]:
        gate = Gate(core.list_secret_for_all_namespaces, hold_at)
        informer: Informer[Any] = Informer(
            "secrets",
            gate,
            lambda obj: obj.get("data"),
            field_selector=f"type={TYPE}",
            watch_timeout=1,
        )
        thread = threading.Thread(target=informer.run, args=(stop,), daemon=True)
        thread.start()
        threads.append((informer, thread, gate))
        assert informer.synced.wait(15)
        return informer, gate

    yield start
    stop.set()
    for informer, thread, gate in threads:
        gate.release.set()
        informer.interrupt()
        thread.join(10)


def _truth(core: Any, namespace: str) -> dict[tuple[str, str], Any]:
    listed = core.list_namespaced_secret(namespace, field_selector=f"type={TYPE}")
    return {(namespace, s.metadata.name): s.data for s in listed.items}


def _kept(informer: Informer[Any], namespace: str) -> dict[tuple[str, str], Any]:
    return {k: v for k, v in informer.items.items() if k[0] == namespace}


def test_the_informer_follows_creates_changes_and_deletes_through_the_watch(
    cluster: Cluster, core: Any, follow: Callable[[int], tuple[Informer[Any], Gate]]
) -> None:
    namespace = cluster.namespace("e2e-informer-watch")
    informer, _ = follow(0)
    host = "registry.example.org"
    core.create_namespaced_secret(namespace, docker_config_secret(namespace, "a", host, ("u", "1")))
    core.create_namespaced_secret(namespace, docker_config_secret(namespace, "b", host, ("u", "1")))
    core.replace_namespaced_secret(
        "a", namespace, docker_config_secret(namespace, "a", host, ("u", "2"))
    )
    core.delete_namespaced_secret("b", namespace)
    assert _wait(lambda: _kept(informer, namespace) == _truth(core, namespace))
    assert list(_kept(informer, namespace)) == [(namespace, "a")]
    assert informer.lists == 1  # all of it came through the watch


def test_a_watch_that_expires_after_compaction_is_relisted_without_losing_state(
    cluster: Cluster, core: Any, follow: Callable[[int], tuple[Informer[Any], Gate]]
) -> None:
    namespace = cluster.namespace("e2e-informer-gone")
    host = "registry.example.org"
    for name in ("keep", "change", "remove"):
        core.create_namespaced_secret(
            namespace, docker_config_secret(namespace, name, host, ("u", name))
        )
    informer, gate = follow(2)  # the first watch runs (1 s), the second is held back
    assert _wait(lambda: len(_kept(informer, namespace)) == 3)
    assert gate.waiting.wait(15)
    # While the informer is between two watches, the cluster moves on and etcd compacts.
    core.replace_namespaced_secret(
        "change", namespace, docker_config_secret(namespace, "change", host, ("u", "new"))
    )
    core.delete_namespaced_secret("remove", namespace)
    core.create_namespaced_secret(
        namespace, docker_config_secret(namespace, "added", host, ("u", "added"))
    )
    cluster.compact_etcd()
    gate.release.set()
    assert _wait(lambda: informer.lists == 2)
    assert informer.expired == 1  # the API server answered 410 Gone to the held-back watch
    assert gate.statuses[1] == 200  # ... as an ERROR event in the stream, not as its status
    assert informer.failures == 0  # ... and that was a relist, not an error with a backoff
    assert _kept(informer, namespace) == _truth(core, namespace)
    assert sorted(n for _, n in _kept(informer, namespace)) == ["added", "change", "keep"]
    core.create_namespaced_secret(
        namespace, docker_config_secret(namespace, "later", host, ("u", "later"))
    )
    assert _wait(lambda: (namespace, "later") in informer.items)  # and it watches again


def test_service_accounts_pull_secret_lists_are_followed_through_the_watch(
    cluster: Cluster, installed: Installed, core: Any, tmp_path: Path
) -> None:
    from kubernetes import client

    from swapper.access.source_credentials import SourceCredentials

    kubeconfig = installed.swapper_kubeconfig(tmp_path / "swapper.kubeconfig")
    store = SourceCredentials(cluster.api_client(kubeconfig), watch_timeout=5)
    namespace = cluster.namespace("e2e-informer-accounts")
    store.start()
    try:
        assert _wait(lambda: store.synced)
        core.create_namespaced_service_account(
            namespace, {"metadata": {"name": "ci"}, "imagePullSecrets": [{"name": "one"}]}
        )
        assert _wait(lambda: store.secret_names(namespace, (), "ci") == ("one",))
        core.patch_namespaced_service_account(
            "ci", namespace, {"imagePullSecrets": [{"name": "two"}, {"name": "three"}]}
        )
        assert _wait(lambda: store.secret_names(namespace, (), "ci") == ("two", "three"))
        client.CoreV1Api(cluster.api_client()).delete_namespaced_service_account("ci", namespace)
        assert _wait(lambda: store.secret_names(namespace, (), "ci") == ())
        assert all(i.failures == 0 for i in (*store.secrets, store.service_accounts))
    finally:
        store.stop()
