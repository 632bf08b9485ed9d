"""The two certificate modes: swapper's own bootstrap Job, or cert-manager. Never both."""

from __future__ import annotations

import pytest
from chart.rendering import Rendered, annotations, render, render_error

from swapper import certs

CERT_MANAGER_KINDS = {"Issuer", "Certificate"}
JOB_KINDS = {"Job", "CronJob"}


def kinds(rendered: Rendered) -> set[str]:
    return {o["kind"] for o in rendered}


def job_args(rendered: Rendered) -> list[str]:
    return rendered.one("Job")["spec"]["template"]["spec"]["containers"][0]["args"]  # type: ignore[no-any-return]


def test_job_mode_is_the_default_and_renders_no_cert_manager_object() -> None:
    rendered = render()
    assert kinds(rendered) >= JOB_KINDS
    assert not CERT_MANAGER_KINDS & kinds(rendered)


def test_cert_manager_mode_renders_no_job_and_no_job_identity() -> None:
    rendered = render(file="cert-manager")
    assert kinds(rendered) >= CERT_MANAGER_KINDS
    assert not JOB_KINDS & kinds(rendered)
    assert not rendered.hooks()
    assert not [
        o
        for o in rendered
        if "cert" in o["metadata"]["name"] and o["kind"] in ("Role", "ClusterRole")
    ]


def test_the_job_runs_swapper_certs_bootstrap_from_the_swapper_image() -> None:
    rendered = render()
    container = rendered.one("Job")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == rendered.container["image"]
    assert container["args"][:2] == ["certs", "bootstrap"]


def test_the_job_converges_the_service_secret_and_webhook_the_chart_renders() -> None:
    rendered = render()
    args = dict(a.removeprefix("--").split("=", 1) for a in job_args(rendered)[2:] if "=" in a)
    tls_volume = next(v for v in rendered.pod["volumes"] if v["name"] == "tls")
    assert args["namespace"] == "swapper-system"
    assert args["service"] == rendered.one("Service")["metadata"]["name"]
    assert args["secret"] == tls_volume["secret"]["secretName"]
    assert args["webhook"] == rendered.one("MutatingWebhookConfiguration")["metadata"]["name"]


def test_the_job_runs_before_and_after_every_install_and_upgrade() -> None:
    hook = annotations(render().one("Job"))
    assert hook["helm.sh/hook"].split(",") == [
        "pre-install",
        "pre-upgrade",
        "post-install",
        "post-upgrade",
    ]


def test_the_jobs_identity_is_created_before_the_job() -> None:
    rendered = render()
    job_weight = int(annotations(rendered.one("Job"))["helm.sh/hook-weight"])
    identity = [o for o in rendered.hooks() if o["kind"] != "Job"]
    assert {o["kind"] for o in identity} == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
    }
    for obj in identity:
        assert annotations(obj)["helm.sh/hook"] == annotations(rendered.one("Job"))["helm.sh/hook"]
        assert int(annotations(obj)["helm.sh/hook-weight"]) < job_weight


def test_hook_objects_are_deleted_after_success_and_replaced_on_the_next_run() -> None:
    for obj in render().hooks():
        policies = annotations(obj)["helm.sh/hook-delete-policy"].split(",")
        assert policies == ["before-hook-creation", "hook-succeeded"], obj["metadata"]["name"]


def test_the_job_pod_uses_the_job_service_account() -> None:
    spec = render().one("Job")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "swapper-certificates"
    assert spec["restartPolicy"] == "Never"


def test_a_daily_cronjob_renews_the_certificate_without_an_upgrade() -> None:
    rendered = render()
    cronjob = rendered.one("CronJob")
    assert cronjob["spec"]["schedule"] == "17 3 * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == job_args(rendered)
    assert "helm.sh/hook" not in annotations(cronjob)


def test_the_renewal_cronjob_can_be_turned_off() -> None:
    rendered = render({"certificates": {"job": {"renewal": {"enabled": False}}}})
    assert not rendered.has("CronJob")
    assert not [o for o in rendered if o["metadata"]["name"] == "swapper-cert-renewal"]


def test_validity_and_renewal_window_reach_the_job() -> None:
    args = job_args(render({"certificates": {"job": {"validityDays": 90, "renewBeforeDays": 20}}}))
    assert "--days=90" in args and "--renew-before-days=20" in args


def test_cert_manager_mode_builds_a_self_signed_ca_that_issues_the_serving_certificate() -> None:
    rendered = render(file="cert-manager")
    selfsigned = rendered.one("Issuer", "swapper-selfsigned")
    ca_certificate = rendered.one("Certificate", "swapper-ca")
    ca_issuer = rendered.one("Issuer", "swapper-ca")
    serving = rendered.one("Certificate", "swapper")
    assert selfsigned["spec"] == {"selfSigned": {}}
    assert ca_certificate["spec"]["isCA"] is True
    assert ca_certificate["spec"]["duration"] == "43800h"  # 5 years
    assert ca_certificate["spec"]["issuerRef"]["name"] == "swapper-selfsigned"
    assert ca_issuer["spec"]["ca"]["secretName"] == ca_certificate["spec"]["secretName"]
    assert serving["spec"]["issuerRef"] == {
        "name": "swapper-ca",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }


@pytest.mark.parametrize("name", ["cert-manager", "everything"])
def test_the_serving_certificate_covers_every_name_of_the_service(name: str) -> None:
    rendered = render(file=name)
    serving = rendered.one("Certificate", "swapper")
    service = rendered.one("Service")["metadata"]["name"]
    assert serving["spec"]["dnsNames"] == certs.service_dns_names(service, "swapper-system")
    assert serving["spec"]["usages"] == ["server auth", "digital signature"]


def test_the_pods_mount_the_secret_the_serving_certificate_writes() -> None:
    rendered = render(file="cert-manager")
    tls = next(v for v in rendered.pod["volumes"] if v["name"] == "tls")
    assert (
        tls["secret"]["secretName"] == rendered.one("Certificate", "swapper")["spec"]["secretName"]
    )


def test_a_user_issuer_replaces_the_chart_made_ca() -> None:
    rendered = render(file="everything")
    assert not rendered.has("Issuer")
    assert [c["metadata"]["name"] for c in rendered.all("Certificate")] == ["swapper"]
    assert rendered.one("Certificate")["spec"]["issuerRef"] == {
        "name": "internal-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


def test_cert_manager_renews_the_serving_certificate_a_month_before_it_expires() -> None:
    spec = render(file="cert-manager").one("Certificate", "swapper")["spec"]
    assert (spec["duration"], spec["renewBefore"]) == ("2160h", "720h")
    assert spec["privateKey"]["rotationPolicy"] == "Always"


def test_an_unknown_certificate_provider_is_refused() -> None:
    assert "at '/certificates/provider'" in render_error({"certificates": {"provider": "both"}})


def test_the_tls_secret_name_can_be_chosen() -> None:
    rendered = render({"certificates": {"secretName": "webhook-tls"}})
    assert "--secret=webhook-tls" in job_args(rendered)
    tls = next(v for v in rendered.pod["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == "webhook-tls"


def test_extra_sans_are_passed_to_the_bootstrap_job() -> None:
    rendered = render({"certificates": {"extraSANs": ["swapper.internal.example.org", "10.0.4.7"]}})
    sans = [a for a in job_args(rendered) if a.startswith("--san=")]
    assert sans == ["--san=swapper.internal.example.org", "--san=10.0.4.7"]


def test_without_extra_sans_the_job_names_only_the_service() -> None:
    assert not [a for a in job_args(render()) if a.startswith("--san")]


def test_extra_sans_reach_the_cert_manager_certificate_as_dns_names_and_ip_addresses() -> None:
    rendered = render(
        {"certificates": {"extraSANs": ["swapper.internal.example.org", "10.0.4.7", "fd00::7"]}},
        file="cert-manager",
    )
    spec = rendered.one("Certificate", "swapper")["spec"]
    service = rendered.one("Service")["metadata"]["name"]
    expected = [*certs.service_dns_names(service, "swapper-system"), "swapper.internal.example.org"]
    assert spec["dnsNames"] == expected
    assert spec["ipAddresses"] == ["10.0.4.7", "fd00::7"]


def test_an_extra_san_with_spaces_or_slashes_is_refused() -> None:
    message = render_error({"certificates": {"extraSANs": ["https://swapper.example.org/"]}})
    assert "extraSANs" in message
