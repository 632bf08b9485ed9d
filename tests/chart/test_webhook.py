"""The MutatingWebhookConfiguration: defaults that make a cluster outage impossible."""

from __future__ import annotations

import pytest
from chart.rendering import VALUES_FILES, render


def expressions(selector: dict) -> list[dict]:
    return selector.get("matchExpressions") or []


def excluded_namespaces(webhook: dict) -> list[str]:
    found = [
        e
        for e in expressions(webhook["namespaceSelector"])
        if e["key"] == "kubernetes.io/metadata.name" and e["operator"] == "NotIn"
    ]
    assert len(found) == 1
    return found[0]["values"]


@pytest.mark.parametrize("name", VALUES_FILES)
def test_the_webhook_ignores_failures_so_a_down_swapper_never_blocks_pods(name: str) -> None:
    assert render(file=name).webhook["failurePolicy"] == "Ignore"


def test_the_webhook_promises_no_side_effects_on_dry_run_requests() -> None:
    assert render().webhook["sideEffects"] == "NoneOnDryRun"


def test_the_webhook_speaks_admission_review_v1_only() -> None:
    assert render().webhook["admissionReviewVersions"] == ["v1"]


def test_the_webhook_timeout_is_10_seconds_by_default() -> None:
    assert render().webhook["timeoutSeconds"] == 10


def test_the_webhook_timeout_comes_from_values() -> None:
    assert render({"webhook": {"timeoutSeconds": 15}}).webhook["timeoutSeconds"] == 15


def test_the_webhook_is_called_again_when_a_later_webhook_changes_the_pod() -> None:
    assert render().webhook["reinvocationPolicy"] == "IfNeeded"


@pytest.mark.parametrize("name", VALUES_FILES)
def test_the_release_namespace_is_never_sent_to_the_webhook(name: str) -> None:
    rendered = render(file=name, namespace="platform-mirror")
    assert "platform-mirror" in excluded_namespaces(rendered.webhook)


def test_the_release_namespace_stays_excluded_when_the_exclusion_list_is_emptied() -> None:
    webhook = render({"webhook": {"excludeNamespaces": []}}, namespace="ops").webhook
    assert excluded_namespaces(webhook) == ["ops"]


def test_kube_system_is_excluded_by_default() -> None:
    assert "kube-system" in excluded_namespaces(render().webhook)


def test_a_namespace_labelled_swapper_io_skip_is_not_sent() -> None:
    assert {"key": "swapper.io/skip", "operator": "NotIn", "values": ["true"]} in expressions(
        render().webhook["namespaceSelector"]
    )


def test_a_pod_labelled_swapper_io_skip_is_not_sent() -> None:
    assert expressions(render().webhook["objectSelector"]) == [
        {"key": "swapper.io/skip", "operator": "NotIn", "values": ["true"]}
    ]


def test_extra_selectors_are_added_to_the_exclusions_never_replace_them() -> None:
    webhook = render(file="everything").webhook
    assert webhook["namespaceSelector"]["matchLabels"] == {"mirror": "enabled"}
    assert "swapper-system" in excluded_namespaces(webhook)
    assert [e["key"] for e in expressions(webhook["objectSelector"])] == ["swapper.io/skip", "app"]


def test_the_webhook_sees_pod_creation_and_ephemeral_container_updates_only() -> None:
    rules = render().webhook["rules"]
    assert [(r["operations"], r["apiGroups"], r["apiVersions"], r["resources"]) for r in rules] == [
        (["CREATE"], [""], ["v1"], ["pods"]),
        (["UPDATE"], [""], ["v1"], ["pods/ephemeralcontainers"]),
    ]


def test_the_webhook_calls_the_charts_service_on_the_mutate_path() -> None:
    rendered = render()
    service = rendered.one("Service")
    client = rendered.webhook["clientConfig"]["service"]
    assert client == {
        "name": service["metadata"]["name"],
        "namespace": "swapper-system",
        "path": "/mutate",
        "port": service["spec"]["ports"][0]["port"],
    }


def test_the_chart_never_sets_a_ca_bundle_itself() -> None:
    for name in VALUES_FILES:
        assert "caBundle" not in render(file=name).webhook["clientConfig"]


def test_cert_manager_mode_injects_the_ca_of_the_serving_certificate() -> None:
    rendered = render(file="cert-manager")
    configuration = rendered.one("MutatingWebhookConfiguration")
    certificate = rendered.one("Certificate", "swapper")
    assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"swapper-system/{certificate['metadata']['name']}"
    )


def test_job_mode_asks_no_ca_injection_of_cert_manager() -> None:
    annotations = render().one("MutatingWebhookConfiguration")["metadata"].get("annotations") or {}
    assert "cert-manager.io/inject-ca-from" not in annotations
