"""values.schema.json refuses unknown and mistyped values at install time."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from chart.rendering import CHART, render, render_error
from pydantic import BaseModel

from swapper.config import Config

SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
CHART_OWNED_CONFIG_KEYS = {"listenAddress", "tlsCertFile", "tlsKeyFile"}


def test_an_unknown_top_level_value_is_refused() -> None:
    assert "additional properties 'replicas' not allowed" in render_error({"replicas": 3})


def test_a_misspelt_nested_value_is_refused() -> None:
    message = render_error({"webhook": {"failurepolicy": "Fail"}})
    assert "at '/webhook': additional properties 'failurepolicy' not allowed" in message


def test_an_unknown_config_key_is_refused() -> None:
    message = render_error({"config": {"imageSwapPolicyy": "always"}})
    assert "at '/config': additional properties 'imageSwapPolicyy' not allowed" in message


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"config": {"dryRun": "yes"}}, "/config/dryRun"),
        ({"webhook": {"timeoutSeconds": 31}}, "/webhook/timeoutSeconds"),
        ({"webhook": {"timeoutSeconds": 0}}, "/webhook/timeoutSeconds"),
        ({"config": {"imageSwapPolicy": "sometimes"}}, "/config/imageSwapPolicy"),
        ({"config": {"imageCopyDeadline": "soon"}}, "/config/imageCopyDeadline"),
        ({"webhook": {"failurePolicy": "Retry"}}, "/webhook/failurePolicy"),
        ({"certificates": {"provider": "vault"}}, "/certificates/provider"),
        ({"podDisruptionBudget": {"minAvailable": "half"}}, "/podDisruptionBudget/minAvailable"),
        ({"config": {"cleanup": {"enabled": "yes"}}}, "/config/cleanup/enabled"),
        ({"config": {"cleanup": {"retention": "a month"}}}, "/config/cleanup/retention"),
        ({"config": {"cleanup": {"maxDeletes": 0}}}, "/config/cleanup/maxDeletes"),
        ({"config": {"clusterName": "Prod_EU"}}, "/config/clusterName"),
    ],
)
def test_a_mistyped_value_is_refused_naming_its_key(values: dict[str, Any], where: str) -> None:
    assert f"at '{where}'" in render_error(values)


def test_an_ecr_account_id_given_as_a_number_is_refused() -> None:
    values = {
        "config": {
            "target": {"type": "aws", "aws": {"accountId": 123456789012, "region": "eu-west-1"}}
        }
    }
    assert "at '/config/target/aws/accountId'" in render_error(values)


@pytest.mark.parametrize("key", sorted(CHART_OWNED_CONFIG_KEYS))
def test_config_keys_the_chart_owns_are_refused(key: str) -> None:
    assert f"additional properties '{key}' not allowed" in render_error({"config": {key: "x"}})


def model_keys(model: type[BaseModel]) -> dict[str, Any]:
    """The YAML key tree swapper's config model accepts."""
    tree: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or (
            field.validation_alias.choices[0]  # type: ignore[union-attr]
            if field.validation_alias is not None
            else name
        )
        nested = [
            arg
            for arg in _flatten(field.annotation)
            if isinstance(arg, type) and issubclass(arg, BaseModel)
        ]
        tree[str(key)] = model_keys(nested[0]) if nested else None
    return tree


def _flatten(annotation: Any) -> list[Any]:
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    return [a for arg in args for a in _flatten(arg)]


def schema_keys(schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("type") == "array":
        schema = schema["items"]
    if isinstance(schema.get("additionalProperties"), dict):  # a map: its values' keys
        schema = schema["additionalProperties"]
    properties = schema.get("properties")
    if schema.get("type") != "object" or properties is None:
        return None  # type: ignore[return-value]
    return {key: schema_keys(sub) for key, sub in properties.items()}


def test_the_config_schema_knows_exactly_the_keys_swapper_knows() -> None:
    swapper = model_keys(Config)
    for key in CHART_OWNED_CONFIG_KEYS:
        swapper.pop(key)
    assert schema_keys(SCHEMA["properties"]["config"]) == swapper, (
        "charts/swapper/values.schema.json 'config' differs from swapper/config.py: add the new "
        "config keys to the schema (and document them in values.yaml)"
    )


def test_every_config_block_refuses_unknown_keys() -> None:
    def walk(schema: dict[str, Any], where: str) -> None:
        if schema.get("type") == "array":
            walk(schema["items"], where + "[]")
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], where + "{}")
        if schema.get("type") == "object" and "properties" in schema:
            assert schema.get("additionalProperties") is False, where
            for key, sub in schema["properties"].items():
                walk(sub, f"{where}.{key}")

    walk(SCHEMA["properties"]["config"], "config")


def test_every_chart_value_block_refuses_unknown_keys() -> None:
    open_blocks = {"podSecurityContext", "securityContext", "affinity", "global"}
    for key, sub in SCHEMA["properties"].items():
        if sub.get("type") == "object" and key not in open_blocks and "properties" in sub:
            assert sub.get("additionalProperties") is False, key
    assert SCHEMA["additionalProperties"] is False


# Kubernetes structures documented as one value (their fields are the API's).
WHOLE_VALUES = {
    "webhook.namespaceSelector",
    "webhook.objectSelector",
    "resources",
    "certificates.job.resources",
}


def leaf_paths(schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the schema's values (not of the blocks that only group them)."""
    paths = []
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{key}" if prefix else key
        if path in WHOLE_VALUES:
            paths.append(path)
        elif sub.get("type") == "object" and sub.get("additionalProperties") is False:
            paths.extend(leaf_paths(sub, path))
        else:
            paths.append(path)
    return paths


def documented_keys() -> dict[str, bool]:
    """Every key of values.yaml by dotted path -> whether a comment sits right above it."""
    found: dict[str, bool] = {}
    stack: list[tuple[int, str]] = []
    previous = ""
    for line in (CHART / "values.yaml").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(\s*)([A-Za-z0-9_.-]+):", line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group(2)))
            found[".".join(k for _, k in stack)] = previous.lstrip().startswith("#")
        if line.strip():
            previous = line
    return found


def test_every_chart_value_is_in_values_yaml_with_a_comment() -> None:
    keys = documented_keys()
    paths = [p for p in leaf_paths(SCHEMA) if not p.startswith("config.")]
    assert [p for p in paths if p not in keys] == [], "in the schema, not in values.yaml"
    assert [p for p in paths if not keys[p]] == [], "no comment above them in values.yaml"


def test_every_config_key_in_values_yaml_has_a_comment() -> None:
    config = {p: ok for p, ok in documented_keys().items() if p.startswith("config.")}
    assert config
    undocumented = [
        p for p, ok in config.items() if not ok and not any(q.startswith(p + ".") for q in config)
    ]
    assert undocumented == []


def test_values_yaml_holds_no_key_the_schema_does_not_know() -> None:
    known = set(leaf_paths(SCHEMA))
    for path in documented_keys():
        assert any(
            path == k or k.startswith(path + ".") or path.startswith(k + ".") for k in known
        ), path


def test_the_charts_own_values_pass_the_schema() -> None:
    assert render().objects
