from __future__ import annotations

import base64
import json

import orjson
import pytest

from swapper.admission.review import Mode, build_response, parse_review
from swapper.errors import AdmissionError


def body(**request: object) -> bytes:
    doc = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "abc",
            "kind": {"kind": "Pod"},
            "resource": {"resource": "pods"},
            "operation": "CREATE",
            "namespace": "ns",
            "object": {"spec": {}},
            **request,
        },
    }
    return json.dumps(doc).encode()


def test_a_v1_review_is_parsed() -> None:
    review = parse_review(body(dryRun=True, subResource="ephemeralcontainers"))
    assert (review.uid, review.kind, review.namespace, review.dry_run) == ("abc", "Pod", "ns", True)
    assert review.sub_resource == "ephemeralcontainers"


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE", "DELETE", "CONNECT"])
def test_each_admission_operation_is_read_as_itself(operation: str) -> None:
    assert parse_review(body(operation=operation)).operation == operation


@pytest.mark.parametrize("operation", ["PATCH", "create", "", 1, None])
def test_an_operation_that_is_none_of_the_four_is_read_as_none(operation: object) -> None:
    assert parse_review(body(operation=operation)).operation is None


def test_a_review_without_an_operation_is_read_with_none() -> None:
    doc = json.loads(body())
    del doc["request"]["operation"]
    assert parse_review(json.dumps(doc).encode()).operation is None


@pytest.mark.parametrize(
    ("audit", "request_dry_run", "mode"),
    [
        (False, False, Mode.ENFORCE),
        (False, True, Mode.SERVER_DRY_RUN),
        (True, False, Mode.AUDIT),
        (True, True, Mode.AUDIT),
    ],
)
def test_the_mode_follows_both_dry_runs_the_configs_winning(
    audit: bool, request_dry_run: bool, mode: Mode
) -> None:
    assert parse_review(body(dryRun=request_dry_run)).mode(audit) is mode


def test_only_enforcing_leaves_something_behind() -> None:
    assert [m for m in Mode if m.side_effects] == [Mode.ENFORCE]


def test_only_audit_mode_neither_patches_nor_denies() -> None:
    assert [m for m in Mode if not m.enforces] == [Mode.AUDIT]


def test_a_v1beta1_review_is_parsed_and_answered_in_kind() -> None:
    doc = json.loads(body())
    doc["apiVersion"] = "admission.k8s.io/v1beta1"
    review = parse_review(json.dumps(doc).encode())
    assert build_response(review.api_version, review.uid)["apiVersion"] == (
        "admission.k8s.io/v1beta1"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"kind": "Pod"}', "kind must be AdmissionReview"),
        (b'{"kind": "AdmissionReview", "apiVersion": "v1"}', "apiVersion must be"),
        (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}', "request is missing"),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {}}',
            "request.uid",
        ),
    ],
)
def test_a_body_that_is_not_an_admission_review_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(AdmissionError, match=message):
        parse_review(raw)


def test_a_response_without_a_patch_is_allowed_and_carries_no_patch_type() -> None:
    response = build_response("admission.k8s.io/v1", "u")["response"]
    assert response == {"uid": "u", "allowed": True}


def test_a_patch_is_base64_json_with_its_type() -> None:
    patch = [{"op": "replace", "path": "/spec/containers/0/image", "value": "x"}]
    response = build_response("admission.k8s.io/v1", "u", patch, ["w"], {"k": "v"})["response"]
    assert response["patchType"] == "JSONPatch"
    assert orjson.loads(base64.b64decode(response["patch"])) == patch
    assert response["warnings"] == ["w"]
    assert response["auditAnnotations"] == {"k": "v"}
