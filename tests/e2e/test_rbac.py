"""What the chart's ServiceAccounts may do, asked of the real API server, equals the chart README.

The API server answers a SelfSubjectRulesReview made with each account's own TokenRequest token;
what every authenticated user may do (asked the same way for an account with no binding) is
taken away, and the rest must be exactly the rows of the README's permissions table that apply
to the values installed.

A rules review covers one namespace; what the cluster half may do across namespaces (pods in
any namespace, Leases only in the release namespace) is asked with SelfSubjectAccessReviews,
and the Lease rules are also proven with real calls as the chart's ServiceAccount.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart.rendering import CHART, Rendered, merged, render
from e2e.cluster import Cluster
from e2e.install import Installed, install_order
from e2e.world import Registries, e2e_values

Rule = tuple[str, str, str, str]  # API group, resource, name ("" for any), verb

README = CHART / "README.md"
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))


def documented_rows() -> list[dict[str, str]]:
    text = README.read_text(encoding="utf-8")
    table = text.split("<!-- permissions-table")[1].split("<!-- end of permissions-table")[0]
    lines = [line for line in table.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def _lookup(values: dict[str, Any], dotted: str) -> Any:
    value: Any = values
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def applies(when: str, values: dict[str, Any]) -> bool:
    """Whether every condition of a ``when`` cell holds: `key` (true) or `key: value`, several
    joined by ", with"."""
    conditions = re.findall(r"`([\w.]+)(?:: (\w+))?`", when)
    assert conditions and when.startswith("`"), f"cannot read the condition {when!r}"
    every = merged(DEFAULTS, values)
    return all(
        _lookup(every, key) == wanted if wanted else bool(_lookup(every, key))
        for key, wanted in conditions
    )


def expected_rules(account: str, values: dict[str, Any], names: dict[str, str]) -> set[Rule]:
    rules: set[Rule] = set()
    for row in documented_rows():
        if account not in [a.strip() for a in row["ServiceAccount"].split(",")]:
            continue
        if not applies(row["when"], values):
            continue
        groups = ["" if g.strip() == "core" else g.strip() for g in row["API group"].split(",")]
        resources = [re.sub(r"\s*\(.*\)", "", r).strip() for r in row["resource"].split(",")]
        name = "" if row["names"] == "any" else names[row["names"]]
        for group in groups:
            for resource in resources:
                for verb in row["verbs"].split(","):
                    rules.add((group, resource, name, verb.strip()))
    return rules


def granted(cluster: Cluster, namespace: str, account: str, folder: Path) -> set[Rule]:
    """What ``account`` may do in ``namespace``, as the API server tells the account itself."""
    from kubernetes import client

    kubeconfig = cluster.service_account_kubeconfig(
        namespace, account, folder / f"{namespace}-{account}.kubeconfig"
    )
    api = client.AuthorizationV1Api(cluster.api_client(kubeconfig))
    review = api.create_self_subject_rules_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": namespace},
        }
    )
    assert not review.status.incomplete
    rules: set[Rule] = set()
    for rule in review.status.resource_rules:
        for group in rule.api_groups or [""]:
            for resource in rule.resources or []:
                for name in rule.resource_names or [""]:
                    for verb in rule.verbs:
                        rules.add((group, resource, name, verb))
    return rules


@pytest.fixture(scope="module")
def baseline(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> set[Rule]:
    """What any authenticated account may do (an account with no binding at all)."""
    namespace = cluster.namespace("rbac-baseline")
    cluster.service_account(namespace, "nobody")
    return granted(cluster, namespace, "nobody", tmp_path_factory.mktemp("baseline"))


def _names(values: dict[str, Any], rendered: Rendered) -> dict[str, str]:
    """The object names the table's ``names`` column stands for, in this render."""
    tls = next(v for v in rendered.pod["volumes"] if v["name"] == "tls")
    access = rendered.config["source"].get("access", {})
    return {
        "the pull secret": merged(DEFAULTS, values)["config"]["target"]["pullSecret"]["name"],
        "the TLS Secret": tls["secret"]["secretName"],
        "the chart's": rendered.one("MutatingWebhookConfiguration")["metadata"]["name"],
        "the source-access ConfigMap": access.get("configMap", ""),
        "the controller Lease": rendered.config["controller"]["leaseName"],
    }


def test_the_webhook_account_may_do_exactly_what_the_readme_documents(
    installed: Installed, baseline: set[Rule], tmp_path: Path
) -> None:
    names = _names(installed.values, installed.rendered)
    wanted = expected_rules("webhook", installed.values, names)
    got = granted(installed.cluster, installed.namespace, installed.service_account, tmp_path)
    assert got - baseline == wanted


@pytest.mark.parametrize("account", ["certificates", "cert-renewal"])
def test_the_certificate_accounts_may_do_exactly_what_the_readme_documents(
    installed: Installed, baseline: set[Rule], tmp_path: Path, account: str
) -> None:
    fullname = installed.service_account
    names = _names(installed.values, installed.rendered)
    wanted = expected_rules(account, installed.values, names)
    got = granted(installed.cluster, installed.namespace, f"{fullname}-{account}", tmp_path)
    assert got - baseline == wanted


FEATURES_OFF = {
    "events-only": {
        "config": {
            "source": {"podPullSecrets": False, "checkAccess": False},
            "target": {"pullSecret": {"enabled": False}},
            "controller": {"enabled": False},
        }
    },
    "access-check-only": {
        "rbac": {"events": False},
        "config": {
            "source": {"podPullSecrets": False},
            "target": {"pullSecret": {"enabled": False}},
            "controller": {"enabled": False},
        },
    },
    "controller-only": {
        "rbac": {"events": False},
        "config": {
            "source": {"podPullSecrets": False, "checkAccess": False},
            "target": {"pullSecret": {"enabled": False}},
        },
    },
    "controller-without-shared-copies": {
        "config": {"controller": {"shareCopies": False}},
    },
    "controller-off-with-shared-copies": {
        "config": {"controller": {"enabled": False, "shareCopies": True}},
    },
    "nothing": {
        "rbac": {"events": False},
        "config": {
            "source": {"podPullSecrets": False, "checkAccess": False},
            "target": {"pullSecret": {"enabled": False}},
            "controller": {"enabled": False},
        },
    },
    "pull-secret-without-cleanup": {
        "config": {
            "source": {"podPullSecrets": False},
            "target": {"pullSecret": {"cleanup": False}},
        }
    },
    "pull-secret-with-cleanup": {"config": {"target": {"pullSecret": {"cleanup": True}}}},
}


@pytest.mark.parametrize("case", sorted(FEATURES_OFF))
def test_switching_a_feature_off_in_values_removes_its_permissions(
    cluster: Cluster,
    registries: Registries,
    baseline: set[Rule],
    tmp_path: Path,
    case: str,
) -> None:
    values = merged(e2e_values(registries), FEATURES_OFF[case])
    namespace, rendered = install_identity(cluster, values, f"rbac-{case}")
    account = rendered.pod["serviceAccountName"]
    wanted = expected_rules("webhook", values, _names(values, rendered))
    assert granted(cluster, namespace, account, tmp_path) - baseline == wanted
    leases = {rule for rule in wanted if rule[1] == "leases"}
    if case == "nothing" or case.startswith("controller-off"):
        assert not leases and ("", "pods", "", "watch") not in wanted
    if case == "nothing":
        assert wanted == set()
    if case == "controller-without-shared-copies":
        assert {rule for rule in leases if rule[2] == ""} == {(LEASES, "leases", "", "create")}


def install_identity(
    cluster: Cluster, values: dict[str, Any], release: str
) -> tuple[str, Rendered]:
    """Create the chart's ServiceAccount and RBAC objects only, for ``release`` in a namespace
    of the same name; returns the namespace and the render."""
    namespace = cluster.namespace(release)
    rendered = render(values, namespace=namespace, release=release)
    identity = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    objects = [o for o in rendered.objects if o["kind"] in identity]
    for obj in install_order(objects):
        cluster.kubectl("create", "--validate=strict", "-f", "-", stdin=yaml.safe_dump(obj))
    return namespace, rendered


LEASES = "coordination.k8s.io"


# -- the cluster half across namespaces ---------------------------------------------------------


def allowed(
    cluster: Cluster,
    kubeconfig: Path,
    verb: str,
    resource: str,
    namespace: str,
    name: str = "",
    group: str = "",
) -> bool:
    """The API server's answer to the account of ``kubeconfig``: may it do this?"""
    from kubernetes import client

    api = client.AuthorizationV1Api(cluster.api_client(kubeconfig))
    attributes = {"verb": verb, "group": group, "resource": resource, "namespace": namespace}
    if name:
        attributes["name"] = name
    review = api.create_self_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
    )
    return bool(review.status.allowed)


@pytest.fixture(scope="module")
def elsewhere(cluster: Cluster) -> str:
    """A namespace that is not the release's."""
    return cluster.namespace("rbac-elsewhere")


def webhook_kubeconfig(installed: Installed, folder: Path) -> Path:
    return installed.swapper_kubeconfig(folder / "webhook.kubeconfig")


def test_the_webhook_account_may_list_and_watch_pods_in_every_namespace_but_never_write_one(
    installed: Installed, elsewhere: str, tmp_path: Path
) -> None:
    kubeconfig = webhook_kubeconfig(installed, tmp_path)
    cluster = installed.cluster
    for namespace in ("", "default", elsewhere, installed.namespace):  # "": all namespaces
        for verb in ("list", "watch"):
            assert allowed(cluster, kubeconfig, verb, "pods", namespace), (verb, namespace)
    for namespace in ("default", elsewhere, installed.namespace):
        for verb in ("create", "delete", "patch", "update", "deletecollection"):
            assert not allowed(cluster, kubeconfig, verb, "pods", namespace), (verb, namespace)
        assert not allowed(cluster, kubeconfig, "get", "pods", namespace, "some-pod")


def test_the_webhook_account_may_create_leases_only_in_the_release_namespace(
    installed: Installed, elsewhere: str, tmp_path: Path
) -> None:
    kubeconfig = webhook_kubeconfig(installed, tmp_path)
    cluster = installed.cluster
    assert allowed(cluster, kubeconfig, "create", "leases", installed.namespace, group=LEASES)
    for namespace in (elsewhere, "default", "kube-system", ""):
        assert not allowed(cluster, kubeconfig, "create", "leases", namespace, group=LEASES)


def test_the_webhook_account_may_get_and_update_the_controller_lease(
    installed: Installed, elsewhere: str, tmp_path: Path
) -> None:
    kubeconfig = webhook_kubeconfig(installed, tmp_path)
    cluster = installed.cluster
    lease = installed.rendered.config["controller"]["leaseName"]
    assert lease == f"{installed.service_account}-controller"
    for verb in ("get", "update"):
        assert allowed(cluster, kubeconfig, verb, "leases", installed.namespace, lease, LEASES)
        assert not allowed(cluster, kubeconfig, verb, "leases", elsewhere, lease, LEASES)


def test_with_shared_copies_any_lease_of_the_release_namespace_may_be_renewed_and_deleted(
    installed: Installed, elsewhere: str, tmp_path: Path
) -> None:
    kubeconfig = webhook_kubeconfig(installed, tmp_path)
    cluster = installed.cluster
    copy = "swapper-copy-0123456789abcdef"
    for verb in ("get", "update", "delete"):
        assert allowed(cluster, kubeconfig, verb, "leases", installed.namespace, copy, LEASES)
        assert not allowed(cluster, kubeconfig, verb, "leases", elsewhere, copy, LEASES)
    for verb in ("list", "watch", "deletecollection", "patch"):
        assert not allowed(cluster, kubeconfig, verb, "leases", installed.namespace, "", LEASES)


def test_without_shared_copies_only_the_controller_lease_may_be_renewed(
    cluster: Cluster, registries: Registries, tmp_path: Path
) -> None:
    values = merged(e2e_values(registries), {"config": {"controller": {"shareCopies": False}}})
    namespace, rendered = install_identity(cluster, values, "rbac-own-lease-only")
    kubeconfig = cluster.service_account_kubeconfig(
        namespace, rendered.pod["serviceAccountName"], tmp_path / "account.kubeconfig"
    )
    lease = rendered.config["controller"]["leaseName"]
    assert allowed(cluster, kubeconfig, "create", "leases", namespace, group=LEASES)
    for verb in ("get", "update"):
        assert allowed(cluster, kubeconfig, verb, "leases", namespace, lease, LEASES)
    for verb in ("get", "update", "delete"):
        assert not allowed(cluster, kubeconfig, verb, "leases", namespace, "swapper-copy-1", LEASES)
    assert not allowed(cluster, kubeconfig, "delete", "leases", namespace, lease, LEASES)


def test_with_heal_revert_the_account_may_patch_pods_and_still_not_create_or_delete_them(
    cluster: Cluster, registries: Registries, elsewhere: str, tmp_path: Path
) -> None:
    values = merged(e2e_values(registries), {"config": {"controller": {"heal": {"revert": True}}}})
    namespace, rendered = install_identity(cluster, values, "rbac-heal-revert")
    kubeconfig = cluster.service_account_kubeconfig(
        namespace, rendered.pod["serviceAccountName"], tmp_path / "account.kubeconfig"
    )
    for where in ("default", elsewhere, namespace):
        assert allowed(cluster, kubeconfig, "patch", "pods", where, "some-pod")
        for verb in ("create", "delete", "update", "deletecollection"):
            assert not allowed(cluster, kubeconfig, verb, "pods", where), (verb, where)
        assert not allowed(cluster, kubeconfig, "get", "pods", where, "some-pod")


def lease_body(name: str, holder: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15},
    }


def test_the_lease_rules_hold_for_real_calls_as_the_charts_account(
    cluster: Cluster, registries: Registries, elsewhere: str, tmp_path: Path
) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    # A release of its own, so no running swapper's election is touched.
    namespace, rendered = install_identity(cluster, e2e_values(registries), "rbac-real-leases")
    kubeconfig = cluster.service_account_kubeconfig(
        namespace, rendered.pod["serviceAccountName"], tmp_path / "account.kubeconfig"
    )
    leases = client.CoordinationV1Api(cluster.api_client(kubeconfig))
    leader = rendered.config["controller"]["leaseName"]
    copy = "swapper-copy-fedcba9876543210"

    for name in (leader, copy):
        leases.create_namespaced_lease(namespace, lease_body(name, "pod-a"))
        stored = leases.read_namespaced_lease(name, namespace)
        stored.spec.holder_identity = "pod-b"
        assert leases.replace_namespaced_lease(name, namespace, stored).spec.holder_identity == (
            "pod-b"
        )
    leases.delete_namespaced_lease(copy, namespace)

    def forbidden(call: Any, *args: Any) -> bool:
        try:
            call(*args)
        except ApiException as exc:
            return exc.status == 403
        return False

    assert forbidden(leases.create_namespaced_lease, elsewhere, lease_body(copy, "pod-a"))
    assert forbidden(leases.list_namespaced_lease, namespace)
    pods = client.CoreV1Api(cluster.api_client(kubeconfig))
    assert pods.list_pod_for_all_namespaces(limit=1).items is not None
    assert forbidden(pods.delete_collection_namespaced_pod, elsewhere)
