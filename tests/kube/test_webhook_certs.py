"""``swapper certs bootstrap``: the TLS Secret and the webhook's caBundle, against the fake API."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from kube_fake import FakeKubeAPI, running_fake_kube_api

from swapper import certs
from swapper.errors import CertificateError, KubeError
from swapper.kube.webhook_certs import (
    PREVIOUS_CA_GRACE,
    BootstrapRequest,
    BootstrapResult,
    bootstrap,
)

GROUP = "admissionregistration.k8s.io"
WEBHOOKS = "mutatingwebhookconfigurations"
REQUEST = BootstrapRequest(
    namespace="ops",
    service="swapper",
    secret="swapper-tls",
    webhook="swapper",
    labels={"app.kubernetes.io/name": "swapper"},
)
NOW = dt.datetime.now(dt.UTC)


def add_webhook_configuration(fake: FakeKubeAPI, *services: tuple[str, str]) -> None:
    hooks = [
        {
            "name": f"hook{i}.swapper.io",
            "clientConfig": {"service": {"name": name, "namespace": ns, "path": "/mutate"}},
        }
        for i, (ns, name) in enumerate(services or [("ops", "swapper")])
    ]
    fake.put(WEBHOOKS, {"metadata": {"name": "swapper"}, "webhooks": hooks}, GROUP)


def run(
    fake: FakeKubeAPI, request: BootstrapRequest = REQUEST, now: dt.datetime = NOW
) -> BootstrapResult:
    client = fake.api_client()
    try:
        return bootstrap(client, request, now=now)
    finally:
        client.close()


def stored_secret(fake: FakeKubeAPI) -> dict[str, Any]:
    found = fake.get("secrets", "swapper-tls", "ops")
    assert found is not None
    return found


def data(fake: FakeKubeAPI, key: str) -> bytes:
    return base64.b64decode(stored_secret(fake)["data"][key])


def bundles(fake: FakeKubeAPI) -> list[bytes | None]:
    found = fake.get(WEBHOOKS, "swapper", group=GROUP)
    assert found is not None
    out = []
    for hook in found["webhooks"]:
        bundle = hook["clientConfig"].get("caBundle")
        out.append(base64.b64decode(bundle) if bundle else None)
    return out


def bundle_certificates(fake: FakeKubeAPI) -> list[x509.Certificate]:
    bundle = bundles(fake)[0]
    assert bundle is not None
    return x509.load_pem_x509_certificates(bundle)


def test_a_first_run_stores_a_serving_pair_that_verifies_for_the_service_name(
    kube_api: FakeKubeAPI,
) -> None:
    result = run(kube_api)
    assert result.secret == "created"
    ca = x509.load_pem_x509_certificate(data(kube_api, "ca.crt"))
    verifier = (
        PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName("swapper.ops.svc"))
    )
    verifier.verify(x509.load_pem_x509_certificate(data(kube_api, "tls.crt")), [])


def test_the_secret_is_a_tls_secret_with_the_ca_and_the_requested_labels(
    kube_api: FakeKubeAPI,
) -> None:
    run(kube_api)
    secret = stored_secret(kube_api)
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    assert secret["metadata"]["labels"] == {"app.kubernetes.io/name": "swapper"}


def test_the_secret_is_annotated_with_the_certificates_expiry(kube_api: FakeKubeAPI) -> None:
    result = run(kube_api)
    cert = x509.load_pem_x509_certificate(data(kube_api, "tls.crt"))
    annotations = stored_secret(kube_api)["metadata"]["annotations"]
    expiry = cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert annotations == {"swapper.io/certificate-not-after": expiry}
    assert result.not_after == cert.not_valid_after_utc


def test_a_first_run_sets_the_ca_bundle_to_the_secrets_ca(kube_api: FakeKubeAPI) -> None:
    add_webhook_configuration(kube_api)
    result = run(kube_api)
    assert result.webhook == "patched"
    assert bundles(kube_api) == [data(kube_api, "ca.crt")]


def test_only_webhooks_that_call_the_service_get_the_ca_bundle(kube_api: FakeKubeAPI) -> None:
    add_webhook_configuration(kube_api, ("ops", "swapper"), ("other", "elsewhere"))
    run(kube_api)
    assert bundles(kube_api) == [data(kube_api, "ca.crt"), None]


def test_the_ca_bundle_is_set_with_a_json_patch_conditional_on_the_version_read(
    kube_api: FakeKubeAPI,
) -> None:
    add_webhook_configuration(kube_api)
    version = kube_api.get(WEBHOOKS, "swapper", group=GROUP)["metadata"]["resourceVersion"]  # type: ignore[index]
    run(kube_api)
    patch = next(
        r for r in kube_api.writes() if r.path.endswith("/swapper") and r.method == "PATCH"
    )
    assert patch.content_type == "application/json-patch+json"
    assert patch.body[0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": version}


def test_a_second_run_writes_nothing(kube_api: FakeKubeAPI) -> None:
    add_webhook_configuration(kube_api)
    run(kube_api)
    writes = len(kube_api.writes())
    result = run(kube_api)
    assert (result.secret, result.webhook) == ("unchanged", "unchanged")
    assert len(kube_api.writes()) == writes


def test_a_serving_certificate_close_to_expiry_is_renewed_by_the_same_ca(
    kube_api: FakeKubeAPI,
) -> None:
    add_webhook_configuration(kube_api)
    run(kube_api)
    ca, old_cert, old_bundle = (
        data(kube_api, "ca.crt"),
        data(kube_api, "tls.crt"),
        bundles(kube_api),
    )
    result = run(kube_api, now=NOW + dt.timedelta(days=365 - 29))
    assert result.secret == "renewed"
    assert data(kube_api, "ca.crt") == ca
    assert data(kube_api, "tls.crt") != old_cert
    assert result.webhook == "unchanged"
    assert bundles(kube_api) == old_bundle


def test_a_serving_certificate_with_time_left_is_kept(kube_api: FakeKubeAPI) -> None:
    run(kube_api)
    old_cert = data(kube_api, "tls.crt")
    result = run(kube_api, now=NOW + dt.timedelta(days=365 - 31))
    assert result.secret == "unchanged"
    assert data(kube_api, "tls.crt") == old_cert


def test_a_serving_certificate_missing_a_requested_name_is_reissued(kube_api: FakeKubeAPI) -> None:
    run(kube_api)
    wider = BootstrapRequest(**{**REQUEST.__dict__, "extra_sans": ("swapper.example.com",)})
    assert run(kube_api, wider).secret == "renewed"
    cert = x509.load_pem_x509_certificate(data(kube_api, "tls.crt"))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "swapper.example.com" in names.get_values_for_type(x509.DNSName)


def test_a_key_that_does_not_match_the_certificate_is_reissued(kube_api: FakeKubeAPI) -> None:
    run(kube_api)
    secret = stored_secret(kube_api)
    secret["data"]["tls.key"] = base64.b64encode(certs.generate("x", "y").key_pem).decode()
    kube_api.put("secrets", secret)
    result = run(kube_api)
    assert result.secret == "renewed"
    assert "tls.key does not match" in result.reason


def seed_short_lived_pair(fake: FakeKubeAPI) -> x509.Certificate:
    """A Secret whose CA (300 days left) would expire before a new 365-day certificate."""
    made = certs.generate("swapper", "ops", days=60)
    pem = {
        "tls.crt": made.cert_pem,
        "tls.key": made.key_pem,
        "ca.crt": made.ca_cert_pem,
        "ca.key": made.ca_key_pem,
    }
    fake.put(
        "secrets",
        {
            "metadata": {"name": "swapper-tls", "namespace": "ops"},
            "type": "kubernetes.io/tls",
            "data": {k: base64.b64encode(v).decode() for k, v in pem.items()},
        },
    )
    return x509.load_pem_x509_certificate(made.ca_cert_pem)


def test_a_ca_close_to_expiry_is_replaced_and_the_bundle_trusts_both_cas(
    kube_api: FakeKubeAPI,
) -> None:
    add_webhook_configuration(kube_api)
    old_ca = seed_short_lived_pair(kube_api)
    result = run(kube_api)
    assert result.secret == "ca-rotated"
    new_ca = x509.load_pem_x509_certificate(data(kube_api, "ca.crt"))
    assert new_ca != old_ca
    assert bundle_certificates(kube_api) == [new_ca, old_ca]


def test_the_previous_ca_stays_in_the_bundle_during_the_grace_period(
    kube_api: FakeKubeAPI,
) -> None:
    add_webhook_configuration(kube_api)
    seed_short_lived_pair(kube_api)
    run(kube_api)
    result = run(kube_api, now=NOW + PREVIOUS_CA_GRACE - dt.timedelta(minutes=1))
    assert (result.secret, result.webhook) == ("unchanged", "unchanged")
    assert len(bundle_certificates(kube_api)) == 2


def test_the_previous_ca_leaves_the_bundle_after_the_grace_period(kube_api: FakeKubeAPI) -> None:
    add_webhook_configuration(kube_api)
    seed_short_lived_pair(kube_api)
    run(kube_api)
    new_ca = x509.load_pem_x509_certificate(data(kube_api, "ca.crt"))
    result = run(kube_api, now=NOW + PREVIOUS_CA_GRACE + dt.timedelta(minutes=1))
    assert (result.secret, result.webhook) == ("updated", "patched")
    assert bundle_certificates(kube_api) == [new_ca]
    assert "ca-previous.crt" not in stored_secret(kube_api)["data"]


def test_a_secret_of_another_type_is_refused_and_left_untouched(kube_api: FakeKubeAPI) -> None:
    kube_api.put(
        "secrets",
        {"metadata": {"name": "swapper-tls", "namespace": "ops"}, "data": {"x": "eQ=="}},
    )
    with pytest.raises(KubeError, match="type 'Opaque'"):
        run(kube_api)
    assert stored_secret(kube_api)["data"] == {"x": "eQ=="}
    assert kube_api.writes() == []


def test_a_missing_webhook_configuration_is_reported_and_not_an_error(
    kube_api: FakeKubeAPI,
) -> None:
    result = run(kube_api)
    assert (result.secret, result.webhook) == ("created", "missing")


def test_a_webhook_configuration_that_never_calls_the_service_is_an_error(
    kube_api: FakeKubeAPI,
) -> None:
    add_webhook_configuration(kube_api, ("other", "elsewhere"))
    with pytest.raises(KubeError, match="no webhook calling service ops/swapper"):
        run(kube_api)


def test_an_empty_webhook_name_leaves_webhook_configurations_alone(kube_api: FakeKubeAPI) -> None:
    add_webhook_configuration(kube_api)
    result = run(
        kube_api, BootstrapRequest(namespace="ops", service="swapper", secret="swapper-tls")
    )
    assert result.webhook == "skipped"
    assert bundles(kube_api) == [None]


def test_a_secret_changed_between_read_and_write_is_re_read_and_written_again(
    kube_api: FakeKubeAPI,
) -> None:
    run(kube_api)
    path = "/api/v1/namespaces/ops/secrets/swapper-tls"

    def concurrent_writer() -> None:
        secret = stored_secret(kube_api)
        secret["metadata"].setdefault("annotations", {})["someone"] = "else"
        kube_api.put("secrets", secret)

    kube_api.before("PATCH", path, concurrent_writer)
    result = run(kube_api, now=NOW + dt.timedelta(days=350))
    assert result.secret == "renewed"
    patches = [r for r in kube_api.writes() if r.method == "PATCH" and r.path == path]
    assert len(patches) == 2  # the first answered 409 Conflict
    assert stored_secret(kube_api)["metadata"]["annotations"]["someone"] == "else"


def test_a_secret_created_by_a_concurrent_run_is_reused(kube_api: FakeKubeAPI) -> None:
    other = FakeSecretFromAnotherRun(kube_api)
    kube_api.before("POST", "/api/v1/namespaces/ops/secrets", other.create)
    result = run(kube_api)
    assert result.secret == "unchanged"
    assert data(kube_api, "tls.crt") == other.cert_pem


class FakeSecretFromAnotherRun:
    """Creates a valid TLS Secret just before our create, as a parallel Job would."""

    def __init__(self, fake: FakeKubeAPI) -> None:
        self.fake = fake
        made = certs.generate("swapper", "ops")
        self.cert_pem = made.cert_pem
        encoded = {
            "tls.crt": made.cert_pem,
            "tls.key": made.key_pem,
            "ca.crt": made.ca_cert_pem,
            "ca.key": made.ca_key_pem,
        }
        self.secret = {
            "metadata": {"name": "swapper-tls", "namespace": "ops"},
            "type": "kubernetes.io/tls",
            "data": {k: base64.b64encode(v).decode() for k, v in encoded.items()},
        }

    def create(self) -> None:
        self.fake.put("secrets", self.secret)


def test_a_forbidden_answer_names_the_object_and_points_at_rbac(kube_api: FakeKubeAPI) -> None:
    kube_api.fail("GET", "/api/v1/namespaces/ops/secrets/swapper-tls", 403, "Forbidden")
    with pytest.raises(KubeError, match=r"read Secret ops/swapper-tls: HTTP 403 Forbidden.*RBAC"):
        run(kube_api)


def test_renewing_before_the_validity_ends_is_required() -> None:
    with pytest.raises(CertificateError, match="renew-before-days"):
        BootstrapRequest(namespace="a", service="b", secret="c", days=30, renew_before_days=30)


# -- the command line, as the chart's Job runs it -------------------------------------------------


def bootstrap_cli(
    fake: FakeKubeAPI, tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "swapper",
            "certs",
            "bootstrap",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            "ops",
            "--service",
            "swapper",
            "--secret",
            "swapper-tls",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_creates_the_secret_and_sets_the_bundle_through_a_kubeconfig(
    kube_api: FakeKubeAPI, tmp_path: Path
) -> None:
    add_webhook_configuration(kube_api)
    result = bootstrap_cli(kube_api, tmp_path, "--webhook", "swapper", "--label", "a=b")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("secret ops/swapper-tls: created (new CA;")
    assert "caBundle set on hook0.swapper.io" in result.stdout
    assert stored_secret(kube_api)["metadata"]["labels"] == {"a": "b"}
    assert bundles(kube_api) == [data(kube_api, "ca.crt")]


def test_the_command_prints_no_key_material(kube_api: FakeKubeAPI, tmp_path: Path) -> None:
    result = bootstrap_cli(kube_api, tmp_path)
    assert result.returncode == 0, result.stderr
    secret = stored_secret(kube_api)["data"]
    output = result.stdout + result.stderr
    assert "PRIVATE KEY" not in output
    assert "BEGIN" not in output
    for value in secret.values():
        assert value[:40] not in output


def test_the_command_exits_2_with_the_reason_when_it_cannot_proceed(
    kube_api: FakeKubeAPI, tmp_path: Path
) -> None:
    kube_api.put("secrets", {"metadata": {"name": "swapper-tls", "namespace": "ops"}})
    result = bootstrap_cli(kube_api, tmp_path)
    assert result.returncode == 2
    assert "swapper: Secret ops/swapper-tls exists with type 'Opaque'" in result.stderr


def test_the_command_exits_2_naming_the_object_when_the_api_server_is_unreachable(
    tmp_path: Path,
) -> None:
    with running_fake_kube_api() as fake:
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "swapper",
            "certs",
            "bootstrap",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace=ops",
            "--service=swapper",
            "--secret=swapper-tls",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("swapper: read Secret ops/swapper-tls: ")
