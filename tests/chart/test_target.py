"""The target registry: no default one; without a type, ECR when config.target.aws is set
(swapper's own default type), else the one block that is set."""

from __future__ import annotations

from pathlib import Path

import yaml
from chart.rendering import CHART, render, render_error

from swapper.config import load_config

ECR = {"accountId": "123456789012", "region": "eu-west-1"}


def test_a_render_with_no_values_at_all_fails_naming_the_values_to_set() -> None:
    message = render_error({}, file=None)
    assert "no target registry is set" in message
    assert "--set config.target.type=generic" in message
    assert "config.target.generic.registry=" in message
    assert "--set-string config.target.aws.accountId=" in message
    assert "config.target.aws.region=" in message
    assert "config.target.gcp.location" in message


def test_the_chart_has_no_default_registry() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["config"]["target"]["type"] == ""
    assert values["config"]["target"]["generic"] == {}


def test_an_aws_block_without_a_type_gives_an_ecr_target() -> None:
    config = render({"config": {"target": {"aws": ECR}}}, file=None).config
    assert config["target"]["type"] == "aws"
    assert config["target"]["aws"] == ECR
    assert "generic" not in config["target"]
    loaded = load_config(config, "config.yaml")
    assert loaded.target.endpoint == "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def test_an_aws_block_without_a_type_is_ecr_even_over_a_values_file_with_none() -> None:
    rendered = render({"config": {"dryRun": False, "target": {"aws": ECR}}}, file=None)
    assert rendered.config["target"]["type"] == "aws"
    assert "Target: aws account 123456789012 eu-west-1." in rendered.notes


def test_an_aws_block_without_a_type_or_a_region_fails_naming_the_region() -> None:
    message = render_error(
        {"config": {"target": {"aws": {"accountId": "123456789012"}}}}, file=None
    )
    assert "the target is Amazon ECR" in message
    assert "needs config.target.aws.region (" in message


def test_a_lone_gcp_block_without_a_type_gives_an_artifact_registry_target() -> None:
    gcp = {"location": "europe-west1", "projectId": "p", "repositoryId": "mirror"}
    target = render({"config": {"target": {"gcp": gcp}}}, file=None).config["target"]
    assert (target["type"], target["gcp"]) == ("gcp", gcp)


def test_a_lone_generic_block_without_a_type_gives_a_generic_target() -> None:
    # The main README's `helm install ... --set config.target.generic.registry=...`.
    generic = {"registry": "harbor.internal.example.org/mirror"}
    target = render({"config": {"target": {"generic": generic}}}, file=None).config["target"]
    assert (target["type"], target["generic"]) == ("generic", generic)


def test_a_lone_generic_block_without_a_type_or_a_registry_fails_naming_the_registry() -> None:
    message = render_error({"config": {"target": {"generic": {"insecure": True}}}}, file=None)
    assert "needs config.target.generic.registry." in message


def test_gcp_and_generic_blocks_without_a_type_fail_asking_for_the_type() -> None:
    gcp = {"location": "europe-west1", "projectId": "p", "repositoryId": "mirror"}
    generic = {"registry": "harbor.internal.example.org/mirror"}
    message = render_error({"config": {"target": {"gcp": gcp, "generic": generic}}}, file=None)
    assert "set config.target.type to gcp or generic" in message


def test_a_generic_type_without_a_registry_fails_naming_the_registry() -> None:
    message = render_error({"config": {"target": {"type": "generic"}}}, file=None)
    assert "/config/target/generic': missing property 'registry'" in message


def test_an_explicit_type_wins_over_an_aws_block() -> None:
    values = {
        "config": {
            "target": {
                "type": "generic",
                "aws": ECR,
                "generic": {"registry": "harbor.internal.example.org/mirror"},
            }
        }
    }
    target = render(values, file=None).config["target"]
    assert target["type"] == "generic"
    assert "aws" not in target


def test_every_tested_values_file_names_its_target() -> None:
    for path in sorted((Path(__file__).parent / "values").glob("*.yaml")):
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        target = values.get("config", {}).get("target", {})
        assert target.get("type") or target.get("aws"), path.name
