"""Recommended labels everywhere, stable selectors, one template per kind."""

from __future__ import annotations

import pytest
from chart.rendering import VALUES_FILES, render

RECOMMENDED = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
}


@pytest.mark.parametrize("name", VALUES_FILES)
def test_every_object_carries_the_recommended_labels(name: str) -> None:
    for obj in render(file=name):
        missing = RECOMMENDED - set(obj["metadata"].get("labels") or {})
        assert not missing, f"{obj['kind']} {obj['metadata']['name']} lacks {missing}"


def test_selectors_use_only_labels_that_never_change_between_releases() -> None:
    selector = render().deployment["spec"]["selector"]["matchLabels"]
    assert set(selector) == {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    }


def test_common_labels_reach_every_object() -> None:
    for obj in render({"commonLabels": {"team": "platform"}}):
        assert obj["metadata"]["labels"]["team"] == "platform", obj["kind"]


@pytest.mark.parametrize("name", VALUES_FILES)
def test_each_template_file_holds_a_single_kind(name: str) -> None:
    kinds_by_template: dict[str, set[str]] = {}
    for template, kind in render(file=name).templates:
        kinds_by_template.setdefault(template, set()).add(kind)
    assert {t: k for t, k in kinds_by_template.items() if len(k) > 1} == {}


def test_namespaced_objects_are_in_the_release_namespace() -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}
    for obj in render(file="everything", namespace="mirror"):
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == "mirror", obj["kind"]


def test_names_follow_the_release_name() -> None:
    rendered = render(release="mirror")
    assert rendered.deployment["metadata"]["name"] == "mirror-swapper"
    assert rendered.one("MutatingWebhookConfiguration")["metadata"]["name"] == "mirror-swapper"
