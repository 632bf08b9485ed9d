"""The webhook's ServiceAccount carries the cloud identity (IRSA, Workload Identity)."""

from __future__ import annotations

from chart.rendering import render


def test_the_webhook_pods_run_as_the_charts_service_account() -> None:
    rendered = render()
    account = rendered.one("ServiceAccount", "swapper")
    assert rendered.pod["serviceAccountName"] == account["metadata"]["name"]


def test_ecr_with_irsa_puts_the_role_arn_on_the_service_account() -> None:
    account = render(file="ecr-irsa").one("ServiceAccount", "swapper")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/swapper"
    }


def test_ecr_cross_account_assumes_the_target_accounts_role() -> None:
    rendered = render(file="ecr-cross-account")
    aws = rendered.config["target"]["aws"]
    assert aws["accountId"] == "210987654321"
    assert aws["role"] == "arn:aws:iam::210987654321:role/swapper-mirror-writer"
    assert (
        "eks.amazonaws.com/role-arn"
        in rendered.one("ServiceAccount", "swapper")["metadata"]["annotations"]
    )


def test_gar_with_workload_identity_names_the_google_service_account() -> None:
    rendered = render(file="gar-workload-identity")
    account = rendered.one("ServiceAccount", "swapper")
    assert account["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "swapper@my-project.iam.gserviceaccount.com"
    }
    assert rendered.pod["nodeSelector"] == {
        "kubernetes.io/os": "linux",
        "iam.gke.io/gke-metadata-server-enabled": "true",
    }
    assert rendered.config["target"]["gcp"] == {
        "location": "europe-west1",
        "projectId": "my-project",
        "repositoryId": "mirror",
    }


def test_an_existing_service_account_can_be_used() -> None:
    rendered = render({"serviceAccount": {"create": False, "name": "platform-swapper"}})
    assert not [a for a in rendered.all("ServiceAccount") if a["metadata"]["name"] == "swapper"]
    assert rendered.pod["serviceAccountName"] == "platform-swapper"


def test_generic_registry_credentials_and_ca_are_mounted_where_the_config_reads_them() -> None:
    rendered = render(file="generic")
    generic = rendered.config["target"]["generic"]
    mounts = {m["name"]: m["mountPath"] for m in rendered.container["volumeMounts"]}
    assert generic["credentialsFile"].startswith(mounts["registry-credentials"] + "/")
    assert generic["caFile"].startswith(mounts["registry-ca"] + "/")
    volumes = {v["name"]: v for v in rendered.pod["volumes"]}
    assert volumes["registry-credentials"]["secret"]["secretName"] == "mirror-credentials"
