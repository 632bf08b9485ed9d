"""Pods created through the real API server, admitted by the chart's webhook (swapper serve).

The API server calls swapper through the chart's MutatingWebhookConfiguration (registered by
URL, e2e/serving.py), applies its JSONPatch, and stores the pod: what these tests read back is
what a kubelet would be given.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import yaml
from e2e.cluster import Cluster
from e2e.install import Installed
from e2e.serving import (
    Webhook,
    hanging_server,
    sidecar_injector,
    start_swapper,
    stop,
    stopped_url,
)
from e2e.world import Registries, create_pod, images, metric, pod, pull_secrets
from registries import get_manifest

from swapper.images import parse

PULL_SECRET = "mirror-pull"


def _mirror_repo(reference: str) -> str:
    return f"mirror/{parse(reference).mirror_path()}"


def _resource_version(obj: dict) -> int:
    # etcd's revision at the write: ordered across objects of one etcd (opaque to clients in
    # general, but what this single-etcd control plane gives is the order of the writes).
    return int(obj["metadata"]["resourceVersion"])


def test_an_admitted_pod_is_swapped_to_the_mirror_and_given_the_target_pull_secret(
    cluster: Cluster, registries: Registries, swapper: Webhook
) -> None:
    namespace = cluster.namespace("e2e-swap")
    source = registries.source_ref("public/app")
    created = create_pod(cluster, namespace, pod("web", {"web": source}))
    assert images(created) == {"web": registries.mirror_ref("public/app")}
    assert pull_secrets(created) == [PULL_SECRET]
    copied = get_manifest(registries.target, _mirror_repo(source), "1.0")
    assert copied is not None
    assert copied[0] == get_manifest(registries.source, "public/app", "1.0")[0]  # type: ignore[index]


def test_the_target_pull_secret_exists_before_the_pod_that_names_it(
    cluster: Cluster, registries: Registries, installed: Installed, swapper: Webhook
) -> None:
    namespace = cluster.namespace("e2e-secret-first")
    created = create_pod(
        cluster, namespace, pod("web", {"web": registries.source_ref("public/app")})
    )
    secret = installed.read_secret(PULL_SECRET, namespace)
    assert secret is not None, "the pod names a pull secret that does not exist"
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert _resource_version(secret) < _resource_version(created)


def test_the_pods_own_pull_secrets_are_kept_beside_the_target_one(
    cluster: Cluster, registries: Registries, swapper: Webhook
) -> None:
    namespace = cluster.namespace("e2e-own-secrets")
    body = pod("web", {"web": registries.source_ref("public/app")}, secrets=("own",))
    created = create_pod(cluster, namespace, body)
    assert pull_secrets(created) == ["own", PULL_SECRET]


def test_dry_run_mode_creates_the_pod_unchanged_and_tells_the_user_and_the_audit_log(
    cluster: Cluster,
    registries: Registries,
    installed: Installed,
    repoint: Callable[[str], None],
    tmp_path_factory,
) -> None:
    auditing = start_swapper(
        installed, tmp_path_factory.mktemp("dry-run"), {"dryRun": True}, name="dry-run"
    )
    try:
        repoint(auditing.url)
        namespace = cluster.namespace("e2e-dry-run")
        source = registries.source_ref("public/other")
        manifest = yaml.safe_dump(pod("audited", {"app": source}))
        result = cluster.kubectl("create", "-n", namespace, "-f", "-", "-o", "json", stdin=manifest)
    finally:
        stop(auditing)
    created = json.loads(result.stdout)
    assert images(created) == {"app": source}
    assert "imagePullSecrets" not in created["spec"]
    assert f"Warning: containers[app]: would swap {source}" in result.stderr
    events = [
        e
        for e in cluster.audit_events()
        if e.get("verb") == "create"
        and (e.get("objectRef") or {}).get("name") == "audited"
        and (e.get("objectRef") or {}).get("namespace") == namespace
        and e.get("stage") == "ResponseComplete"
    ]
    assert events, "no audit event for the pod"
    webhook = installed.rendered.webhook["name"]
    annotations = events[-1]["annotations"]
    assert annotations[f"{webhook}/would-swap"].startswith("app=")


def test_a_server_side_dry_run_returns_the_mutated_pod_and_leaves_nothing_behind(
    cluster: Cluster, registries: Registries, installed: Installed, swapper: Webhook
) -> None:
    namespace = cluster.namespace("e2e-server-dry-run")
    mirrored = registries.source_ref("public/app")
    create_pod(cluster, cluster.namespace("e2e-warm"), pod("warm", {"warm": mirrored}))
    fresh = registries.source_ref("public/sidecar", "dry")
    manifest = yaml.safe_dump(pod("tried", {"app": mirrored, "new": fresh}))
    result = cluster.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", "-o", "json", stdin=manifest
    )
    answered = json.loads(result.stdout)
    assert images(answered)["app"] == registries.mirror_ref("public/app")
    assert pull_secrets(answered) == [PULL_SECRET]
    assert installed.read_secret(PULL_SECRET, namespace) is None  # no Secret written
    assert get_manifest(registries.target, _mirror_repo(fresh), "dry") is None  # no copy
    with registries.target.client() as client:
        tags = client.get(f"/v2/{_mirror_repo(fresh)}/tags/list")
    assert tags.status_code == 404  # no repository either
    from kubernetes import client as kube

    listed = kube.CoreV1Api(cluster.api_client()).list_namespaced_pod(namespace)
    assert listed.items == []


def test_an_ephemeral_container_added_by_kubectl_debug_is_swapped(
    cluster: Cluster, registries: Registries, swapper: Webhook
) -> None:
    from kubernetes import client

    namespace = cluster.namespace("e2e-debug")
    create_pod(cluster, namespace, pod("web", {"web": registries.source_ref("public/app")}))
    debug = registries.source_ref("public/debug")
    # kubectl debug patches the pods/ephemeralcontainers subresource (no -i: nothing attaches)
    cluster.kubectl("debug", "-n", namespace, "web", f"--image={debug}", "--container=debugger")
    core = client.CoreV1Api(cluster.api_client())
    stored = json.loads(core.read_namespaced_pod("web", namespace, _preload_content=False).data)
    assert images(stored, "ephemeralContainers") == {
        "debugger": registries.mirror_ref("public/debug")
    }


def test_an_ephemeral_container_is_left_alone_when_the_pod_lacks_the_target_pull_secret(
    cluster: Cluster, registries: Registries, swapper: Webhook, repoint: Callable[[str], None]
) -> None:
    from kubernetes import client

    namespace = cluster.namespace("e2e-debug-no-secret")
    repoint(stopped_url())  # admitted unchanged: the pod has no target pull secret
    created = create_pod(
        cluster, namespace, pod("web", {"web": registries.source_ref("public/app")})
    )
    assert pull_secrets(created) == []
    repoint(swapper.url)
    debug = registries.source_ref("public/debug")
    core = client.CoreV1Api(cluster.api_client())
    patch = {"spec": {"ephemeralContainers": [{"name": "debugger", "image": debug}]}}
    updated = core.patch_namespaced_pod_ephemeralcontainers(
        "web", namespace, patch, _preload_content=False
    )
    # imagePullSecrets cannot change on an update: a swapped image could not be pulled
    assert images(json.loads(updated.data), "ephemeralContainers") == {"debugger": debug}


def test_the_api_server_sends_nothing_from_excluded_namespaces_or_skip_labelled_pods(
    cluster: Cluster, registries: Registries, installed: Installed, swapper: Webhook
) -> None:
    before = metric(swapper, "swapper_admission_requests_total")
    source = registries.source_ref("public/app")
    skipped_namespace = cluster.namespace("e2e-opted-out", {"swapper.io/skip": "true"})
    labelled = cluster.namespace("e2e-label-opt-out")
    created = [
        create_pod(cluster, installed.namespace, pod("own", {"c": source})),
        create_pod(cluster, cluster.namespace("kube-system"), pod("system", {"c": source})),
        create_pod(cluster, skipped_namespace, pod("ns-skip", {"c": source})),
        create_pod(
            cluster, labelled, pod("pod-skip", {"c": source}, labels={"swapper.io/skip": "true"})
        ),
    ]
    assert [images(p)["c"] for p in created] == [source] * 4
    control = create_pod(cluster, labelled, pod("control", {"c": source}))
    assert images(control)["c"] == registries.mirror_ref("public/app")
    assert metric(swapper, "swapper_admission_requests_total") == before + 1  # the control only


def test_failure_policy_ignore_admits_pods_unchanged_when_swapper_is_down(
    cluster: Cluster, registries: Registries, repoint: Callable[[str], None]
) -> None:
    namespace = cluster.namespace("e2e-down")
    repoint(stopped_url())
    source = registries.source_ref("public/app")
    started = time.monotonic()
    created = create_pod(cluster, namespace, pod("web", {"web": source}))
    assert images(created) == {"web": source}
    assert time.monotonic() - started < 5


def test_failure_policy_ignore_admits_pods_unchanged_within_the_timeout_when_swapper_hangs(
    cluster: Cluster,
    registries: Registries,
    installed: Installed,
    repoint: Callable[[str], None],
) -> None:
    namespace = cluster.namespace("e2e-hang")
    timeout = int(installed.rendered.webhook["timeoutSeconds"])
    source = registries.source_ref("public/app")
    with hanging_server() as url:
        repoint(url)
        started = time.monotonic()
        created = create_pod(cluster, namespace, pod("web", {"web": source}))
        took = time.monotonic() - started
    assert images(created) == {"web": source}
    assert timeout - 1 < took < timeout + 5


def test_a_container_added_by_a_later_webhook_is_swapped_on_reinvocation(
    cluster: Cluster, registries: Registries, swapper: Webhook, tmp_path
) -> None:
    from kubernetes import client

    namespace = cluster.namespace("e2e-reinvocation", {"e2e-sidecar": "inject"})
    sidecar = {"name": "sidecar", "image": registries.source_ref("public/sidecar")}
    admission = client.AdmissionregistrationV1Api(cluster.api_client())
    name = "zz-sidecar-injector"  # called after the chart's webhook: configurations go by name
    with sidecar_injector(tmp_path / "injector", sidecar) as (url, ca):
        admission.create_mutating_webhook_configuration(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": name},
                "webhooks": [
                    {
                        "name": "sidecar.e2e.example.org",
                        "admissionReviewVersions": ["v1"],
                        "sideEffects": "None",
                        "failurePolicy": "Fail",
                        "reinvocationPolicy": "Never",
                        "timeoutSeconds": 5,
                        "clientConfig": {"url": url, "caBundle": base64.b64encode(ca).decode()},
                        "rules": [
                            {
                                "operations": ["CREATE"],
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "resources": ["pods"],
                            }
                        ],
                        "namespaceSelector": {"matchLabels": {"e2e-sidecar": "inject"}},
                    }
                ],
            }
        )
        try:
            created = create_pod(
                cluster, namespace, pod("web", {"web": registries.source_ref("public/app")})
            )
        finally:
            admission.delete_mutating_webhook_configuration(name)
    assert images(created) == {
        "web": registries.mirror_ref("public/app"),
        "sidecar": registries.mirror_ref("public/sidecar"),
    }
    events = [
        e
        for e in cluster.audit_events()
        if (e.get("objectRef") or {}).get("namespace") == namespace
        and e.get("verb") == "create"
        and e.get("stage") == "ResponseComplete"
    ]
    rounds = {k for k in events[-1]["annotations"] if k.startswith("mutation.webhook.admission")}
    assert any("round_1" in k for k in rounds), rounds  # swapper was called a second time


def test_a_pod_naming_a_missing_tag_does_not_stop_the_repositorys_other_tags_being_swapped(
    cluster: Cluster, registries: Registries, swapper: Webhook
) -> None:
    namespace = cluster.namespace("e2e-missing-tag")
    missing = registries.source_ref("public/tags", "no-such-tag")
    first = create_pod(cluster, namespace, pod("typo", {"c": missing}))
    assert images(first) == {"c": missing}  # nothing to mirror: left as it is
    second = create_pod(
        cluster, namespace, pod("right", {"c": registries.source_ref("public/tags")})
    )
    assert images(second) == {"c": registries.mirror_ref("public/tags")}
