"""``swapper certs bootstrap``: the TLS Secret and the webhook's caBundle, on the real API server.

Each test has its own namespace and its own MutatingWebhookConfiguration (cluster-scoped: a
unique name, deleted after the test). Its webhooks have no rules, so the API server never
calls them. Three tests run on the fake (tests/kube_fake.py): it records the exact patch sent,
and runs a concurrent writer between bootstrap's read and its write.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from e2e.cluster import Cluster
from kube_fake import FakeKubeAPI
from webhook_process import free_port

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
SECRET = "swapper-tls"
LABELS = {"app.kubernetes.io/name": "swapper"}
NOW = dt.datetime.now(dt.UTC)


def webhook_configuration(name: str, services: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    hooks = [
        {
            "name": f"hook{i}.swapper.io",
            "clientConfig": {"service": {"name": svc, "namespace": ns, "path": "/mutate"}},
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "rules": [],  # matches no request: never called
        }
        for i, (ns, svc) in enumerate(services)
    ]
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": hooks,
    }


def tls_secret(made: certs.GeneratedCerts, namespace: str) -> dict[str, Any]:
    pem = {
        "tls.crt": made.cert_pem,
        "tls.key": made.key_pem,
        "ca.crt": made.ca_cert_pem,
        "ca.key": made.ca_key_pem,
    }
    return {
        "metadata": {"name": SECRET, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {k: base64.b64encode(v).decode() for k, v in pem.items()},
    }


class Kube:
    """This test's namespace and webhook configuration on the real API server, as the admin."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        from kubernetes import client

        self.cluster = cluster
        self.namespace = namespace
        self.webhook = f"kube-webhook-certs-{uuid.uuid4().hex[:8]}"
        self.core = client.CoreV1Api(cluster.api_client())
        self.admission = client.AdmissionregistrationV1Api(cluster.api_client())

    @property
    def request(self) -> BootstrapRequest:
        return BootstrapRequest(
            namespace=self.namespace,
            service="swapper",
            secret=SECRET,
            webhook=self.webhook,
            labels=LABELS,
        )

    def run(
        self,
        request: BootstrapRequest | None = None,
        now: dt.datetime = NOW,
        kubeconfig: Path | None = None,
    ) -> BootstrapResult:
        client = self.cluster.api_client(kubeconfig)
        try:
            return bootstrap(client, request or self.request, now=now)
        finally:
            client.close()

    def add_webhook_configuration(self, *services: tuple[str, str]) -> None:
        body = webhook_configuration(self.webhook, services or ((self.namespace, "swapper"),))
        self.admission.create_mutating_webhook_configuration(body)

    def delete_webhook_configuration(self) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.admission.delete_mutating_webhook_configuration(self.webhook)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def secret(self) -> dict[str, Any]:
        response = self.core.read_namespaced_secret(SECRET, self.namespace, _preload_content=False)
        found: dict[str, Any] = json.loads(response.data)
        return found

    def data(self, key: str) -> bytes:
        return base64.b64decode(self.secret()["data"][key])

    def bundles(self) -> list[bytes | None]:
        response = self.admission.read_mutating_webhook_configuration(
            self.webhook, _preload_content=False
        )
        out = []
        for hook in json.loads(response.data)["webhooks"]:
            bundle = hook["clientConfig"].get("caBundle")
            out.append(base64.b64decode(bundle) if bundle else None)
        return out

    def bundle_certificates(self) -> list[x509.Certificate]:
        bundle = self.bundles()[0]
        assert bundle is not None
        return x509.load_pem_x509_certificates(bundle)

    def secret_writes(self) -> list[str]:
        """The verbs of every write of the Secret that the API server audited, in order."""
        return self.cluster.writes("secrets", self.namespace, SECRET)


@pytest.fixture
def kube(cluster: Cluster, namespaces: Callable[[str], str]) -> Iterator[Kube]:
    made = Kube(cluster, namespaces("ops"))
    try:
        yield made
    finally:
        made.delete_webhook_configuration()


def test_a_first_run_stores_a_serving_pair_that_verifies_for_the_service_name(
    kube: Kube,
) -> None:
    result = kube.run()
    assert result.secret == "created"
    ca = x509.load_pem_x509_certificate(kube.data("ca.crt"))
    name = x509.DNSName(f"swapper.{kube.namespace}.svc")
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(name)
    verifier.verify(x509.load_pem_x509_certificate(kube.data("tls.crt")), [])


def test_the_secret_is_a_tls_secret_with_the_ca_and_the_requested_labels(kube: Kube) -> None:
    kube.run()
    secret = kube.secret()
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    assert secret["metadata"]["labels"] == LABELS


def test_the_secret_is_annotated_with_the_certificates_expiry(kube: Kube) -> None:
    result = kube.run()
    cert = x509.load_pem_x509_certificate(kube.data("tls.crt"))
    annotations = kube.secret()["metadata"]["annotations"]
    expiry = cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert annotations == {"swapper.io/certificate-not-after": expiry}
    assert result.not_after == cert.not_valid_after_utc


def test_a_first_run_sets_the_ca_bundle_to_the_secrets_ca(kube: Kube) -> None:
    kube.add_webhook_configuration()
    result = kube.run()
    assert result.webhook == "patched"
    assert kube.bundles() == [kube.data("ca.crt")]


def test_only_webhooks_that_call_the_service_get_the_ca_bundle(kube: Kube) -> None:
    kube.add_webhook_configuration((kube.namespace, "swapper"), ("other", "elsewhere"))
    kube.run()
    assert kube.bundles() == [kube.data("ca.crt"), None]


def test_a_second_run_writes_nothing(kube: Kube, account: Callable[..., Path]) -> None:
    kube.add_webhook_configuration()
    kube.run()
    # The second run as an account that may only read them: any write would be refused (403).
    reader = account(
        kube.namespace,
        "reader",
        rules=[{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        cluster_rules=[
            {
                "apiGroups": [GROUP],
                "resources": [WEBHOOKS],
                "verbs": ["get"],
                "resourceNames": [kube.webhook],
            }
        ],
    )
    result = kube.run(kubeconfig=reader)
    assert (result.secret, result.webhook) == ("unchanged", "unchanged")


def test_a_serving_certificate_close_to_expiry_is_renewed_by_the_same_ca(kube: Kube) -> None:
    kube.add_webhook_configuration()
    kube.run()
    ca, old_cert, old_bundle = kube.data("ca.crt"), kube.data("tls.crt"), kube.bundles()
    result = kube.run(now=NOW + dt.timedelta(days=365 - 29))
    assert result.secret == "renewed"
    assert kube.data("ca.crt") == ca
    assert kube.data("tls.crt") != old_cert
    assert result.webhook == "unchanged"
    assert kube.bundles() == old_bundle


def test_a_serving_certificate_with_time_left_is_kept(kube: Kube) -> None:
    kube.run()
    old_cert = kube.data("tls.crt")
    result = kube.run(now=NOW + dt.timedelta(days=365 - 31))
    assert result.secret == "unchanged"
    assert kube.data("tls.crt") == old_cert


def test_a_serving_certificate_missing_a_requested_name_is_reissued(kube: Kube) -> None:
    kube.run()
    wider = BootstrapRequest(**{**kube.request.__dict__, "extra_sans": ("swapper.example.com",)})
    assert kube.run(wider).secret == "renewed"
    cert = x509.load_pem_x509_certificate(kube.data("tls.crt"))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "swapper.example.com" in names.get_values_for_type(x509.DNSName)


def test_a_key_that_does_not_match_the_certificate_is_reissued(kube: Kube) -> None:
    kube.run()
    secret = kube.secret()
    secret["data"]["tls.key"] = base64.b64encode(certs.generate("x", "y").key_pem).decode()
    kube.core.replace_namespaced_secret(SECRET, kube.namespace, secret)
    result = kube.run()
    assert result.secret == "renewed"
    assert "tls.key does not match" in result.reason


def seed_short_lived_pair(kube: Kube) -> x509.Certificate:
    """A Secret whose CA (300 days left) would expire before a new 365-day certificate."""
    made = certs.generate("swapper", kube.namespace, days=60)
    kube.core.create_namespaced_secret(kube.namespace, tls_secret(made, kube.namespace))
    return x509.load_pem_x509_certificate(made.ca_cert_pem)


def test_a_ca_close_to_expiry_is_replaced_and_the_bundle_trusts_both_cas(kube: Kube) -> None:
    kube.add_webhook_configuration()
    old_ca = seed_short_lived_pair(kube)
    result = kube.run()
    assert result.secret == "ca-rotated"
    new_ca = x509.load_pem_x509_certificate(kube.data("ca.crt"))
    assert new_ca != old_ca
    assert kube.bundle_certificates() == [new_ca, old_ca]


def test_the_previous_ca_stays_in_the_bundle_during_the_grace_period(kube: Kube) -> None:
    kube.add_webhook_configuration()
    seed_short_lived_pair(kube)
    kube.run()
    result = kube.run(now=NOW + PREVIOUS_CA_GRACE - dt.timedelta(minutes=1))
    assert (result.secret, result.webhook) == ("unchanged", "unchanged")
    assert len(kube.bundle_certificates()) == 2


def test_the_previous_ca_leaves_the_bundle_after_the_grace_period(kube: Kube) -> None:
    kube.add_webhook_configuration()
    seed_short_lived_pair(kube)
    kube.run()
    new_ca = x509.load_pem_x509_certificate(kube.data("ca.crt"))
    result = kube.run(now=NOW + PREVIOUS_CA_GRACE + dt.timedelta(minutes=1))
    assert (result.secret, result.webhook) == ("updated", "patched")
    assert kube.bundle_certificates() == [new_ca]
    assert "ca-previous.crt" not in kube.secret()["data"]


def test_a_secret_of_another_type_is_refused_and_left_untouched(kube: Kube) -> None:
    kube.core.create_namespaced_secret(
        kube.namespace, {"metadata": {"name": SECRET}, "data": {"x": "eQ=="}}
    )
    with pytest.raises(KubeError, match="type 'Opaque'"):
        kube.run()
    assert kube.secret()["data"] == {"x": "eQ=="}
    assert kube.secret_writes() == ["create"]  # ours, and nothing since


def test_a_missing_webhook_configuration_is_reported_and_not_an_error(kube: Kube) -> None:
    result = kube.run()
    assert (result.secret, result.webhook) == ("created", "missing")


def test_a_webhook_configuration_that_never_calls_the_service_is_an_error(kube: Kube) -> None:
    kube.add_webhook_configuration(("other", "elsewhere"))
    with pytest.raises(KubeError, match=f"no webhook calling service {kube.namespace}/swapper"):
        kube.run()


def test_an_empty_webhook_name_leaves_webhook_configurations_alone(kube: Kube) -> None:
    kube.add_webhook_configuration()
    result = kube.run(BootstrapRequest(namespace=kube.namespace, service="swapper", secret=SECRET))
    assert result.webhook == "skipped"
    assert kube.bundles() == [None]


def test_a_forbidden_answer_names_the_object_and_points_at_rbac(
    kube: Kube, account: Callable[..., Path]
) -> None:
    nobody = account(kube.namespace, "nobody")  # a real account, with no binding at all
    where = f"{kube.namespace}/{SECRET}"
    with pytest.raises(KubeError, match=rf"read Secret {where}: HTTP 403 Forbidden.*RBAC"):
        kube.run(kubeconfig=nobody)


def test_renewing_before_the_validity_ends_is_required() -> None:
    with pytest.raises(CertificateError, match="renew-before-days"):
        BootstrapRequest(namespace="a", service="b", secret="c", days=30, renew_before_days=30)


# -- the command line, as the chart's Job runs it -------------------------------------------------


def bootstrap_cli(
    kubeconfig: Path, namespace: str, *extra: str
) -> subprocess.CompletedProcess[str]:
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
            namespace,
            "--service",
            "swapper",
            "--secret",
            SECRET,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_creates_the_secret_and_sets_the_bundle_through_a_kubeconfig(
    kube: Kube,
) -> None:
    kube.add_webhook_configuration()
    result = bootstrap_cli(
        kube.cluster.admin_kubeconfig, kube.namespace, "--webhook", kube.webhook, "--label", "a=b"
    )
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"secret {kube.namespace}/{SECRET}: created (new CA;")
    assert "caBundle set on hook0.swapper.io" in result.stdout
    assert kube.secret()["metadata"]["labels"] == {"a": "b"}
    assert kube.bundles() == [kube.data("ca.crt")]


def test_the_command_prints_no_key_material(kube: Kube) -> None:
    result = bootstrap_cli(kube.cluster.admin_kubeconfig, kube.namespace)
    assert result.returncode == 0, result.stderr
    secret = kube.secret()["data"]
    output = result.stdout + result.stderr
    assert "PRIVATE KEY" not in output
    assert "BEGIN" not in output
    for value in secret.values():
        assert value[:40] not in output


def test_the_command_exits_2_with_the_reason_when_it_cannot_proceed(kube: Kube) -> None:
    kube.core.create_namespaced_secret(kube.namespace, {"metadata": {"name": SECRET}})
    result = bootstrap_cli(kube.cluster.admin_kubeconfig, kube.namespace)
    assert result.returncode == 2
    assert f"swapper: Secret {kube.namespace}/{SECRET} exists with type 'Opaque'" in result.stderr


def test_the_command_exits_2_naming_the_object_when_the_api_server_is_unreachable(
    tmp_path: Path,
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                # a port nothing listens on: every connection is refused
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    result = bootstrap_cli(kubeconfig, "ops")
    assert result.returncode == 2
    assert result.stderr.startswith("swapper: read Secret ops/swapper-tls: ")


# -- on the fake: the exact patch, and a writer between the read and the write --------------------

REQUEST = BootstrapRequest(namespace="ops", service="swapper", secret=SECRET, webhook="swapper")


def fake_run(fake: FakeKubeAPI, now: dt.datetime = NOW) -> BootstrapResult:
    client = fake.api_client()
    try:
        return bootstrap(client, REQUEST, now=now)
    finally:
        client.close()


def fake_secret(fake: FakeKubeAPI) -> dict[str, Any]:
    found = fake.get("secrets", SECRET, "ops")
    assert found is not None
    return found


def test_the_ca_bundle_is_set_with_a_json_patch_conditional_on_the_version_read(
    kube_api: FakeKubeAPI,
) -> None:
    body = webhook_configuration("swapper", (("ops", "swapper"),))
    version = kube_api.put(WEBHOOKS, body, GROUP)["metadata"]["resourceVersion"]
    fake_run(kube_api)
    patch = next(
        r for r in kube_api.writes() if r.path.endswith("/swapper") and r.method == "PATCH"
    )
    assert patch.content_type == "application/json-patch+json"
    assert patch.body[0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": version}


def test_a_secret_changed_between_read_and_write_is_re_read_and_written_again(
    kube_api: FakeKubeAPI,
) -> None:
    fake_run(kube_api)
    path = f"/api/v1/namespaces/ops/secrets/{SECRET}"

    def concurrent_writer() -> None:
        secret = fake_secret(kube_api)
        secret["metadata"].setdefault("annotations", {})["someone"] = "else"
        kube_api.put("secrets", secret)

    kube_api.before("PATCH", path, concurrent_writer)
    result = fake_run(kube_api, now=NOW + dt.timedelta(days=350))
    assert result.secret == "renewed"
    patches = [r for r in kube_api.writes() if r.method == "PATCH" and r.path == path]
    assert len(patches) == 2  # the first answered 409 Conflict
    assert fake_secret(kube_api)["metadata"]["annotations"]["someone"] == "else"


def test_a_secret_created_by_a_concurrent_run_is_reused(kube_api: FakeKubeAPI) -> None:
    made = certs.generate("swapper", "ops")  # what a parallel Job creates just before our create
    kube_api.before(
        "POST",
        "/api/v1/namespaces/ops/secrets",
        lambda: kube_api.put("secrets", tls_secret(made, "ops")),
    )
    result = fake_run(kube_api)
    assert result.secret == "unchanged"
    assert base64.b64decode(fake_secret(kube_api)["data"]["tls.crt"]) == made.cert_pem
