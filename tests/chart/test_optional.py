"""PodDisruptionBudget, HorizontalPodAutoscaler, ServiceMonitor and NetworkPolicy."""

from __future__ import annotations

from chart.rendering import render


def test_a_pod_disruption_budget_keeps_one_pod_up_by_default() -> None:
    spec = render().one("PodDisruptionBudget")["spec"]
    assert spec["minAvailable"] == 1
    assert "maxUnavailable" not in spec
    assert spec["selector"]["matchLabels"] == render().deployment["spec"]["selector"]["matchLabels"]


def test_max_unavailable_replaces_min_available() -> None:
    spec = render({"podDisruptionBudget": {"maxUnavailable": 1}}).one("PodDisruptionBudget")["spec"]
    assert spec["maxUnavailable"] == 1
    assert "minAvailable" not in spec


def test_min_available_takes_a_percentage() -> None:
    spec = render({"podDisruptionBudget": {"minAvailable": "50%"}}).one("PodDisruptionBudget")[
        "spec"
    ]
    assert spec["minAvailable"] == "50%"


def test_no_pod_disruption_budget_blocks_drains_when_a_single_pod_runs() -> None:
    rendered = render({"replicaCount": 1})
    assert not rendered.has("PodDisruptionBudget")
    assert "fewer than 2 webhook pods" in rendered.notes


def test_the_pod_disruption_budget_can_be_turned_off() -> None:
    assert not render({"podDisruptionBudget": {"enabled": False}}).has("PodDisruptionBudget")


def test_optional_objects_are_off_by_default() -> None:
    rendered = render()
    for kind in ("HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy"):
        assert not rendered.has(kind), kind


def test_the_autoscaler_scales_the_deployment_which_then_has_no_replica_count() -> None:
    rendered = render(file="everything")
    hpa = rendered.one("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "swapper",
    }
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 10)
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu", "memory"]
    assert "replicas" not in rendered.deployment["spec"]


def test_the_service_monitor_scrapes_metrics_over_https_verified_against_the_webhook_ca() -> None:
    rendered = render(file="everything")
    monitor = rendered.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    endpoint = monitor["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["path"], endpoint["scheme"]) == (
        "https",
        "/metrics",
        "https",
    )
    tls = endpoint["tlsConfig"]
    assert tls["ca"]["secret"] == {"name": "swapper-tls", "key": "ca.crt"}
    assert tls["serverName"] == "swapper.swapper-system.svc"
    assert "insecureSkipVerify" not in tls
    assert monitor["spec"]["selector"]["matchLabels"] == rendered.one("Service")["spec"]["selector"]


def test_the_network_policy_admits_only_the_https_port() -> None:
    policy = render({"networkPolicy": {"enabled": True}}).one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"ports": [{"port": "https", "protocol": "TCP"}]}]


def test_the_network_policy_restricts_sources_and_egress_only_when_given() -> None:
    policy = render(file="everything").one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"][0]["from"] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]
    assert [p["port"] for p in policy["egress"][0]["ports"]] == [53, 443]
