"""The webhook Deployment: highly available and hardened."""

from __future__ import annotations

import pytest
from chart.rendering import VALUES_FILES, Obj, Rendered, render


def pod_specs(rendered: Rendered) -> list[tuple[str, Obj]]:
    """Every pod template the chart renders: Deployment, Job, CronJob."""
    specs = []
    for obj in rendered:
        if obj["kind"] in ("Deployment", "Job"):
            specs.append((obj["metadata"]["name"], obj["spec"]["template"]["spec"]))
        elif obj["kind"] == "CronJob":
            specs.append(
                (obj["metadata"]["name"], obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
            )
    return specs


def test_two_webhook_pods_run_by_default() -> None:
    assert render().deployment["spec"]["replicas"] == 2


def test_pods_spread_across_nodes_and_zones() -> None:
    rendered = render()
    selector = rendered.deployment["spec"]["selector"]["matchLabels"]
    constraints = rendered.pod["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    ]
    assert all(c["labelSelector"] == {"matchLabels": selector} for c in constraints)
    assert all(c["maxSkew"] == 1 for c in constraints)


def test_pods_prefer_different_nodes() -> None:
    rendered = render()
    terms = rendered.pod["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == (rendered.deployment["spec"]["selector"]["matchLabels"])
    )


def test_hard_anti_affinity_requires_different_nodes() -> None:
    affinity = render({"podAntiAffinity": "hard"}).pod["affinity"]["podAntiAffinity"]
    assert list(affinity) == ["requiredDuringSchedulingIgnoredDuringExecution"]


def test_probes_check_healthz_and_readyz_over_https() -> None:
    container = render().container
    assert container["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": "https",
        "scheme": "HTTPS",
    }
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "https",
        "scheme": "HTTPS",
    }
    assert container["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]


@pytest.mark.parametrize("name", VALUES_FILES)
def test_every_pod_runs_as_a_non_root_user_with_runtime_default_seccomp(name: str) -> None:
    for where, spec in pod_specs(render(file=name)):
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True, where
        assert security["runAsUser"] > 0, where
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where


@pytest.mark.parametrize("name", VALUES_FILES)
def test_every_container_is_read_only_unprivileged_and_drops_all_capabilities(name: str) -> None:
    for where, spec in pod_specs(render(file=name)):
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["privileged"] is False, where
            assert security["runAsNonRoot"] is True, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where


def test_a_writable_tmp_is_the_only_writable_path() -> None:
    rendered = render()
    writable = [m for m in rendered.container["volumeMounts"] if not m.get("readOnly")]
    assert [m["mountPath"] for m in writable] == ["/tmp"]
    tmp = next(v for v in rendered.pod["volumes"] if v["name"] == "tmp")
    assert "sizeLimit" in tmp["emptyDir"]


def test_the_ca_key_is_never_mounted_into_the_webhook_pods() -> None:
    tls = next(v for v in render().pod["volumes"] if v["name"] == "tls")
    assert [item["key"] for item in tls["secret"]["items"]] == ["tls.crt", "tls.key"]


def test_the_certificate_is_mounted_as_a_directory_so_a_renewal_reaches_running_pods() -> None:
    mount = next(m for m in render().container["volumeMounts"] if m["name"] == "tls")
    assert "subPath" not in mount


def test_resources_are_requested_and_memory_is_limited_without_a_cpu_limit() -> None:
    resources = render().container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"memory"}


def test_an_upgrade_never_has_fewer_ready_pods_than_replicas() -> None:
    strategy = render().deployment["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }


def test_a_stopping_pod_keeps_serving_until_the_api_server_stops_calling_it() -> None:
    rendered = render()
    assert rendered.container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert rendered.pod["terminationGracePeriodSeconds"] > 5


def test_the_pre_stop_pause_can_be_turned_off() -> None:
    assert "lifecycle" not in render({"preStopSleepSeconds": 0}).container


def test_the_image_defaults_to_the_charts_app_version() -> None:
    assert render().container["image"] == "swapper:0.1.0"


def test_an_image_digest_pins_the_image() -> None:
    image = render(file="everything").container["image"]
    assert image.startswith("registry.internal.example.org/platform/swapper:0.1.0@sha256:")


def test_host_network_mode_keeps_cluster_dns_and_uses_the_configured_port() -> None:
    rendered = render(file="everything")
    assert rendered.pod["hostNetwork"] is True
    assert rendered.pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert rendered.container["ports"][0]["containerPort"] == 10260
    assert rendered.config["listenAddress"] == "0.0.0.0:10260"


def test_the_service_sends_to_the_containers_https_port() -> None:
    service = render().one("Service")
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == render().deployment["spec"]["selector"]["matchLabels"]


def test_webhook_pods_run_on_linux_nodes_by_default() -> None:
    assert render().pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
