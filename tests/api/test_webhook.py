"""The webhook over real HTTPS: paired request/response fixtures and the endpoints around them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from helpers import FIXTURES
from webhook_process import Webhook

REQUESTS = sorted((FIXTURES / "admission").glob("*.request.json"))


def expected_response(folder: str, request: Path) -> dict[str, object]:
    name = request.name.replace(".request.json", ".response.json")
    return json.loads((FIXTURES / folder / name).read_text())


def decoded(answer: dict[str, object]) -> dict[str, object]:
    response = dict(answer["response"])  # type: ignore[arg-type]
    if "patch" in response:
        response["patch"] = json.loads(base64.b64decode(response["patch"]))
    return {**answer, "response": response}


@pytest.mark.parametrize("request_file", REQUESTS, ids=lambda p: p.name.split(".")[0])
def test_each_fixture_request_gets_its_expected_response(
    webhook: Webhook, request_file: Path
) -> None:
    with webhook.client() as client:
        answer = client.post("/mutate", content=request_file.read_bytes())
    assert answer.status_code == 200
    assert decoded(answer.json()) == expected_response("admission", request_file)


@pytest.mark.parametrize("request_file", REQUESTS, ids=lambda p: p.name.split(".")[0])
def test_in_audit_mode_each_fixture_gets_warnings_and_no_patch(
    audit_webhook: Webhook, request_file: Path
) -> None:
    with audit_webhook.client() as client:
        answer = client.post("/mutate", content=request_file.read_bytes())
    assert answer.status_code == 200
    assert "patch" not in answer.json()["response"]
    assert decoded(answer.json()) == expected_response("admission-dry-run", request_file)


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b'{"kind": "Pod"}'])
def test_a_body_that_is_not_an_admission_review_gets_400_with_a_json_error(
    webhook: Webhook, body: bytes
) -> None:
    with webhook.client() as client:
        answer = client.post("/mutate", content=body)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]


def test_health_and_readiness_answer(webhook: Webhook) -> None:
    with webhook.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}


def test_metrics_count_requests_and_decisions(webhook: Webhook) -> None:
    request = (FIXTURES / "admission" / "three-containers.request.json").read_bytes()
    with webhook.client() as client:
        client.post("/mutate", content=request)
        text = client.get("/metrics").text
    assert 'swapper_admission_requests_total{result="patched"}' in text
    assert 'swapper_container_decisions_total{decision="swapped",dry_run="false"}' in text
    assert "swapper_admission_duration_seconds_bucket" in text
    assert "swapper_tls_certificate_expiry_timestamp_seconds" in text


def test_audit_mode_counts_would_swaps_and_logs_one_line_per_decision(
    audit_webhook: Webhook,
) -> None:
    request = (FIXTURES / "admission" / "three-containers.request.json").read_bytes()
    with audit_webhook.client() as client:
        client.post("/mutate", content=request)
        text = client.get("/metrics").text
    assert 'swapper_container_decisions_total{decision="swapped",dry_run="true"}' in text
    lines = [
        json.loads(line)
        for line in audit_webhook.logs().splitlines()
        if line.startswith("{") and '"decision"' in line
    ]
    mine = [line for line in lines if line.get("uid") == "a1"]
    assert {line["container"] for line in mine} == {"migrate", "web", "metrics"}
    assert all(line["dry_run"] is True and line["reason"] == "swapped" for line in mine)
    assert all(line["namespace"] == "shop" and line["target"] for line in mine)


@pytest.mark.parametrize("request_file", REQUESTS, ids=lambda p: p.name.split(".")[0])
def test_the_reference_charts_webhook_path_gets_the_same_answer_as_mutate(
    webhook: Webhook, request_file: Path
) -> None:
    # estahn/k8s-image-swapper's MutatingWebhookConfiguration calls POST /webhook.
    with webhook.client() as client:
        answer = client.post("/webhook", content=request_file.read_bytes())
    assert answer.status_code == 200
    assert decoded(answer.json()) == expected_response("admission", request_file)


def test_a_body_that_is_not_an_admission_review_gets_400_on_the_webhook_path_too(
    webhook: Webhook,
) -> None:
    with webhook.client() as client:
        answer = client.post("/webhook", content=b"{")
    assert answer.status_code == 400
    assert answer.json()["error"]


def test_the_webhook_path_is_counted_like_mutate(webhook: Webhook) -> None:
    request = (FIXTURES / "admission" / "not-a-pod.request.json").read_bytes()

    def unchanged(text: str) -> float:
        for line in text.splitlines():
            if line.startswith('swapper_admission_requests_total{result="unchanged"}'):
                return float(line.split()[-1])
        return 0.0

    with webhook.client() as client:
        before = unchanged(client.get("/metrics").text)
        client.post("/webhook", content=request)
        after = unchanged(client.get("/metrics").text)
    assert after == before + 1
