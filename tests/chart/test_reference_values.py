"""Values written for estahn/k8s-image-swapper's chart: each one this chart does not take fails
the render with a message that names what to set instead (the schema alone would only say
"not allowed")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chart.rendering import render, render_error

from swapper.config import load_config

REFERENCE_VALUES = Path(__file__).parent / "reference" / "k8s-image-swapper-values.yaml"

# reference chart value -> what the error must name instead
REPLACEMENTS: dict[str, tuple[Any, str]] = {
    "awsSecretName": ("aws-credentials", "extraEnv"),
    "awsSecretKeys": ({"accessKeyID": "id"}, "serviceAccount.annotations"),
    "secretName": ("env-secret", "extraEnv"),
    "secretReader": ({"enabled": True}, "config.source.podPullSecrets: true"),
    "patch": ({"enabled": True}, "certificates.provider: job"),
    "certmanager": ({"enabled": True}, "certificates.provider: certManager"),
    "pdb": ({"enabled": True, "minAvailable": "1"}, "podDisruptionBudget"),
    "containerPort": (8443, "server.port"),
    "deployment": ({"priorityClassName": "high"}, "is priorityClassName"),
    "kubeVersionOverride": ("1.29", "remove it"),
    "podSecurityPolicy": ({"enabled": False}, "remove it"),
    "dev": ({"enabled": False}, "swapper serve"),
    "extraManifests": ([], "kubectl"),
    "extraManifestsTemplated": ([], "kubectl"),
    "clusterSuffix": ("cluster.local", "remove it"),
    "test": ({"enabled": True}, "remove it"),
    "cacheVolume": ({"emptyDir": {}}, "remove it"),
}


@pytest.mark.parametrize("key", sorted(REPLACEMENTS))
def test_a_reference_chart_value_fails_the_render_naming_its_replacement(key: str) -> None:
    value, replacement = REPLACEMENTS[key]
    message = render_error({key: value})
    assert "values of estahn/k8s-image-swapper's chart that this chart does not take" in message
    line = next(line for line in message.splitlines() if line.strip().startswith(f"{key}:"))
    assert replacement in line


def test_the_cert_manager_issuer_of_the_reference_chart_names_the_issuer_ref() -> None:
    message = render_error({"certmanager": {"enabled": True, "issuerName": "ca"}})
    assert "issuerName is certificates.certManager.issuerRef.name" in message
    assert "issuerKind is certificates.certManager.issuerRef.kind" in message


def test_the_reference_charts_service_type_fails_the_render_saying_it_is_not_needed() -> None:
    message = render_error({"service": {"type": "ClusterIP"}})
    assert "service.type: not needed: the Service is always ClusterIP" in message


def test_a_reference_values_file_fails_listing_every_value_to_change() -> None:
    values = yaml.safe_load(REFERENCE_VALUES.read_text(encoding="utf-8"))
    message = render_error(values, file=None)
    listed = [line.split(":", 1)[0].strip() for line in message.splitlines()[1:] if line]
    assert "awsSecretName" in listed and "pdb" in listed and "service.type" in listed
    assert {"containerPort", "patch"} <= set(listed)


def test_a_reference_values_file_renders_once_its_chart_values_are_replaced() -> None:
    values = yaml.safe_load(REFERENCE_VALUES.read_text(encoding="utf-8"))
    for key in ("containerPort", "awsSecretName", "patch", "pdb"):
        del values[key]
    del values["service"]["type"]
    rendered = render(values, file=None)
    config = load_config(rendered.config, "config.yaml")
    assert config.target.endpoint == "123456789012.dkr.ecr.ap-southeast-2.amazonaws.com"
    assert rendered.webhook["reinvocationPolicy"] == "Never"


def test_an_unknown_key_that_is_not_the_reference_charts_is_still_refused_by_the_schema() -> None:
    assert "additional properties 'awsSecret' not allowed" in render_error({"awsSecret": "x"})
