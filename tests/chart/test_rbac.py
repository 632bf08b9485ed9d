"""RBAC: least privilege, each permission only with the feature that needs it."""

from __future__ import annotations

import pytest
from chart.rendering import VALUES_FILES, Obj, Rendered, render

READ_ALL = {"list", "watch"}
ESCALATING = {"*", "escalate", "bind", "impersonate"}


def webhook_rules(rendered: Rendered) -> list[Obj]:
    return rendered.one("ClusterRole", "swapper")["rules"]  # type: ignore[no-any-return]


def grants(rules: list[Obj]) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, verb, resourceName or '*') for every rule."""
    out = set()
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames") or ["*"]:
                        out.add((group, resource, verb, name))
    return out


def test_by_default_the_webhook_may_only_create_and_patch_events() -> None:
    assert grants(webhook_rules(render())) == {
        ("", "events", "create", "*"),
        ("", "events", "patch", "*"),
        ("events.k8s.io", "events", "create", "*"),
        ("events.k8s.io", "events", "patch", "*"),
    }


def test_the_webhook_role_is_bound_to_the_webhooks_service_account() -> None:
    rendered = render()
    binding = rendered.one("ClusterRoleBinding", "swapper")
    assert binding["roleRef"]["name"] == "swapper"
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": rendered.pod["serviceAccountName"],
            "namespace": "swapper-system",
        }
    ]


def test_secrets_and_service_accounts_are_only_listed_and_watched_with_pod_pull_secrets() -> None:
    without = grants(webhook_rules(render()))
    assert not {g for g in without if g[1] in ("secrets", "serviceaccounts")}
    with_it = grants(webhook_rules(render({"config": {"source": {"podPullSecrets": True}}})))
    assert {g for g in with_it if g[1] in ("secrets", "serviceaccounts")} == {
        ("", "secrets", "list", "*"),
        ("", "secrets", "watch", "*"),
        ("", "serviceaccounts", "list", "*"),
        ("", "serviceaccounts", "watch", "*"),
    }


def test_pod_pull_secrets_are_off_by_default_in_the_chart() -> None:
    assert render().config["source"]["podPullSecrets"] is False


def test_removing_the_pod_pull_secrets_key_grants_what_swappers_own_default_needs() -> None:
    rendered = render({"config": {"source": {"podPullSecrets": None}}})
    assert "podPullSecrets" not in rendered.config["source"]
    assert ("", "secrets", "watch", "*") in grants(webhook_rules(rendered))


def test_the_target_pull_secret_is_writable_only_by_its_name() -> None:
    rendered = render(
        {"config": {"target": {"pullSecret": {"enabled": True, "name": "mirror-pull"}}}}
    )
    secrets = {g for g in grants(webhook_rules(rendered)) if g[1] == "secrets"}
    assert secrets == {
        ("", "secrets", "create", "*"),  # create cannot be limited to a name
        ("", "secrets", "get", "mirror-pull"),
        ("", "secrets", "update", "mirror-pull"),
        ("", "secrets", "patch", "mirror-pull"),
    }


def test_the_target_pull_secret_may_find_its_namespaces_without_listing_secrets() -> None:
    rendered = render({"config": {"target": {"pullSecret": {"enabled": True}}}})
    granted = grants(webhook_rules(rendered))
    assert ("", "namespaces", "list", "*") in granted
    assert not {g for g in granted if g[1] == "secrets" and g[2] in READ_ALL}
    assert not {g for g in granted if g[1] == "pods" or g[2] == "delete"}


def test_pull_secret_cleanup_may_list_pods_and_delete_only_that_secret() -> None:
    rendered = render(
        {"config": {"target": {"pullSecret": {"enabled": True, "name": "mp", "cleanup": True}}}}
    )
    granted = grants(webhook_rules(rendered))
    assert ("", "pods", "list", "*") in granted
    assert {g for g in granted if g[2] == "delete"} == {("", "secrets", "delete", "mp")}


def test_no_cluster_role_is_rendered_when_no_permission_is_needed() -> None:
    rendered = render({"rbac": {"events": False}, "config": {"controller": {"enabled": False}}})
    assert [r["metadata"]["name"] for r in rendered.all("ClusterRole")] == [
        "swapper-certificates",
        "swapper-cert-renewal",
    ]
    assert not [b for b in rendered.all("ClusterRoleBinding") if b["metadata"]["name"] == "swapper"]


@pytest.mark.parametrize("name", VALUES_FILES)
def test_no_role_grants_wildcards_or_escalation(name: str) -> None:
    rendered = render(file=name)
    for role in rendered.all("ClusterRole") + rendered.all("Role"):
        for group, resource, verb, _ in grants(role["rules"]):
            assert verb not in ESCALATING, role["metadata"]["name"]
            assert resource != "*" and group != "*", role["metadata"]["name"]


@pytest.mark.parametrize("name", VALUES_FILES)
def test_only_the_pod_pull_secrets_feature_lists_secrets(name: str) -> None:
    rendered = render(file=name)
    listing = [
        role["metadata"]["name"]
        for role in rendered.all("ClusterRole") + rendered.all("Role")
        for _, resource, verb, _ in grants(role["rules"])
        if resource == "secrets" and verb in READ_ALL
    ]
    expected = ["swapper", "swapper"] if rendered.config["source"]["podPullSecrets"] else []
    assert listing == expected


def test_the_certificate_job_may_only_touch_its_secret_and_its_webhook_configuration() -> None:
    rendered = render()
    for name in ("swapper-certificates", "swapper-cert-renewal"):
        assert grants(rendered.one("Role", name)["rules"]) == {
            ("", "secrets", "create", "*"),
            ("", "secrets", "get", "swapper-tls"),
            ("", "secrets", "patch", "swapper-tls"),
        }
        assert grants(rendered.one("ClusterRole", name)["rules"]) == {
            ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "get", "swapper"),
            ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch", "swapper"),
        }


def test_the_certificate_identities_are_bound_to_their_own_service_accounts() -> None:
    rendered = render()
    for name in ("swapper-certificates", "swapper-cert-renewal"):
        for kind in ("RoleBinding", "ClusterRoleBinding"):
            binding = rendered.one(kind, name)
            assert binding["roleRef"]["name"] == name
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": name, "namespace": "swapper-system"}
            ]


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    rendered = render({"rbac": {"create": False}})
    webhook_names = {"swapper", "swapper-controller"}
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        assert not [o for o in rendered.all(kind) if o["metadata"]["name"] in webhook_names], kind


def test_the_webhook_may_read_and_update_only_its_source_access_config_map() -> None:
    rendered = render()
    assert grants(rendered.one("Role", "swapper")["rules"]) == {
        ("", "configmaps", verb, "swapper-source-access")
        for verb in ("get", "list", "watch", "update")
    }


def test_the_source_access_role_is_bound_to_the_webhooks_service_account() -> None:
    rendered = render(namespace="mirror")
    role = rendered.one("Role", "swapper")
    binding = rendered.one("RoleBinding", "swapper")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "mirror"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "swapper",
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": rendered.pod["serviceAccountName"],
            "namespace": "mirror",
        }
    ]


def test_the_source_access_role_names_the_config_map_the_config_names() -> None:
    rendered = render(release="mirror")
    (rule,) = rendered.one("Role", "mirror-swapper")["rules"]
    assert rule["resourceNames"] == [rendered.config["source"]["access"]["configMap"]]


def test_without_the_access_check_the_webhook_may_touch_no_config_map() -> None:
    rendered = render({"config": {"source": {"checkAccess": False}}})
    assert not [r for r in rendered.all("Role") if r["metadata"]["name"] == "swapper"]
    assert not [b for b in rendered.all("RoleBinding") if b["metadata"]["name"] == "swapper"]


@pytest.mark.parametrize("name", VALUES_FILES)
def test_no_role_touches_a_config_map_it_does_not_name(name: str) -> None:
    rendered = render(file=name)
    for role in rendered.all("ClusterRole") + rendered.all("Role"):
        for _, resource, verb, target in grants(role["rules"]):
            if resource == "configmaps":
                assert target != "*", (role["metadata"]["name"], verb)
                assert verb not in ("create", "delete", "deletecollection")
