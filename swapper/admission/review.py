"""AdmissionReview wire types, parsing, and the pure ``build_response``.

Both ``admission.k8s.io/v1`` and ``v1beta1`` are read; the response is written in the version
the request came in. Anything that is not an AdmissionReview raises :class:`AdmissionError`,
which the app answers with HTTP 400 and a JSON error.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict, get_args

import orjson

from swapper.errors import AdmissionError
from swapper.pods import Container, containers, pull_secret_names

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)


class PatchOperation(TypedDict):
    op: Literal["add", "replace", "remove"]
    path: str
    value: NotRequired[Any]


class ResponseStatus(TypedDict, total=False):
    code: int
    message: str


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]
    warnings: NotRequired[list[str]]
    auditAnnotations: NotRequired[dict[str, str]]
    status: NotRequired[ResponseStatus]


class AdmissionReviewResponse(TypedDict):
    apiVersion: str
    kind: Literal["AdmissionReview"]
    response: AdmissionResponse


class Mode(StrEnum):
    """How one request is answered; :meth:`Review.mode` works it out once per request."""

    ENFORCE = "enforce"  # patch (or deny) the pod; copy images, write the target pull secret
    AUDIT = "audit"  # the config's dryRun: decide and report, change nothing
    SERVER_DRY_RUN = "server-dry-run"  # the request's dryRun: answer as enforcing, no side effects

    @property
    def side_effects(self) -> bool:
        """Whether answering may leave something behind: a copy, a pull secret written."""
        return self is Mode.ENFORCE

    @property
    def enforces(self) -> bool:
        """Whether the answer patches or denies the pod; in audit it only reports what it would
        have done."""
        return self is not Mode.AUDIT


@dataclass(slots=True)  # per request: plain init is cheaper; never mutated
class Review:
    """The parts of an AdmissionReview request swapper uses."""

    api_version: str
    uid: str
    kind: str  # request.kind.kind, e.g. "Pod"
    resource: str  # request.resource.resource, e.g. "pods"
    sub_resource: str  # "" or e.g. "ephemeralcontainers"
    operation: Operation | None  # None: absent, or not one of the four (changes nothing)
    namespace: str
    name: str
    dry_run: bool
    object: dict[str, Any]
    old_object: dict[str, Any] | None

    def mode(self, audit: bool) -> Mode:
        """The mode this request is answered in; ``audit`` is the config's ``dryRun``, which
        wins over the request's own ``dryRun``."""
        if audit:
            return Mode.AUDIT
        return Mode.SERVER_DRY_RUN if self.dry_run else Mode.ENFORCE


def parse_review(body: bytes) -> Review:
    """Parse a request body. Raises :class:`AdmissionError` with a reason a human can act on."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise AdmissionError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AdmissionError("body is not a JSON object")
    if doc.get("kind") != "AdmissionReview":
        raise AdmissionError("kind must be AdmissionReview")
    api_version = doc.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise AdmissionError(f"apiVersion must be one of {', '.join(API_VERSIONS)}")
    request = doc.get("request")
    if not isinstance(request, dict):
        raise AdmissionError("request is missing or not an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise AdmissionError("request.uid is missing")
    kind = request.get("kind") or {}
    resource = request.get("resource") or {}
    obj = request.get("object")
    old = request.get("oldObject")
    if not isinstance(kind, dict) or not isinstance(resource, dict):
        raise AdmissionError("request.kind and request.resource must be objects")
    if obj is not None and not isinstance(obj, dict):
        raise AdmissionError("request.object must be an object")
    operation = request.get("operation")
    return Review(
        api_version=api_version,
        uid=uid,
        kind=str(kind.get("kind") or ""),
        resource=str(resource.get("resource") or ""),
        sub_resource=str(request.get("subResource") or ""),
        operation=operation if operation in OPERATIONS else None,
        namespace=str(request.get("namespace") or ""),
        name=str(request.get("name") or ""),
        dry_run=request.get("dryRun") is True,
        object=obj or {},
        old_object=old if isinstance(old, dict) else None,
    )


def build_response(
    api_version: str,
    uid: str,
    patch: list[PatchOperation] | None = None,
    warnings: list[str] | None = None,
    audit_annotations: dict[str, str] | None = None,
) -> AdmissionReviewResponse:
    """The AdmissionReview answer that allows the request; a patch only when there is one."""
    response: AdmissionResponse = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode("ascii")
    if warnings:
        response["warnings"] = warnings
    if audit_annotations:
        response["auditAnnotations"] = audit_annotations
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


def deny_response(
    api_version: str,
    uid: str,
    message: str,
    warnings: list[str] | None = None,
    audit_annotations: dict[str, str] | None = None,
) -> AdmissionReviewResponse:
    """The answer that refuses the request: HTTP 403 with ``message`` for the user."""
    answer = build_response(api_version, uid, None, warnings, audit_annotations)
    answer["response"]["allowed"] = False
    answer["response"]["status"] = {"code": 403, "message": message}
    return answer


def containers_of(review: Review) -> list[Container]:
    """The containers this request may change.

    CREATE: every container. UPDATE of the ``ephemeralcontainers`` subresource: only ephemeral
    containers that are new in this request (the API server rejects changes to existing ones).
    Anything else: none. Raises :class:`~swapper.errors.MalformedPod` for a pod of the wrong
    shape.
    """
    if review.operation == "CREATE" and not review.sub_resource:
        return containers(review.object)
    if review.operation == "UPDATE" and review.sub_resource == "ephemeralcontainers":
        old_spec = (review.old_object or {}).get("spec") or {}
        existing = {
            c.get("name", "")
            for c in old_spec.get("ephemeralContainers") or []
            if isinstance(c, dict)
        }
        return containers(review.object, ("ephemeralContainers",), existing)
    if not isinstance(review.object.get("spec"), dict):
        return containers(review.object)  # raises MalformedPod, as for the other operations
    return []


def secret_frozen(review: Review, pull_secret: str | None) -> bool:
    """Whether the pod's ``imagePullSecrets`` cannot change in this request (an
    ephemeral-container update) while it lacks the target pull secret ``pull_secret``."""
    return (
        review.operation == "UPDATE"
        and pull_secret is not None
        and pull_secret not in pull_secret_names(review.object)
    )
