"""swapper's pods on a real node: the kubelet pulls and runs what swapper made of them.

The node (e2e/node.py) is a kubelet of the API server's version with Debian's containerd 1.6,
runc and a CNI bridge. Every image here is built in the test (e2e/node_images.py: busybox and a
marker) and pushed to the shared source registry; each prints ``image=<marker>`` when it
starts, so the container's own output, read from the kubelet's pod log files, says which image
ran. Where it came from is said by the container's ``imageID`` (the registry and the digest;
reliable while containerd holds that digest under one name only), containerd's image store and
the mirror registry's access log.

The figures the cases measure are printed (``pytest -s``) and written into /tmp/readme-notes.

Each test has a namespace of its own; its pods are deleted (and stopped by the kubelet) after
it. swapper runs as the chart's webhook (the session's ``swapper``) or as replicas of this
module's, with their own mirror registries, exactly as in test_controller.py.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from e2e.cluster import Cluster
from e2e.install import Installed
from e2e.node import Node
from e2e.node_images import marker_image
from e2e.serving import start_swapper, stop, stopped_url
from e2e.world import (
    MIRROR_USER,
    Registries,
    create_pod,
    images,
    in_mirror,
    metric,
    mirror_ref,
    pull_secrets,
)
from registries import REGISTRY_BIN, Image, Registry, get_manifest, push_image, start_registry
from webhook_process import Webhook

from swapper.images import parse

JSON = dict[str, Any]
PULL_SECRET = "mirror-pull"
NOTES = Path("/tmp/readme-notes")
STUCK = ("ErrImagePull", "ImagePullBackOff")

#: What the cases measured, written into NOTES at the end of the module.
FIGURES: dict[str, str] = {}


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def figures(node: Node) -> Iterator[None]:
    """The node's figures and the cases' timings, printed and kept in /tmp/readme-notes."""
    FIGURES.clear()
    FIGURES["node: kubelet started -> Node Ready"] = f"{node.timings.ready:.2f}s"
    yield
    NOTES.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}: {value}" for key, value in FIGURES.items()]
    (NOTES / f"node-figures-{node.cluster.binaries.kubernetes_version}.txt").write_text(
        "\n".join(lines) + "\n"
    )
    print("\n" + "\n".join(lines))


@pytest.fixture(scope="module")
def pulls(node: Node, registries: Registries) -> Registries:
    """The shared registries, reachable by the node's containerd (plain HTTP)."""
    node.add_registry(registries.source.host)
    node.add_registry(registries.target.host)
    return registries


@pytest.fixture
def namespace(cluster: Cluster, node: Node) -> Iterator[str]:
    """A namespace of the test's own; its pods stopped and removed by the kubelet after it."""
    name = cluster.namespace(f"node-{uuid.uuid4().hex[:8]}")
    yield name
    started = time.monotonic()
    forced = node.delete_pods(name)
    took = time.monotonic() - started
    key = "pods deleted -> stopped and removed by the kubelet (slowest test)"
    FIGURES[key] = max(FIGURES.get(key, "0s"), f"{took:.2f}s", key=lambda v: float(v[:-1]))
    assert not forced, f"the kubelet did not remove {forced} in time"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, node: Node) -> Iterator[Registry]:
    """This module's own mirror (basic auth, the chart's mirror user), for its replicas."""
    registry = start_registry(
        tmp_path_factory.mktemp("node-mirror"), users=dict([MIRROR_USER]), access_log=True
    )
    node.add_registry(registry.host)
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def replicas(installed: Installed, tmp_path: Path) -> Iterator[Callable[[JSON, str], Webhook]]:
    """Start replicas of ``swapper serve``; every one still running is stopped afterwards."""
    started: list[Webhook] = []

    def start(config: JSON, name: str) -> Webhook:
        hook = start_swapper(installed, tmp_path / name, config, name=name)
        started.append(hook)
        return hook

    yield start
    for hook in started:
        if hook.process.poll() is None:
            stop(hook)


# -- helpers ----------------------------------------------------------------------------------


def new_image(registries: Registries, name: str) -> tuple[str, str, Image]:
    """A new image at the source (``public/node-<name>-<random>:1.0``) that prints its marker:
    its repository, the marker and the image."""
    marker = f"{name}-{uuid.uuid4().hex[:8]}"
    image = marker_image(marker)
    repo = f"public/node-{marker}"
    push_image(registries.source, repo, image, "1.0")
    return repo, marker, image


def config_for(installed: Installed, mirror: Registry, **extra: Any) -> JSON:
    """The chart's config with ``mirror`` as target; ``extra`` keys over it (``controller``
    merged into the chart's)."""
    chart = installed.config()
    target = copy.deepcopy(chart["target"])
    target["generic"]["registry"] = f"{mirror.host}/mirror"
    controller = {**chart.get("controller", {}), "leaseName": f"node-{uuid.uuid4().hex[:6]}"}
    controller.update(extra.pop("controller", {}))
    return {"target": target, "controller": controller, **extra}


def status_of(pod: JSON, container: str = "app") -> JSON:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status["name"] == container:
            return dict(status)
    return {}


def running(pod: JSON, container: str = "app") -> bool:
    return pod.get("status", {}).get("phase") == "Running" and "running" in status_of(
        pod, container
    ).get("state", {})


def waiting_reason(pod: JSON, container: str = "app") -> str:
    return str(status_of(pod, container).get("state", {}).get("waiting", {}).get("reason", ""))


def wait_pod(
    node: Node, namespace: str, name: str, what: str, check: Callable[[JSON], bool], timeout: float
) -> tuple[JSON, float]:
    """The pod once ``check(pod)`` holds, and the seconds it took; fails with the pod's status
    and the node's state otherwise."""
    started = time.monotonic()
    while True:
        pod = node.read_pod(namespace, name)
        if check(pod):
            return pod, time.monotonic() - started
        if dead := node.alive():
            pytest.fail(f"{what}: the node died: {dead}")
        if time.monotonic() - started > timeout:
            pytest.fail(
                f"{what}: not within {timeout:g}s; status:\n"
                + json.dumps(pod.get("status"), indent=1)
            )
        time.sleep(0.1)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout:g}s")
        time.sleep(0.1)
    return time.monotonic() - started


def events(cluster: Cluster, namespace: str, pod: str, reason: str = "") -> list[JSON]:
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    raw = core.list_namespaced_event(namespace, _preload_content=False)
    return [
        e
        for e in json.loads(raw.data)["items"]
        if e["involvedObject"].get("name") == pod and (not reason or e["reason"] == reason)
    ]


def wait_log(node: Node, pod: JSON, marker: str, container: str = "app") -> str:
    """The container's output, once it printed ``image=<marker>`` (or fail)."""
    wait_for(
        f"{container} prints image={marker}",
        lambda: f"image={marker}" in node.container_log(pod, container),
        timeout=10,
    )
    return node.container_log(pod, container)


def leading(hook: Webhook) -> bool:
    try:
        return metric(hook, "swapper_leader") == 1
    except Exception:  # not answering yet
        return False


def figure(key: str, value: str) -> None:
    FIGURES[key] = value
    print(f"{key}: {value}")


# -- the cases --------------------------------------------------------------------------------


def test_the_node_is_ready_and_registered_by_the_kubelet_of_the_api_servers_version(
    cluster: Cluster, node: Node
) -> None:
    from kubernetes import client

    stored = client.CoreV1Api(cluster.api_client()).read_node(node.name)
    assert stored.status.node_info.kubelet_version == cluster.binaries.kubernetes_version
    assert stored.status.node_info.container_runtime_version.startswith("containerd://1.6")
    assert node.ready()


def test_a_swapped_pod_runs_from_the_mirror_with_the_pull_secret_swapper_wrote(
    cluster: Cluster, node: Node, pulls: Registries, swapper: Webhook, namespace: str
) -> None:
    repo, marker, image = new_image(pulls, "a")
    mirrored = pulls.mirror_ref(repo)
    started = time.monotonic()
    created = create_pod(cluster, namespace, node.pod_spec("web", {"app": pulls.source_ref(repo)}))
    assert images(created) == {"app": mirrored}
    assert pull_secrets(created) == [PULL_SECRET]
    pod, _ = wait_pod(node, namespace, "web", "the pod runs", running, timeout=30)
    figure(
        "pod created -> Running from the mirror (image copied at admission)",
        f"{time.monotonic() - started:.2f}s",
    )
    assert f"image={marker}" in wait_log(node, pod, marker).splitlines()
    status = status_of(pod)
    # The kubelet ran what it pulled from the mirror: the reference and its digest.
    assert status["image"] == mirrored
    assert status["imageID"] == f"{mirrored.rsplit(':', 1)[0]}@{image.digest}"
    assert mirrored in node.images()
    assert pulls.source_ref(repo) not in node.images()


def test_the_same_pod_without_the_target_pull_secret_fails_to_pull_as_the_kubelet_reports(
    cluster: Cluster, node: Node, pulls: Registries, swapper: Webhook, namespace: str
) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    repo, _, _ = new_image(pulls, "b")
    # Admitted unbound (no scheduler: it waits), then its pull secret is removed, then it is
    # bound to the node as a scheduler would: the kubelet pulls with no credentials.
    spec = node.pod_spec("web", {"app": pulls.source_ref(repo)}, bound=False)
    created = create_pod(cluster, namespace, spec)
    assert images(created) == {"app": pulls.mirror_ref(repo)}
    assert pull_secrets(created) == [PULL_SECRET]
    core = client.CoreV1Api(cluster.api_client())
    core.delete_namespaced_secret(PULL_SECRET, namespace)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_secret(PULL_SECRET, namespace)
    assert gone.value.status == 404
    started = time.monotonic()
    node.bind(namespace, "web")
    pod, took = wait_pod(
        node, namespace, "web", "the pull fails", lambda p: waiting_reason(p) in STUCK, 30
    )
    figure("pod bound without its pull secret -> ErrImagePull", f"{took:.2f}s")
    message = status_of(pod)["state"]["waiting"].get("message", "")
    assert "401" in message or "unauthorized" in message.lower(), message
    failed = events(cluster, namespace, "web", "Failed")
    assert failed and all(e["source"].get("component") == "kubelet" for e in failed)
    pod, _ = wait_pod(
        node,
        namespace,
        "web",
        "the kubelet backs off",
        lambda p: waiting_reason(p) == "ImagePullBackOff",
        30,
    )
    assert pod["status"]["phase"] == "Pending"
    assert node.container_log(pod, "app") == ""
    assert pulls.mirror_ref(repo) not in node.images()
    figure(
        "pod bound without its pull secret -> ImagePullBackOff",
        f"{time.monotonic() - started:.2f}s",
    )


def test_an_image_not_mirrored_yet_runs_from_the_source_and_a_later_pod_from_the_mirror(
    cluster: Cluster,
    installed: Installed,
    node: Node,
    pulls: Registries,
    mirror: Registry,
    repoint: Callable[[str], None],
    replicas: Callable[[JSON, str], Webhook],
    namespace: str,
) -> None:
    config = config_for(
        installed,
        mirror,
        imageSwapPolicy="exists",
        imageCopyPolicy="delayed",
        controller={"enabled": False},
    )
    hook = replicas(config, "delayed")
    repoint(hook.url)
    repo, marker, image = new_image(pulls, "c")
    source = pulls.source_ref(repo)
    admitted = time.monotonic()
    first = create_pod(cluster, namespace, node.pod_spec("first", {"app": source}))
    assert images(first) == {"app": source}  # not in the mirror yet: left at the source
    pod, _ = wait_pod(node, namespace, "first", "the first pod runs", running, 30)
    assert f"image={marker}" in wait_log(node, pod, marker)
    assert status_of(pod)["imageID"] == f"{source.rsplit(':', 1)[0]}@{image.digest}"
    wait_for("the delayed copy lands", lambda: in_mirror(pulls, mirror, repo))
    figure(
        "delayed copy: first pod admitted -> image in the mirror (at most)",
        f"{time.monotonic() - admitted:.2f}s",
    )

    # The existence cache forgets the miss within its TTL: a dry-run create says when.
    mirrored = mirror_ref(pulls, mirror, repo)
    second_spec = node.pod_spec("second", {"app": source})
    wait_for(
        "admission swaps to the mirror",
        lambda: (
            images(create_pod(cluster, namespace, second_spec, dry_run="All")) == {"app": mirrored}
        ),
        timeout=15,
    )
    logged = len(mirror.logs())
    second = create_pod(cluster, namespace, second_spec)
    assert images(second) == {"app": mirrored}
    assert pull_secrets(second) == [PULL_SECRET]
    pod, _ = wait_pod(node, namespace, "second", "the second pod runs", running, 30)
    assert f"image={marker}" in wait_log(node, pod, marker)
    # The same image (one digest) under two names now: the container's status (image and
    # imageID) may name either, whichever containerd lists first, so where it came from is the
    # mirror's access log: containerd resolved the tag there, with the pull secret's credentials.
    assert images(pod) == {"app": mirrored}
    assert status_of(pod)["imageID"].endswith(f"@{image.digest}")
    assert {source, mirrored} <= node.images()
    path = mirrored.split("/", 1)[1].rsplit(":", 1)[0]
    resolved = rf'"(HEAD|GET) /v2/{re.escape(path)}/manifests/1.0 HTTP/1.1" 200 .*"containerd/'
    assert re.search(resolved, mirror.logs()[logged:]), mirror.logs()[logged:][-2000:]


def test_pods_running_on_the_node_before_swapper_started_have_their_images_backfilled(
    cluster: Cluster,
    installed: Installed,
    node: Node,
    pulls: Registries,
    mirror: Registry,
    repoint: Callable[[str], None],
    replicas: Callable[[JSON, str], Webhook],
    namespace: str,
) -> None:
    repoint(stopped_url())  # no swapper yet: failurePolicy Ignore lets the pods through
    made = [new_image(pulls, "d1"), new_image(pulls, "d2")]
    for index, (repo, _, _) in enumerate(made):
        spec = node.pod_spec(f"old{index}", {"app": pulls.source_ref(repo)})
        assert images(create_pod(cluster, namespace, spec)) == {"app": pulls.source_ref(repo)}
    for index, (_, marker, _) in enumerate(made):
        pod, _ = wait_pod(node, namespace, f"old{index}", "the pod runs", running, 30)
        assert f"image={marker}" in wait_log(node, pod, marker)
    assert not any(in_mirror(pulls, mirror, repo) for repo, _, _ in made)

    hook = replicas(config_for(installed, mirror, controller={"enabled": True}), "backfill")
    took = wait_for(
        "the backfill mirrors the running pods' images",
        lambda: all(in_mirror(pulls, mirror, repo) for repo, _, _ in made),
        timeout=60,
    )
    figure("backfill: swapper started -> running pods' images in the mirror", f"{took:.2f}s")
    assert metric(hook, "swapper_backfill_copies_total") >= len(made)
    # The backfill fills the mirror; the running pods are left as they are.
    for index, (repo, _, image) in enumerate(made):
        pod = node.read_pod(namespace, f"old{index}")
        assert running(pod) and status_of(pod)["restartCount"] == 0
        assert images(pod) == {"app": pulls.source_ref(repo)}
        path = f"mirror/{parse(pulls.source_ref(repo)).mirror_path()}"
        manifest = get_manifest(mirror, path, "1.0")
        assert manifest is not None and manifest[0] == image.data


def delete_manifest(registry: Registry, repo: str, digest: str) -> None:
    with registry.client() as client:
        response = client.delete(f"/v2/{repo}/manifests/{digest}")
        assert response.status_code == 202, response.text


def test_a_pod_stuck_on_an_image_the_mirror_lost_is_healed_and_runs_without_a_person(
    cluster: Cluster,
    installed: Installed,
    node: Node,
    pulls: Registries,
    mirror: Registry,
    repoint: Callable[[str], None],
    replicas: Callable[[JSON, str], Webhook],
    namespace: str,
) -> None:
    config = config_for(
        installed,
        mirror,
        imageSwapPolicy="exists",
        imageCopyPolicy="immediate",
        # The healer alone: the image monitor (controller.monitor) would find the loss first.
        controller={
            "enabled": True,
            "backfill": False,
            "monitor": {"enabled": False},
            "heal": {"cooldown": "1s"},
        },
    )
    hook = replicas(config, "heal")
    repoint(hook.url)
    wait_for("swapper leads", lambda: leading(hook))
    repo, marker, image = new_image(pulls, "e")
    mirrored = mirror_ref(pulls, mirror, repo)
    first = create_pod(cluster, namespace, node.pod_spec("first", {"app": pulls.source_ref(repo)}))
    assert images(first) == {"app": mirrored}
    wait_pod(node, namespace, "first", "the first pod runs", running, 30)

    # Behind swapper's back: the mirror loses the image (a lifecycle rule, a person), and a
    # node that never pulled it is asked to run it (here: the image forgotten by containerd).
    path = mirrored.split("/", 1)[1].rsplit(":", 1)[0]
    delete_manifest(mirror, path, image.digest)
    assert get_manifest(mirror, path, "1.0") is None
    node.remove_image(mirrored, f"{mirrored.rsplit(':', 1)[0]}@{image.digest}")
    assert mirrored not in node.images()

    timeline: list[tuple[str, float]] = []
    started = time.monotonic()
    second = create_pod(
        cluster, namespace, node.pod_spec("second", {"app": mirrored}, secrets=(PULL_SECRET,))
    )
    assert images(second) == {"app": mirrored}
    seen: set[str] = set()
    deadline = started + 90
    pod = second
    while not running(pod):
        assert time.monotonic() < deadline, json.dumps(pod.get("status"), indent=1)
        pod = node.read_pod(namespace, "second")
        reason = waiting_reason(pod)
        if reason in STUCK and reason not in seen:
            seen.add(reason)
            timeline.append((f"kubelet reports {reason}", time.monotonic() - started))
        if "event" not in seen and events(cluster, namespace, "second", "MirrorImageRestored"):
            seen.add("event")
            timeline.append(("Event MirrorImageRestored", time.monotonic() - started))
        time.sleep(0.1)
    timeline.append(("pod Running (the kubelet's retry pulled it)", time.monotonic() - started))
    if "event" not in seen:
        wait_for(
            "the Event",
            lambda: bool(events(cluster, namespace, "second", "MirrorImageRestored")),
            timeout=5,
        )
    text = "\n".join(f"{at:6.2f}s  {what}" for what, at in timeline)
    print(f"\nheal timeline (from the pod's creation):\n{text}")
    NOTES.mkdir(parents=True, exist_ok=True)
    version = cluster.binaries.kubernetes_version
    for name in ("node-timeline.txt", f"node-timeline-{version}.txt"):
        (NOTES / name).write_text(f"Kubernetes {version}, heal cooldown 1s\n{text}\n")
    figure("heal: pod created -> Running again", f"{timeline[-1][1]:.2f}s")
    assert "ErrImagePull" in seen  # the kubelet found the mirror without it
    [event] = events(cluster, namespace, "second", "MirrorImageRestored")
    assert event["type"] == "Normal" and mirrored in event["message"]
    assert event["involvedObject"]["kind"] == "Pod"
    assert in_mirror(pulls, mirror, repo)
    assert f"image={marker}" in wait_log(node, pod, marker)
    assert status_of(pod)["imageID"] == f"{mirrored.rsplit(':', 1)[0]}@{image.digest}"


def readonly(registry: Registry) -> Registry:
    """``registry`` restarted read-only (``storage.maintenance.readonly``: pulls are served,
    pushes refused), on the same port and storage."""
    import subprocess

    registry.stop()
    config_file = registry.workdir / "registry.yml"
    config = json.loads(config_file.read_text())
    config["storage"]["maintenance"]["readonly"] = {"enabled": True}
    config_file.write_text(json.dumps(config))
    with (registry.workdir / "registry.log").open("ab") as log:
        registry.process = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config_file)], stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(f"{registry.url}/v2/", timeout=1).status_code in (200, 401):
                return registry
        except httpx.TransportError:
            pass
        if registry.process.poll() is not None or time.monotonic() > deadline:
            registry.stop()
            raise RuntimeError(registry.logs())
        time.sleep(0.05)


@pytest.fixture
def readonly_mirror(tmp_path: Path, node: Node) -> Iterator[Registry]:
    """A mirror that refuses every push (basic auth, the chart's mirror user)."""
    registry = readonly(start_registry(tmp_path / "readonly", users=dict([MIRROR_USER])))
    node.add_registry(registry.host)
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def revert_rbac(installed: Installed) -> Iterator[None]:
    """The chart's ClusterRoles as ``helm upgrade --set config.controller.heal.revert=true``
    makes them (the controller may patch pods); as installed again afterwards (test_rbac.py
    checks that no role writes pods otherwise)."""
    from chart.rendering import render

    values = copy.deepcopy(installed.values)
    values["config"].setdefault("controller", {}).setdefault("heal", {})["revert"] = True
    upgraded = render(values).all("ClusterRole")
    assert any("patch" in rule["verbs"] for role in upgraded for rule in role["rules"])
    for role in upgraded:
        installed.kubectl("replace", "-f", "-", stdin=yaml.safe_dump(role))
    try:
        yield
    finally:
        for role in installed.rendered.all("ClusterRole"):
            installed.kubectl("replace", "-f", "-", stdin=yaml.safe_dump(role))


@pytest.mark.usefixtures("revert_rbac")
def test_a_pod_stuck_on_a_mirror_that_refuses_pushes_is_reverted_to_its_source(
    cluster: Cluster,
    installed: Installed,
    node: Node,
    pulls: Registries,
    readonly_mirror: Registry,
    repoint: Callable[[str], None],
    replicas: Callable[[JSON, str], Webhook],
    namespace: str,
) -> None:
    """The contract of ``controller.heal.revert`` (being built): admission records each
    swapped container's source in the annotation ``swapper.io/original-images``; a container
    stuck on a mirror image the mirror lacks and cannot take back is patched back to that
    source, with an ``ImageReverted`` Event, and the kubelet runs it from there."""
    config = config_for(
        installed,
        readonly_mirror,
        imageSwapPolicy="always",  # swapped though the mirror has not got it
        imageCopyPolicy="delayed",  # the copy is refused
        controller={
            "enabled": True,
            "backfill": False,
            "monitor": {"enabled": False},
            "heal": {"cooldown": "1s", "revert": True},
        },
    )
    hook = replicas(config, "revert")
    repoint(hook.url)
    wait_for("swapper leads", lambda: leading(hook))
    repo, marker, image = new_image(pulls, "f")
    source = pulls.source_ref(repo)
    mirrored = mirror_ref(pulls, readonly_mirror, repo)
    created = create_pod(cluster, namespace, node.pod_spec("web", {"app": source}))
    assert images(created) == {"app": mirrored}
    annotations = created["metadata"].get("annotations") or {}
    assert json.loads(annotations.get("swapper.io/original-images", "{}")) == {"app": source}

    started = time.monotonic()
    timeline: list[tuple[str, float]] = []
    seen: set[str] = set()
    pod = created
    while not running(pod):
        assert time.monotonic() - started < 90, json.dumps(pod.get("status"), indent=1)
        pod = node.read_pod(namespace, "web")
        reason = waiting_reason(pod)
        if reason in STUCK and reason not in seen:
            seen.add(reason)
            timeline.append((f"kubelet reports {reason}", time.monotonic() - started))
        if "event" not in seen and events(cluster, namespace, "web", "ImageReverted"):
            seen.add("event")
            timeline.append(("Event ImageReverted", time.monotonic() - started))
        time.sleep(0.1)
    timeline.append(("pod Running from the source", time.monotonic() - started))
    text = "\n".join(f"{at:6.2f}s  {what}" for what, at in timeline)
    print(f"\nrevert timeline (from the pod's creation):\n{text}")
    NOTES.mkdir(parents=True, exist_ok=True)
    version = cluster.binaries.kubernetes_version
    (NOTES / f"node-revert-timeline-{version}.txt").write_text(
        f"Kubernetes {version}, heal cooldown 1s, revert on, read-only mirror\n{text}\n"
    )
    figure("revert: pod created -> Running from its source", f"{timeline[-1][1]:.2f}s")
    assert seen & set(STUCK)
    assert images(pod) == {"app": source}
    assert status_of(pod)["imageID"] == f"{source.rsplit(':', 1)[0]}@{image.digest}"
    assert f"image={marker}" in wait_log(node, pod, marker)
    wait_for("the Event", lambda: bool(events(cluster, namespace, "web", "ImageReverted")), 5)
    [event] = events(cluster, namespace, "web", "ImageReverted")
    assert event["involvedObject"]["kind"] == "Pod"
    assert not in_mirror(pulls, readonly_mirror, repo)
