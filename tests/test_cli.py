"""The command line, run as a user runs it: ``python -m swapper ...`` in a subprocess."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers import FIXTURES, run_swapper

swapper = run_swapper


def test_check_config_prints_the_effective_config_with_defaults() -> None:
    result = swapper("check-config", str(FIXTURES / "configs" / "webhook.yaml"))
    assert result.returncode == 0, result.stderr
    effective = yaml.safe_load(result.stdout)
    assert effective["imageSwapPolicy"] == "always"
    assert effective["imageCopyDeadline"] == "8s"
    assert effective["target"]["generic"]["registry"] == "mirror.example.com/mirror"


def test_check_config_refuses_a_bad_file_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("imageCopyPolicy: sometimes\ntarget:\n  type: generic\n  generic: {}\n")
    result = swapper("check-config", str(bad))
    assert result.returncode == 2
    assert "imageCopyPolicy" in result.stderr
    assert "target.generic.registry: required key is missing" in result.stderr


def test_explain_prints_one_decision_per_image_without_contacting_anything() -> None:
    result = swapper(
        "explain",
        "--config",
        str(FIXTURES / "configs" / "webhook.yaml"),
        "nginx:1.27",
        "mirror.example.com/mirror/docker.io/library/redis:7",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "containers[c0]: would swap nginx:1.27 -> "
        "mirror.example.com/mirror/docker.io/library/nginx:1.27",
        "containers[c1]: not swapped: mirror.example.com/mirror/docker.io/library/redis:7 "
        "is already in the target registry",
    ]


def test_explain_applies_filters_to_a_pod_manifest(tmp_path: Path) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        yaml.safe_dump(
            {
                "metadata": {"name": "dns", "namespace": "kube-system"},
                "spec": {"containers": [{"name": "dns", "image": "coredns/coredns:1.11"}]},
            }
        )
    )
    result = swapper(
        "explain", "--config", str(FIXTURES / "configs" / "webhook.yaml"), "--pod", str(pod)
    )
    assert result.stdout.strip().splitlines()[0] == (
        "containers[dns]: skipped by filter 0 (obj.metadata.namespace == 'kube-system')"
    )


def test_serve_builds_the_ecr_target_without_contacting_aws(tmp_path: Path) -> None:
    config = tmp_path / "aws.yaml"
    config.write_text(
        yaml.safe_dump(
            {"target": {"type": "aws", "aws": {"accountId": "123456789012", "region": "eu-west-1"}}}
        )
    )
    result = swapper(
        "serve", "--config", str(config), "--tls-cert-file", "x", "--tls-key-file", "y"
    )
    # The target was built (no AWS call is made before the first copy); the missing
    # certificate is what stops it.
    assert result.returncode == 2
    assert "target.type" not in result.stderr
    assert "cannot read x" in result.stderr


def test_serve_refuses_to_start_without_a_certificate() -> None:
    result = swapper("serve", "--config", str(FIXTURES / "configs" / "webhook.yaml"))
    assert result.returncode == 2
    assert "--tls-cert-file" in result.stderr


def test_certs_generate_writes_the_ca_and_serving_pair(tmp_path: Path) -> None:
    result = swapper(
        "certs",
        "generate",
        "--service",
        "swapper",
        "--namespace",
        "ops",
        "--san",
        "127.0.0.1",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert {p.name for p in tmp_path.iterdir()} >= {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "swapper.ops.svc" in names.get_values_for_type(x509.DNSName)
