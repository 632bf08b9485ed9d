"""The cluster half: its config, its identity in the pod, and its RBAC, each part switchable."""

from __future__ import annotations

from typing import Any

import pytest
from chart.rendering import VALUES_FILES, Obj, Rendered, render, render_error
from chart.test_rbac import grants

from swapper.config import load_config

OFF = {"config": {"controller": {"enabled": False}}}
NO_SHARED_COPIES = {"config": {"controller": {"shareCopies": False}}}
LEASES = "coordination.k8s.io"
POD_WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def controller_objects(rendered: Rendered) -> list[Obj]:
    kinds = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    return [
        o
        for kind in kinds
        for o in rendered.all(kind)
        if o["metadata"]["name"] == "swapper-controller"
    ]


def every_grant(rendered: Rendered) -> set[tuple[str, str, str, str, str]]:
    """(role kind, API group, resource, verb, name or '*') over every role of the render."""
    return {
        (role["kind"], *grant)
        for role in rendered.all("ClusterRole") + rendered.all("Role")
        for grant in grants(role["rules"])
    }


def lease_grants(rendered: Rendered) -> set[tuple[str, str, str, str]]:
    return grants(rendered.one("Role", "swapper-controller")["rules"])


def test_the_controller_may_only_list_and_watch_pods_cluster_wide() -> None:
    role = render().one("ClusterRole", "swapper-controller")
    assert grants(role["rules"]) == {("", "pods", "list", "*"), ("", "pods", "watch", "*")}


def test_heal_revert_adds_patch_on_pods_and_nothing_else() -> None:
    reverting = render({"config": {"controller": {"heal": {"revert": True}}}})
    role = reverting.one("ClusterRole", "swapper-controller")
    added = grants(role["rules"]) - grants(
        render().one("ClusterRole", "swapper-controller")["rules"]
    )
    assert added == {("", "pods", "patch", "*")}


def test_the_controller_may_create_leases_and_get_and_update_its_own_lease_by_name() -> None:
    assert lease_grants(render(NO_SHARED_COPIES)) == {
        (LEASES, "leases", "create", "*"),  # create cannot be limited to a name
        (LEASES, "leases", "get", "swapper-controller"),
        (LEASES, "leases", "update", "swapper-controller"),
    }


def test_shared_copies_add_get_update_and_delete_on_any_lease_of_the_release_namespace() -> None:
    added = lease_grants(render()) - lease_grants(render(NO_SHARED_COPIES))
    assert added == {
        (LEASES, "leases", "get", "*"),
        (LEASES, "leases", "update", "*"),
        (LEASES, "leases", "delete", "*"),
    }


def test_the_shared_copies_rule_disappears_when_shared_copies_are_off() -> None:
    granted = every_grant(render(NO_SHARED_COPIES))
    assert not {g for g in granted if g[2] == "leases" and g[3] == "delete"}
    assert {g for g in granted if g[2] == "leases" and g[4] == "*"} == {
        ("Role", LEASES, "leases", "create", "*")
    }


def test_leases_are_granted_in_the_release_namespace_only() -> None:
    rendered = render(namespace="mirror")
    role = rendered.one("Role", "swapper-controller")
    binding = rendered.one("RoleBinding", "swapper-controller")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "mirror"
    for cluster_role in rendered.all("ClusterRole"):
        assert "leases" not in {g[1] for g in grants(cluster_role["rules"])}


@pytest.mark.parametrize("kind", ["ClusterRoleBinding", "RoleBinding"])
def test_the_controller_roles_are_bound_to_the_webhooks_service_account(kind: str) -> None:
    rendered = render(namespace="mirror")
    binding = rendered.one(kind, "swapper-controller")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": kind.removesuffix("Binding"),
        "name": "swapper-controller",
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": rendered.pod["serviceAccountName"],
            "namespace": "mirror",
        }
    ]


def test_switching_the_controller_off_removes_its_roles_and_bindings() -> None:
    assert len(controller_objects(render())) == 4
    rendered = render(OFF)
    assert controller_objects(rendered) == []
    granted = every_grant(rendered)
    assert not {g for g in granted if g[2] in ("leases", "pods") and g[3] in ("watch", "create")}
    assert not {g for g in granted if g[1] == LEASES}


def test_switching_the_controller_off_also_removes_the_shared_copies_rule() -> None:
    rendered = render({"config": {"controller": {"enabled": False, "shareCopies": True}}})
    assert not {g for g in every_grant(rendered) if g[2] == "leases"}


def test_the_controller_rbac_is_left_to_the_cluster_admin_with_rbac_create_off() -> None:
    assert controller_objects(render({"rbac": {"create": False}})) == []


def test_removing_the_controller_block_keeps_swappers_defaults_and_their_permissions() -> None:
    rendered = render({"config": {"controller": None}})
    assert rendered.config["controller"] == {"leaseName": "swapper-controller"}
    assert len(controller_objects(rendered)) == 4
    assert (LEASES, "leases", "delete", "*") in lease_grants(rendered)


@pytest.mark.parametrize("name", VALUES_FILES)
def test_no_role_writes_pods_unless_revert_is_on(name: str) -> None:
    rendered = render(file=name)
    assert not {g for g in every_grant(rendered) if g[2] == "pods" and g[3] in POD_WRITES}
    assert not {g for g in every_grant(rendered) if g[2] == "pods" and g[3] == "get"}


@pytest.mark.parametrize("name", VALUES_FILES)
def test_no_role_lists_or_watches_leases(name: str) -> None:
    leases = {g for g in every_grant(render(file=name)) if g[2] == "leases"}
    assert not {g for g in leases if g[3] in ("list", "watch", "deletecollection")}


def test_the_pods_know_their_own_name_and_namespace_from_the_downward_api() -> None:
    env = {e["name"]: e for e in render().container["env"]}
    assert env["POD_NAME"] == {
        "name": "POD_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_the_lease_name_defaults_to_the_full_name_with_a_controller_suffix() -> None:
    rendered = render(release="mirror")
    assert rendered.config["controller"]["leaseName"] == "mirror-swapper-controller"
    assert ("coordination.k8s.io", "leases", "update", "mirror-swapper-controller") in grants(
        rendered.one("Role", "mirror-swapper-controller")["rules"]
    )


def test_a_lease_name_in_values_replaces_the_default_in_the_config_and_the_role() -> None:
    rendered = render({"config": {"controller": {"leaseName": "mirror-leader"}}})
    assert rendered.config["controller"]["leaseName"] == "mirror-leader"
    named = {g[3] for g in lease_grants(rendered) if g[3] != "*"}
    assert named == {"mirror-leader"}


def test_the_controller_settings_reach_swapper_as_given() -> None:
    config = load_config(render(file="everything").config, "everything.yaml")
    controller = config.controller
    assert controller.enabled and controller.share_copies
    assert controller.lease_name == "mirror-leader"
    assert (controller.lease_duration, controller.renew_deadline, controller.retry_period) == (
        30.0,
        20.0,
        4.0,
    )
    assert (controller.copy_lease_duration, controller.page_size, controller.max_images) == (
        60.0,
        200,
        200_000,
    )
    assert (config.supervisor.backoff_max, config.supervisor.shutdown_timeout) == (60.0, 15.0)


def test_the_chart_defaults_are_swappers_own_defaults_but_for_the_lease_name() -> None:
    chart = load_config(render().config, "defaults.yaml")
    own = load_config({"target": render().config["target"]}, "swapper")
    assert chart.controller.lease_name == "swapper-controller"
    assert chart.controller == own.controller.model_copy(
        update={"lease_name": "swapper-controller"}
    )
    assert chart.supervisor == own.supervisor


def test_the_dry_run_values_file_prefills_the_mirror_without_enforcing() -> None:
    config = render(file="dry-run").config
    assert config["dryRun"] is True
    assert config["controller"]["prefill"] is True
    assert render().config["controller"]["prefill"] is False


def test_a_config_change_of_the_controller_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        metadata = render(values).deployment["spec"]["template"]["metadata"]
        return str(metadata["annotations"]["checksum/config"])

    assert checksum({"config": {"controller": {"pageSize": 100}}}) != checksum({})


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"config": {"controller": {"enabled": "yes"}}}, "/config/controller/enabled"),
        (
            {"config": {"controller": {"leaseName": "Mirror_Leader"}}},
            "/config/controller/leaseName",
        ),
        ({"config": {"controller": {"pageSize": 5}}}, "/config/controller/pageSize"),
        ({"config": {"controller": {"maxImages": 10}}}, "/config/controller/maxImages"),
        ({"config": {"controller": {"leaseDuration": "soon"}}}, "/config/controller/leaseDuration"),
        ({"config": {"controller": {"sharedCopies": True}}}, "/config/controller"),
        ({"config": {"supervisor": {"shutdownTimeout": 0}}}, "/config/supervisor/shutdownTimeout"),
        ({"config": {"supervisor": {"backoff": "1s"}}}, "/config/supervisor"),
    ],
)
def test_a_mistyped_controller_or_supervisor_value_is_refused(
    values: dict[str, Any], where: str
) -> None:
    assert f"at '{where}'" in render_error(values)


def test_a_shutdown_timeout_not_below_the_grace_period_fails_the_render() -> None:
    message = render_error({"config": {"supervisor": {"shutdownTimeout": "30s"}}})
    assert (
        "config.supervisor.shutdownTimeout (30s) must be below terminationGracePeriodSeconds"
        in (message)
    )


def test_the_shutdown_timeout_must_leave_room_for_the_pre_stop_sleep() -> None:
    # 20s + 5s of preStop sleep does not fit in 25s; without the sleep it does.
    message = render_error({"terminationGracePeriodSeconds": 25})
    assert "less preStopSleepSeconds (5s)" in message
    assert render({"terminationGracePeriodSeconds": 25, "preStopSleepSeconds": 0}).objects


def test_lowering_the_grace_period_without_lowering_the_shutdown_timeout_fails_the_render() -> None:
    assert "shutdownTimeout" in render_error({"terminationGracePeriodSeconds": 20})
    lowered = {
        "terminationGracePeriodSeconds": 20,
        "config": {"supervisor": {"shutdownTimeout": "14.5s"}},
    }
    assert render(lowered).deployment["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ] == (20)


@pytest.mark.parametrize(
    ("controller", "message"),
    [
        (
            {"leaseDuration": "10s"},
            "config.controller.leaseDuration (10s) must be greater than "
            "config.controller.renewDeadline (10s)",
        ),
        (
            {"retryPeriod": "9s"},
            "config.controller.renewDeadline (10s) must be greater than 1.2 x "
            "config.controller.retryPeriod (9s)",
        ),
    ],
)
def test_lease_timings_swapper_would_refuse_fail_the_render(
    controller: dict[str, Any], message: str
) -> None:
    assert message in render_error({"config": {"controller": controller}})
    with pytest.raises(Exception, match="must be greater than"):
        load_config(
            {**render().config, "controller": {**render().config["controller"], **controller}},
            "x",
        )


def test_cleanup_needs_no_rbac_of_its_own() -> None:
    values = {"config": {"clusterName": "prod-eu", "cleanup": {"enabled": True, "dryRun": False}}}
    cleaning = render(values)
    assert [o["rules"] for o in cleaning.all("ClusterRole") + cleaning.all("Role")] == [
        o["rules"] for o in render().all("ClusterRole") + render().all("Role")
    ]
