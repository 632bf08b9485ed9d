"""Every rendered object against the Kubernetes OpenAPI schemas, offline and strict.

Built-in kinds use ``kubernetes-validate`` (the API's OpenAPI schemas per Kubernetes version,
unknown fields refused); the custom resources use :mod:`chart.crd_schemas`.
"""

from __future__ import annotations

import copy
import re

import jsonschema
import kubernetes_validate
import pytest
from chart.crd_schemas import is_custom, validate_custom
from chart.rendering import CHART_YAML, KUBERNETES_VERSIONS, VALUES_FILES, render


def validate(obj: dict, version: str) -> None:
    if is_custom(obj):
        validate_custom(obj)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", VALUES_FILES)
def test_every_rendered_object_is_valid_for_each_claimed_kubernetes_version(
    name: str, version: str
) -> None:
    rendered = render(file=name)
    assert rendered.objects
    for obj in rendered:  # a kind with no schema raises SchemaNotFoundError: not skipped
        try:
            validate(obj, version)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            pytest.fail(f"{name}: {obj['kind']} {obj['metadata']['name']} on {version}: {exc}")


def test_the_oldest_validated_version_is_the_charts_minimum_kubernetes_version() -> None:
    minimum = re.match(r">=\s*(\d+\.\d+)", CHART_YAML["kubeVersion"])
    assert minimum is not None
    assert KUBERNETES_VERSIONS[0] == minimum.group(1)
    assert sorted(KUBERNETES_VERSIONS, key=lambda v: tuple(map(int, v.split(".")))) == (
        KUBERNETES_VERSIONS
    )


def test_the_validation_refuses_a_field_the_api_does_not_have() -> None:
    deployment = copy.deepcopy(render().deployment)
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsRoot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError, match="runAsRoot"):
        validate(deployment, KUBERNETES_VERSIONS[0])


def test_the_custom_resource_schemas_refuse_a_field_the_api_does_not_have() -> None:
    certificate = copy.deepcopy(render(file="cert-manager").one("Certificate", "swapper"))
    certificate["spec"]["dnsName"] = ["typo"]
    with pytest.raises(jsonschema.ValidationError, match="dnsName"):
        validate(certificate, KUBERNETES_VERSIONS[0])
