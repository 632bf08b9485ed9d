"""estahn/k8s-image-swapper's own sample config and AdmissionReview fixtures, used unchanged.

The files in ``fixtures/k8s-image-swapper/`` are copies of the reference project's sample config
(``k8s-image-swapper.yml``), two AdmissionReviews from its webhook tests and the one its
``curl.sh`` posts. A drop-in replacement must load the sample, explain each fixture's pod and
answer each fixture on both ``/mutate`` and ``/webhook`` (the reference chart's path).

The sample's ``accountId: 123456789`` is a YAML number; swapper pads it to 12 digits, so its
target registry is ``000123456789.dkr.ecr.ap-southeast-2.amazonaws.com`` (docs/migrating.md).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import FIXTURES
from moto_ecr import running_moto
from webhook_process import Webhook, start_webhook, stop

from swapper.pods import ORIGINAL_IMAGES

REFERENCE = FIXTURES / "k8s-image-swapper"
SAMPLE = REFERENCE / "k8s-image-swapper.yml"
REVIEWS = sorted(REFERENCE.glob("*.json"))
FIELDS = ("initContainers", "containers", "ephemeralContainers")
ECR = "000123456789.dkr.ecr.ap-southeast-2.amazonaws.com"
NINE_DIGIT_ECR = "123456789.dkr.ecr.ap-southeast-2.amazonaws.com"
INGRESS = "k8s.gcr.io/ingress-nginx/controller"
DIGEST = "sha256:9bba603b99bf25f6d117cf1235b6598c16033ad027b143c90fa5b3cc583c5713"
# The reference's fixture pods, container by container (init containers first).
CONTAINERS = {
    "admissionreview-simple": [
        "initContainers[init-container28]",
        "containers[nginx28]",
        "containers[ingress-nginx28]",
        "containers[skip-test-ecr]",
        "containers[skip-test-gar]",
    ],
    "admissionreview-imagepullsecrets": ["containers[nginx28]"],
    "curl-sh": ["containers[nginx28]"],
}


def swapper(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swapper", *args], capture_output=True, text=True, timeout=60
    )


def review_of(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def decisions(stdout: str) -> list[str]:
    """``swapper explain``'s container lines (notes about what it did not ask are left out)."""
    return [line for line in stdout.splitlines() if line.split("[", 1)[0] in FIELDS]


def pod_file(review: Path, folder: Path) -> Path:
    """The fixture's pod as a manifest of its own, for ``swapper explain --pod``."""
    pod = folder / f"{review.stem}.pod.json"
    pod.write_text(json.dumps(review_of(review)["request"]["object"]))
    return pod


def test_the_fixtures_are_the_reference_projects_files_unchanged() -> None:
    shared = Path(__file__).parents[2] / "shared" / "reference" / "k8s-image-swapper-fixtures"
    if not shared.is_dir():
        pytest.skip("no shared/reference beside this clone")
    for original in sorted(shared.iterdir()):
        assert (REFERENCE / original.name).read_bytes() == original.read_bytes(), original.name
    assert {p.name for p in REFERENCE.iterdir()} == {p.name for p in shared.iterdir()}


def test_check_config_accepts_the_reference_sample_config() -> None:
    result = swapper("check-config", str(SAMPLE))
    assert result.returncode == 0, result.stderr
    effective = yaml.safe_load(result.stdout)
    assert effective["dryRun"] is True
    assert effective["imageSwapPolicy"] == "exists"
    assert effective["imageCopyPolicy"] == "delayed"
    assert effective["imageCopyDeadline"] in (8, "8s")  # the default: the sample sets none
    assert effective["source"]["filters"] == [
        {"jmespath": "obj.metadata.namespace == 'kube-system'"}
    ]
    aws = effective["target"]["aws"]
    assert effective["target"]["type"] == "aws"
    assert (aws["accountId"], aws["region"]) == ("000123456789", "ap-southeast-2")
    assert aws["role"] == "arn:aws:iam::123456789012:role/roleName"
    options = aws["ecrOptions"]
    assert options["tags"] == [
        {"key": "CreatedBy", "value": "k8s-image-swapper"},
        {"key": "AnotherTag", "value": "another-tag"},
    ]
    assert options["imageTagMutability"] == "MUTABLE"
    assert options["imageScanningConfiguration"] == {"imageScanOnPush": True}
    assert options["encryptionConfiguration"]["encryptionType"] == "AES256"
    assert json.loads(options["accessPolicy"])["Statement"][0]["Sid"] == "AllowCrossAccountPull"
    assert json.loads(options["lifecyclePolicy"])["rules"][0]["rulePriority"] == 1


@pytest.mark.parametrize("review", REVIEWS, ids=lambda p: p.stem)
def test_explain_decides_every_container_of_each_reference_fixture_pod(
    review: Path, tmp_path: Path
) -> None:
    result = swapper("explain", "--config", str(SAMPLE), "--pod", str(pod_file(review, tmp_path)))
    assert result.returncode == 0, result.stderr
    lines = decisions(result.stdout)
    assert [line.split(":", 1)[0] for line in lines] == CONTAINERS[review.stem]
    assert f"containers[nginx28]: would swap nginx -> {ECR}/docker.io/library/nginx:latest" in lines


def test_explain_keeps_the_tag_next_to_the_digest_for_the_reference_fixture_images(
    tmp_path: Path,
) -> None:
    review = REFERENCE / "admissionreview-simple.json"
    result = swapper("explain", "--config", str(SAMPLE), "--pod", str(pod_file(review, tmp_path)))
    assert result.returncode == 0, result.stderr
    lines = decisions(result.stdout)
    ingress = f"k8s.gcr.io/ingress-nginx/controller:v0.43.0@{DIGEST}"
    gar = f"us-central1-docker.pkg.dev/gcp-project-123/main/{INGRESS}@{DIGEST}"
    assert f"containers[ingress-nginx28]: would swap {ingress} -> {ECR}/{ingress}" in lines
    assert f"containers[skip-test-gar]: would swap {gar} -> {ECR}/{gar}" in lines


def test_explain_treats_the_fixtures_nine_digit_ecr_registry_as_a_source_not_the_target(
    tmp_path: Path,
) -> None:
    # The reference pads nothing, so its target is 123456789.dkr.ecr...; swapper's is
    # 000123456789.dkr.ecr..., and the fixture's "skip-test-ecr" image is another registry.
    review = REFERENCE / "admissionreview-simple.json"
    result = swapper("explain", "--config", str(SAMPLE), "--pod", str(pod_file(review, tmp_path)))
    assert result.returncode == 0, result.stderr
    ecr = f"{NINE_DIGIT_ECR}/{INGRESS}:v0.43.0@{DIGEST}"
    assert f"containers[skip-test-ecr]: would swap {ecr} -> {ECR}/{ecr}" in decisions(result.stdout)


@pytest.fixture(scope="module")
def sample_webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    """``swapper serve`` on the sample config, unchanged; the ECR and STS APIs are moto's
    (through the standard ``AWS_ENDPOINT_URL_*`` settings), no Kubernetes API."""
    with running_moto() as moto:
        env = {
            **moto.environment(),
            "AWS_ENDPOINT_URL_ECR": moto.url,
            "KUBECONFIG": "",
            "KUBERNETES_SERVICE_HOST": "",
        }
        hook = start_webhook(tmp_path_factory.mktemp("reference"), SAMPLE, env=env)
        try:
            yield hook
        finally:
            stop(hook)


@pytest.mark.parametrize("path", ["/mutate", "/webhook"])
@pytest.mark.parametrize("review", REVIEWS, ids=lambda p: p.stem)
def test_the_sample_config_served_answers_each_reference_fixture_in_audit_mode(
    sample_webhook: Webhook, review: Path, path: str
) -> None:
    with sample_webhook.client() as client:
        answer = client.post(path, content=review.read_bytes())
    assert answer.status_code == 200
    body = answer.json()
    assert (body["apiVersion"], body["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    response = body["response"]
    assert response["uid"] == review_of(review)["request"]["uid"]
    assert response["allowed"] is True
    assert "patch" not in response  # the sample has dryRun: true
    assert [w.split(":", 1)[0] for w in response["warnings"]] == CONTAINERS[review.stem]
    decided = ",".join(response["auditAnnotations"].values()).split(",")
    names = [c.split("[", 1)[1].rstrip("]") for c in CONTAINERS[review.stem]]
    assert sorted(entry.split("=", 1)[0] for entry in decided) == sorted(names)


@pytest.fixture(scope="module")
def enforcing_webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    """The sample config with only what makes it enforce without any registry: no dry run,
    swap always, copy none, no access check (the sample images are not reachable here)."""
    tmp = tmp_path_factory.mktemp("reference-enforcing")
    config = yaml.safe_load(SAMPLE.read_text())
    config.update(dryRun=False, imageSwapPolicy="always", imageCopyPolicy="none")
    config["source"]["checkAccess"] = False
    path = tmp / "enforcing.yml"
    path.write_text(yaml.safe_dump(config))
    with running_moto() as moto:
        env = {
            **moto.environment(),
            "AWS_ENDPOINT_URL_ECR": moto.url,
            "KUBECONFIG": "",
            "KUBERNETES_SERVICE_HOST": "",
        }
        hook = start_webhook(tmp, path, env=env)
        try:
            yield hook
        finally:
            stop(hook)


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The image and pull-secret operations (the originals annotation checked on its own)."""
    ops = list(json.loads(base64.b64decode(answer["response"]["patch"])))
    return [op for op in ops if not op["path"].startswith("/metadata/annotations")]


def originals_of(answer: dict[str, Any]) -> dict[str, str]:
    ops = json.loads(base64.b64decode(answer["response"]["patch"]))
    [op] = [op for op in ops if op["path"] == "/metadata/annotations"]
    return dict(json.loads(op["value"][ORIGINAL_IMAGES]))


@pytest.mark.parametrize("path", ["/mutate", "/webhook"])
def test_the_reference_simple_fixture_is_patched_to_ecr_keeping_tag_and_digest(
    enforcing_webhook: Webhook, path: str
) -> None:
    review = REFERENCE / "admissionreview-simple.json"
    with enforcing_webhook.client() as client:
        answer = client.post(path, content=review.read_bytes())
    assert answer.status_code == 200
    patch = {op["path"]: op["value"] for op in patch_of(answer.json())}
    ingress = f"k8s.gcr.io/ingress-nginx/controller:v0.43.0@{DIGEST}"
    assert patch == {
        "/spec/initContainers/0/image": f"{ECR}/docker.io/library/init-container:latest",
        "/spec/containers/0/image": f"{ECR}/docker.io/library/nginx:latest",
        "/spec/containers/1/image": f"{ECR}/{ingress}",
        "/spec/containers/2/image": f"{ECR}/{NINE_DIGIT_ECR}/{ingress}",
        "/spec/containers/3/image": f"{ECR}/us-central1-docker.pkg.dev/gcp-project-123/main/"
        f"k8s.gcr.io/ingress-nginx/controller@{DIGEST}",
    }


@pytest.mark.parametrize("path", ["/mutate", "/webhook"])
def test_the_reference_pull_secret_fixture_keeps_the_pods_own_pull_secret(
    enforcing_webhook: Webhook, path: str
) -> None:
    review = REFERENCE / "admissionreview-imagepullsecrets.json"
    with enforcing_webhook.client() as client:
        answer = client.post(path, content=review.read_bytes())
    assert answer.status_code == 200
    patch = patch_of(answer.json())
    assert patch == [
        {
            "op": "replace",
            "path": "/spec/containers/0/image",
            "value": f"{ECR}/docker.io/library/nginx:latest",
        }
    ]
    assert originals_of(answer.json()) == {"nginx28": "nginx"}
