"""Signature verification in the chart: cosign public keys from a Secret, mounted as files that
``config.mirror.verify`` names."""

from __future__ import annotations

from pathlib import Path

from chart.rendering import render, render_error
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from swapper.config import load_config

KEY = "/etc/swapper/cosign/cosign.pub"
RULES = {"mirror": {"verify": [{"keys": [KEY], "images": ["ghcr.io/acme/"]}]}}


def test_no_key_volume_is_mounted_unless_a_keys_secret_is_named() -> None:
    rendered = render()
    assert "cosign-keys" not in [v["name"] for v in rendered.pod["volumes"]]
    assert "cosign-keys" not in [m["name"] for m in rendered.container["volumeMounts"]]


def test_the_keys_secret_is_mounted_read_only_where_the_rules_name_the_keys() -> None:
    rendered = render({"verify": {"keysSecret": "cosign-keys"}, "config": RULES})
    (volume,) = [v for v in rendered.pod["volumes"] if v["name"] == "cosign-keys"]
    assert volume["secret"]["secretName"] == "cosign-keys"
    (mount,) = [m for m in rendered.container["volumeMounts"] if m["name"] == "cosign-keys"]
    assert mount == {"name": "cosign-keys", "mountPath": "/etc/swapper/cosign", "readOnly": True}
    assert rendered.config["mirror"]["verify"] == RULES["mirror"]["verify"]


def test_the_rendered_rules_are_accepted_by_swapper_with_the_key_file_in_place(
    tmp_path: Path,
) -> None:
    rendered = render({"verify": {"keysSecret": "cosign-keys"}, "config": RULES})
    key = tmp_path / "cosign.pub"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    config = rendered.config
    config["mirror"]["verify"][0]["keys"] = [str(key)]  # where the Secret's file would be
    (rule,) = load_config(config).mirror.verify
    assert rule.images == ("ghcr.io/acme/",)


def test_rules_naming_mounted_keys_without_a_keys_secret_fail_the_render() -> None:
    message = render_error({"config": RULES})
    assert f"config.mirror.verify[0].keys names {KEY}, but verify.keysSecret is not set" in message


def test_the_schema_refuses_a_rule_without_keys_and_a_keyless_rule() -> None:
    no_keys = {"mirror": {"verify": [{"keys": [], "images": ["ghcr.io/"]}]}}
    assert "/config/mirror/verify/0/keys" in render_error({"config": no_keys})
    keyless = {"mirror": {"verify": [{"keys": [KEY], "images": ["ghcr.io/"], "keyless": True}]}}
    error = render_error({"verify": {"keysSecret": "k"}, "config": keyless})
    assert "additional properties 'keyless' not allowed" in error
