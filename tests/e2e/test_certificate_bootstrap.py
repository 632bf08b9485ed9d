"""The chart's certificate Job and renewal CronJob, run as their ServiceAccounts, for real.

The runs happen while installing (e2e/install.py), in the order Helm runs them, because they
need the webhook as the chart made it (calling the Service); these tests read what each run
printed and what the API server stored after it.
"""

from __future__ import annotations

import base64

from cryptography import x509
from e2e.install import Installed


def _certificate(secret: dict | None, key: str = "tls.crt") -> x509.Certificate:
    assert secret is not None
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"][key]))


def _bundle(webhook_configuration: dict) -> str | None:
    return webhook_configuration["webhooks"][0]["clientConfig"].get("caBundle")


def test_the_pre_install_run_creates_the_tls_secret_before_the_webhook_exists(
    installed: Installed,
) -> None:
    run = installed.runs["pre-install"]
    assert run.returncode == 0, run.output
    assert f"secret {installed.namespace}/{installed.tls_secret}: created" in run.output
    assert "not found yet" in run.output
    secret, _ = installed.stored["pre-install"]
    assert secret is not None and secret["type"] == "kubernetes.io/tls"


def test_the_post_install_run_sets_the_ca_bundle_to_the_secrets_ca(installed: Installed) -> None:
    run = installed.runs["post-install"]
    assert run.returncode == 0, run.output
    secret, webhook = installed.stored["post-install"]
    assert secret is not None
    assert "caBundle set" in run.output
    assert _bundle(webhook) == secret["data"]["ca.crt"]


def test_a_second_run_changes_nothing(installed: Installed) -> None:
    run = installed.runs["upgrade"]
    assert run.returncode == 0, run.output
    before_secret, before_webhook = installed.stored["post-install"]
    after_secret, after_webhook = installed.stored["upgrade"]
    assert before_secret is not None and after_secret is not None
    assert "unchanged" in run.output and "caBundle already current" in run.output
    same = "resourceVersion"
    assert after_secret["metadata"][same] == before_secret["metadata"][same]
    assert after_webhook["metadata"][same] == before_webhook["metadata"][same]


def test_the_serving_certificate_names_the_service_and_the_extra_sans(
    installed: Installed,
) -> None:
    secret, _ = installed.stored["post-install"]
    names = _certificate(secret).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    dns = names.value.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)]
    service = installed.rendered.one("Service")["metadata"]["name"]
    assert f"{service}.{installed.namespace}.svc" in dns
    assert ips == ["127.0.0.1"]


def test_the_renewal_cronjob_reissues_a_certificate_that_expires_soon(
    installed: Installed,
) -> None:
    run = installed.runs["renewal"]
    assert run.returncode == 0, run.output
    aged, _ = installed.stored["aged"]
    renewed, webhook = installed.stored["renewal"]
    assert "renewed" in run.output
    aged_cert, renewed_cert = _certificate(aged), _certificate(renewed)
    assert (renewed_cert.not_valid_after_utc - aged_cert.not_valid_after_utc).days > 300
    assert renewed is not None and aged is not None
    assert renewed["data"]["ca.crt"] == aged["data"]["ca.crt"]  # same CA: caBundle still valid
    assert _bundle(webhook) == renewed["data"]["ca.crt"]


def test_the_renewal_runs_as_its_own_service_account(installed: Installed) -> None:
    _, job_account = installed.container_args("Job")
    args, cron_account = installed.container_args("CronJob")
    assert cron_account != job_account
    assert installed.runs["renewal"].args == args
