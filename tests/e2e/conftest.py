"""End-to-end tests against a real kube-apiserver and etcd (see e2e/cluster.py).

One control plane serves the whole session. On it the chart is installed as a user would
(e2e/install.py), with two Debian ``docker-registry`` processes as source (bearer tokens, only
``public/`` anonymous) and target (basic auth, so a target pull secret is needed), and
``swapper serve`` runs as the chart's ServiceAccount.

The control plane itself is the session fixture ``cluster`` of tests/conftest.py, shared with
tests/kube. The session fixture ``node`` adds a real node to it (e2e/node.py): a kubelet of the
same version with Debian's containerd, runc and a CNI bridge, started by the first test that
asks for it and checked at the end to have left nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import yaml
from e2e import binaries
from e2e.cluster import Cluster
from e2e.install import Installed, install
from e2e.node import Node, NodeRefused, running_node
from e2e.serving import Webhook, point_webhook, start_swapper, stop
from e2e.world import MIRROR_USER, PRIVATE_USER, Registries, e2e_values
from registries import (
    TokenServer,
    make_image,
    make_layer,
    push_image,
    start_registry,
)


@pytest.fixture(scope="session")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    tmp = tmp_path_factory.mktemp("registries")
    tokens = TokenServer(tmp / "tokens", users=dict([PRIVATE_USER]), public=("public/",))
    tokens.start()
    source = start_registry(tmp / "source", token_server=tokens)
    target = start_registry(tmp / "target", users=dict([MIRROR_USER]))
    image = make_image([make_layer("e2e-a"), make_layer("e2e-b")])
    repos = ("public/app", "public/sidecar", "public/debug", "public/other", "public/tags")
    for repo in (*repos, "private/app"):
        push_image(source, repo, image, "1.0")
    credentials = tmp / "mirror-credentials.yaml"
    credentials.write_text(yaml.safe_dump({"username": MIRROR_USER[0], "password": MIRROR_USER[1]}))
    try:
        yield Registries(tokens, source, target, image, credentials)
    finally:
        target.stop()
        source.stop()
        tokens.stop()


@pytest.fixture(scope="session")
def installed(
    cluster: Cluster, registries: Registries, tmp_path_factory: pytest.TempPathFactory
) -> Installed:
    return install(cluster, e2e_values(registries), tmp_path_factory.mktemp("install"))


@pytest.fixture(scope="session")
def swapper(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    """One replica of the chart's webhook, registered by URL with the API server."""
    hook = start_swapper(installed, tmp_path_factory.mktemp("swapper"))
    point_webhook(installed, hook.url)
    try:
        yield hook
    finally:
        stop(hook)


@pytest.fixture
def repoint(installed: Installed, swapper: Webhook) -> Iterator[Callable[[str], None]]:
    """Point the webhook at another URL for one test; back at ``swapper`` afterwards."""
    yield lambda url: point_webhook(installed, url)
    point_webhook(installed, swapper.url)


@pytest.fixture(scope="session")
def node(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A real node (kubelet, containerd, runc, a CNI bridge) registered with ``cluster``, Ready.

    Skipped, with what was refused, only where the machine cannot run containers; a kubelet
    that cannot be built is an error (``make kube-binaries`` builds it). At the end of the
    session everything is stopped and removed, then checked: anything left (a mount, a cgroup,
    a link, a process, an iptables rule) fails the session's last test at teardown.
    """
    version = cluster.binaries.kubernetes_version
    try:
        kubelet = binaries.kubelet(version)
    except SystemExit as exc:
        pytest.fail(f"no kubelet {version} for the node tests: {str(exc)[-600:]}")
    assert kubelet is not None
    try:
        with running_node(cluster, kubelet, tmp_path_factory.mktemp("node")) as running:
            yield running
    except NodeRefused as exc:
        pytest.skip(f"this machine cannot run the node: {exc}")
