"""The ConfigMap: the `config:` block as swapper reads it."""

from __future__ import annotations

import pytest
from chart.rendering import VALUES_FILES, render

from swapper.config import load_config


@pytest.mark.parametrize("name", VALUES_FILES)
def test_the_rendered_config_is_accepted_by_swapper_itself(name: str) -> None:
    config = load_config(render(file=name).config, f"{name}.yaml")
    assert config.target.type in ("aws", "gcp", "generic")


def test_the_chart_sets_where_swapper_listens_and_finds_its_certificate() -> None:
    rendered = render()
    config = rendered.config
    assert config["listenAddress"] == "0.0.0.0:8443"
    mounts = {m["name"]: m["mountPath"] for m in rendered.container["volumeMounts"]}
    assert config["tlsCertFile"] == f"{mounts['tls']}/tls.crt"
    assert config["tlsKeyFile"] == f"{mounts['tls']}/tls.key"


def test_an_ipv6_listen_host_is_bracketed() -> None:
    assert render({"server": {"host": "::"}}).config["listenAddress"] == "[::]:8443"


def test_the_container_reads_the_config_file_the_configmap_holds() -> None:
    rendered = render()
    mounts = {m["name"]: m["mountPath"] for m in rendered.container["volumeMounts"]}
    config_volume = next(v for v in rendered.pod["volumes"] if v["name"] == "config")
    assert "config.yaml" in rendered.one("ConfigMap", config_volume["configMap"]["name"])["data"]
    assert rendered.container["args"] == ["serve", f"--config={mounts['config']}/config.yaml"]


def test_only_the_selected_targets_block_is_rendered() -> None:
    target = render(file="ecr-irsa").config["target"]
    assert sorted(target) == ["aws", "pullSecret", "type"]
    assert target["aws"]["accountId"] == "123456789012"


def test_dry_run_is_on_by_default() -> None:
    assert render().config["dryRun"] is True


def test_the_dry_run_values_file_audits_and_the_target_values_files_enforce() -> None:
    assert render(file="dry-run").config["dryRun"] is True
    for name in ("generic", "ecr-irsa", "ecr-cross-account", "gar-workload-identity"):
        assert render(file=name).config["dryRun"] is False


def test_a_config_change_rolls_the_pods() -> None:
    before = render().deployment["spec"]["template"]["metadata"]["annotations"]
    after = render({"config": {"logLevel": "debug"}}).deployment["spec"]["template"]["metadata"]
    assert after["annotations"]["checksum/config"] != before["checksum/config"]


def test_a_change_outside_the_config_keeps_the_pods_checksum() -> None:
    before = render().deployment["spec"]["template"]["metadata"]["annotations"]
    after = render({"webhook": {"timeoutSeconds": 12}}).deployment["spec"]["template"]["metadata"]
    assert after["annotations"]["checksum/config"] == before["checksum/config"]


def test_cleanup_is_off_and_a_dry_run_in_the_chart_and_turned_on_with_a_cluster_name() -> None:
    default = load_config(render().config)
    assert not default.cleanup.enabled and default.cleanup.dry_run and default.cluster_name == ""
    values = {"config": {"clusterName": "prod-eu", "cleanup": {"enabled": True}}}
    config = load_config(render(values).config)
    assert config.cleanup.enabled and config.cleanup.dry_run and config.cluster_name == "prod-eu"
