"""What the chart's ServiceAccounts may do, asked of the real API server, equals the chart README.

The API server answers a SelfSubjectRulesReview made with each account's own TokenRequest token;
what every authenticated user may do (asked the same way for an account with no binding) is
taken away, and the rest must be exactly the rows of the README's permissions table that apply
to the values installed.
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
    match = re.fullmatch(r"`([\w.]+)(?:: (\w+))?`.*", when)
    assert match, f"cannot read the condition {when!r}"
    found = _lookup(merged(DEFAULTS, values), match.group(1))
    return found == match.group(2) if match.group(2) else bool(found)


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
        }
    },
    "access-check-only": {
        "rbac": {"events": False},
        "config": {
            "source": {"podPullSecrets": False},
            "target": {"pullSecret": {"enabled": False}},
        },
    },
    "nothing": {
        "rbac": {"events": False},
        "config": {
            "source": {"podPullSecrets": False, "checkAccess": False},
            "target": {"pullSecret": {"enabled": False}},
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
    release = f"rbac-{case}"
    namespace = cluster.namespace(release)
    rendered = render(values, namespace=namespace, release=release)
    identity = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    objects = [o for o in rendered.objects if o["kind"] in identity]
    for obj in install_order(objects):
        cluster.kubectl("create", "--validate=strict", "-f", "-", stdin=yaml.safe_dump(obj))
    account = rendered.pod["serviceAccountName"]
    wanted = expected_rules("webhook", values, _names(values, rendered))
    assert granted(cluster, namespace, account, tmp_path) - baseline == wanted
    if case == "nothing":
        assert wanted == set()
