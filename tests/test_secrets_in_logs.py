"""Nothing secret in the log output: a pod's env values and annotations (its
``last-applied-configuration`` too) never appear, at any level, in either format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import review_body
from webhook_process import Webhook, make_certs, start_webhook, stop

MARKER = "s3cr3t-marker-7d41"
FILTERS = [
    "starts_with(obj.metadata.annotations, 'x')",  # a type error, which quotes the value
    "obj.metadata.annotations",  # not a boolean: the annotations themselves
    "starts_with(container.env[0].value, `1`)",  # a type error on the env value
    "container.env",  # not a boolean: the env list
]


def pod(containers: list[object]) -> dict[str, Any]:
    env = [{"name": "PASSWORD", "value": MARKER}, {"name": "MODE", "value": "prod"}]
    applied = {"kind": "Pod", "spec": {"containers": [{"name": "app", "env": env}]}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "annotations": {
                "team/token": MARKER,
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(applied),
            },
        },
        "spec": {
            "containers": [{**c, "env": env} if isinstance(c, dict) else c for c in containers]
        },
    }


APP = {"name": "app", "image": "nginx:1.27"}
BODIES = [
    # Filters that error or return no boolean; an invalid reference.
    review_body(pod([APP, {"name": "bad", "image": "A//b"}]), namespace="shop"),
    # A malformed pod: one container is not an object.
    review_body(pod([APP, MARKER]), namespace="shop"),
    # Not JSON, with the secret in it.
    b'{"apiVersion": "admission.k8s.io/v1", "token": "' + MARKER.encode(),
]


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


def serve(tmp_path: Path, cert_dir: Path, level: str, fmt: str = "json") -> Webhook:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "logLevel": level,
                "logFormat": fmt,
                "imageSwapPolicy": "always",
                "imageCopyPolicy": "none",
                "source": {"checkAccess": False, "filters": [{"jmespath": f} for f in FILTERS]},
                "target": {"type": "generic", "generic": {"registry": "mirror.example.com/m"}},
            }
        )
    )
    return start_webhook(tmp_path, config, cert_dir=cert_dir)


def output_of(hook: Webhook, bodies: list[bytes]) -> str:
    """The whole log output of a server that answered ``bodies``, then stopped."""
    try:
        with hook.client() as client:
            for body in bodies:
                assert client.post("/mutate", content=body).status_code in (200, 400)
    finally:
        stop(hook)
    return hook.logs()


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.parametrize("level", ["trace", "debug", "info", "warn", "error"])
def test_no_env_value_or_annotation_reaches_the_log_output(
    tmp_path: Path, cert_dir: Path, level: str, fmt: str
) -> None:
    output = output_of(serve(tmp_path, cert_dir, level, fmt), BODIES)
    assert MARKER not in output
    if level in ("trace", "debug"):  # the lines that carried them are there
        assert "filter_error" in output and "filter_not_boolean" in output


def test_the_filter_lines_at_debug_level_name_the_pod_container_and_image(
    tmp_path: Path, cert_dir: Path
) -> None:
    output = output_of(serve(tmp_path, cert_dir, "debug"), BODIES[:1])
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    errors = [line for line in lines if line["event"] == "filter_error"]
    not_boolean = [line for line in lines if line["event"] == "filter_not_boolean"]
    assert {(e["filter"], e["container"]) for e in errors} >= {(0, "app"), (2, "app")}
    assert {(e["filter"], e["result_type"]) for e in not_boolean} >= {(1, "object"), (3, "array")}
    assert all(e["pod"] == "web" and e["namespace"] == "shop" for e in errors + not_boolean)
    assert {e["image"] for e in errors} == {"nginx:1.27"}  # A//b is invalid: never filtered
    assert errors[0]["error"] == (
        "In function starts_with(), invalid type: expected one of ['string'], received 'object'"
    )
