"""The access check's remembered public answers: the ConfigMap the chart creates for them, the
config that names it, and the pods' namespace that swapper finds it in."""

from __future__ import annotations

from chart.rendering import render

from swapper.config import load_config


def test_the_chart_creates_the_source_access_config_map_in_the_release_namespace() -> None:
    meta = render(namespace="mirror").access_config_map["metadata"]
    assert (meta["name"], meta["namespace"]) == ("swapper-source-access", "mirror")


def test_the_source_access_config_map_is_created_without_data() -> None:
    config_map = render().access_config_map
    assert not {"data", "binaryData", "immutable"} & set(config_map)


def test_the_rendered_config_names_the_source_access_config_map() -> None:
    config = load_config(render(release="mirror").config, "rendered")
    assert config.source.access.config_map == "mirror-swapper-source-access"


def test_without_the_access_check_no_config_map_is_named_or_created() -> None:
    rendered = render({"config": {"source": {"checkAccess": False}}})
    assert "access" not in rendered.config["source"]
    assert [c["metadata"]["name"] for c in rendered.all("ConfigMap")] == ["swapper"]


def test_removing_the_check_access_key_keeps_the_config_map_of_swappers_own_default() -> None:
    rendered = render({"config": {"source": {"checkAccess": None}}})
    assert "checkAccess" not in rendered.config["source"]
    assert rendered.access_config_map["metadata"]["name"] == "swapper-source-access"


def test_the_source_access_config_map_is_created_even_when_rbac_is_left_to_the_admin() -> None:
    rendered = render({"rbac": {"create": False}})
    assert rendered.access_config_map["metadata"]["name"] == "swapper-source-access"


def test_the_webhook_pods_know_their_namespace_from_the_downward_api() -> None:
    env = render().container["env"]
    assert {
        "name": "POD_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    } in env


def test_extra_env_is_added_after_the_pods_namespace_and_name() -> None:
    env = render({"extraEnv": [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}]})
    names = [e["name"] for e in env.container["env"]]
    assert names == ["POD_NAMESPACE", "POD_NAME", "AWS_STS_REGIONAL_ENDPOINTS"]
