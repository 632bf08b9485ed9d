"""The webhook's certificates without cert-manager: ``swapper certs bootstrap``.

The Helm chart runs this in a Job before and after every install and upgrade, and daily from a
CronJob. Each run is idempotent and converges three things:

1. **The TLS Secret** (``kubernetes.io/tls``: ``tls.crt``, ``tls.key``, ``ca.crt``, ``ca.key``)
   that the webhook pods mount. A still-valid pair is reused as it is. A serving certificate
   that expires within ``renew_before_days``, lacks one of the Service's names or was not issued
   by the stored CA is re-issued by the same CA, so the webhook's ``caBundle`` stays valid. The
   CA itself is replaced only when it is unusable or would expire before a new serving
   certificate does.
2. **The CA overlap.** When the CA is replaced, the previous CA certificate is kept in the
   Secret (``ca-previous.crt``) for :data:`PREVIOUS_CA_GRACE`, and the ``caBundle`` trusts both:
   pods still serving the old certificate (a mounted Secret reaches them within a minute or
   two, and ``swapper serve`` reloads it within 10 s) keep being trusted meanwhile. The first run
   after the grace period drops it.
3. **The ``caBundle``** of every webhook in the MutatingWebhookConfiguration that calls this
   Service, patched only when it differs. A configuration that does not exist yet (the
   pre-install run) is reported, not an error.

Writes are optimistic: every update carries the ``resourceVersion`` that was read, and a 409
Conflict (someone else wrote meanwhile) re-reads and re-plans, up to :data:`ATTEMPTS` times.
Output names objects and expiry dates, never key material.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from swapper import certs
from swapper.errors import CertificateError, Conflict, KubeError, NotFound
from swapper.kube import call_json

TLS_SECRET_TYPE = "kubernetes.io/tls"  # noqa: S105 - a Secret type, not a password
PREVIOUS_CA_GRACE = dt.timedelta(hours=1)
ATTEMPTS = 5
ROTATED_AT = "swapper.io/ca-rotated-at"
NOT_AFTER = "swapper.io/certificate-not-after"
PREVIOUS_CA_KEY = "ca-previous.crt"

SecretAction = Literal["created", "renewed", "ca-rotated", "updated", "unchanged"]
WebhookAction = Literal["patched", "unchanged", "missing", "skipped"]


@dataclass(frozen=True)
class BootstrapRequest:
    """What to converge. ``webhook`` empty: leave every webhook configuration alone."""

    namespace: str
    service: str
    secret: str
    webhook: str = ""
    extra_sans: tuple[str, ...] = ()
    days: int = 365
    renew_before_days: int = 30
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.days < 2:
            raise CertificateError("--days must be at least 2")
        if not 0 < self.renew_before_days < self.days:
            raise CertificateError("--renew-before-days must be more than 0 and less than --days")

    @property
    def names(self) -> list[str]:
        return [*certs.service_dns_names(self.service, self.namespace), *self.extra_sans]


@dataclass(frozen=True)
class SecretPlan:
    """The Secret's desired ``data`` (base64 values, ``None`` deletes a key) and why."""

    action: SecretAction
    reason: str
    data: dict[str, str | None]
    annotations: dict[str, str | None]
    ca_pem: bytes
    previous_ca_pem: bytes | None
    not_after: dt.datetime


@dataclass(frozen=True)
class BootstrapResult:
    secret: SecretAction
    reason: str
    not_after: dt.datetime
    webhook: WebhookAction
    webhooks: tuple[str, ...] = ()

    def lines(self, request: BootstrapRequest) -> list[str]:
        """What happened, for people: object names and dates only."""
        where = f"{request.namespace}/{request.secret}"
        until = self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
        out = [f"secret {where}: {self.secret} ({self.reason}; certificate valid until {until})"]
        if self.webhook == "patched":
            out.append(
                f"mutatingwebhookconfiguration {request.webhook}: caBundle set on "
                f"{', '.join(self.webhooks)}"
            )
        elif self.webhook == "unchanged":
            out.append(f"mutatingwebhookconfiguration {request.webhook}: caBundle already current")
        elif self.webhook == "missing":
            out.append(
                f"mutatingwebhookconfiguration {request.webhook}: not found yet, caBundle not set "
                "(expected before install; the post-install run sets it)"
            )
        return out


# ---------------------------------------------------------------------------------------------
# Planning: pure functions of the Secret's data and the clock


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


def _same_key(cert: x509.Certificate, key_pem: bytes) -> bool:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return False
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    public = key.public_key()
    return bool(cert.public_key().public_bytes(der, spki) == public.public_bytes(der, spki))


def _certificate(pem: bytes | None) -> x509.Certificate | None:
    if not pem:
        return None
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _usable_ca(
    data: Mapping[str, bytes | None], request: BootstrapRequest, now: dt.datetime
) -> str:
    """'' when the stored CA can sign a new serving certificate, else why not."""
    cert = _certificate(data.get("ca.crt"))
    if cert is None or not data.get("ca.key"):
        return "no CA in the Secret"
    if not _is_ca(cert):
        return "ca.crt is not a CA certificate"
    if not _same_key(cert, data.get("ca.key") or b""):
        return "ca.key does not match ca.crt"
    if cert.not_valid_before_utc > now:
        return "the CA is not valid yet"
    if cert.not_valid_after_utc < now + dt.timedelta(days=request.days):
        return "the CA expires before a new serving certificate would"
    return ""


def _usable_serving(
    data: Mapping[str, bytes | None],
    ca: x509.Certificate,
    request: BootstrapRequest,
    now: dt.datetime,
) -> str:
    """'' when the stored serving pair can be kept, else why not."""
    cert = _certificate(data.get("tls.crt"))
    if cert is None or not data.get("tls.key"):
        return "no serving certificate"
    if not _same_key(cert, data.get("tls.key") or b""):
        return "tls.key does not match tls.crt"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "the serving certificate was not issued by the stored CA"
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        present = {str(n.value) for n in sans}
    except x509.ExtensionNotFound:
        present = set()
    missing = [n for n in request.names if n not in present]
    if missing:
        return f"the serving certificate lacks {', '.join(missing)}"
    if cert.not_valid_before_utc > now + dt.timedelta(minutes=10):
        return "the serving certificate is not valid yet"
    left = cert.not_valid_after_utc - now
    if left <= dt.timedelta(days=request.renew_before_days):
        days = max(left.days, 0)
        return f"the serving certificate expires in {days} days"
    return ""


def secret_data(secret: Mapping[str, Any] | None) -> dict[str, bytes | None]:
    """The decoded ``data`` of a Secret as read from the API (``None`` when absent)."""
    raw = (secret or {}).get("data") or {}
    return {key: _unb64(value) for key, value in raw.items()}


def _rotated_at(secret: Mapping[str, Any] | None) -> dt.datetime | None:
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    try:
        return dt.datetime.fromisoformat(str(annotations[ROTATED_AT]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_secret(
    secret: Mapping[str, Any] | None, request: BootstrapRequest, now: dt.datetime
) -> SecretPlan:
    """Decide what the Secret must hold (see the module docstring)."""
    data = secret_data(secret)
    ca_problem = _usable_ca(data, request, now)
    previous_pem = data.get(PREVIOUS_CA_KEY)
    rotated_at = _rotated_at(secret)
    previous_live = bool(
        previous_pem
        and rotated_at is not None
        and now < rotated_at + PREVIOUS_CA_GRACE
        and (prev := _certificate(previous_pem)) is not None
        and prev.not_valid_after_utc > now
    )
    if ca_problem:
        made = certs.generate(request.service, request.namespace, request.extra_sans, request.days)
        old_ca = _certificate(data.get("ca.crt"))
        keep_old = old_ca is not None and _is_ca(old_ca) and old_ca.not_valid_after_utc > now
        action: SecretAction = "created" if secret is None else "ca-rotated"
        cert = x509.load_pem_x509_certificate(made.cert_pem)
        return SecretPlan(
            action=action,
            reason="new CA" if secret is None else f"new CA: {ca_problem}",
            data={
                "tls.crt": _b64(made.cert_pem),
                "tls.key": _b64(made.key_pem),
                "ca.crt": _b64(made.ca_cert_pem),
                "ca.key": _b64(made.ca_key_pem),
                PREVIOUS_CA_KEY: _b64(data["ca.crt"] or b"") if keep_old else None,
            },
            annotations={
                ROTATED_AT: _stamp(now) if keep_old else None,
                NOT_AFTER: _stamp(cert.not_valid_after_utc),
            },
            ca_pem=made.ca_cert_pem,
            previous_ca_pem=data.get("ca.crt") if keep_old else None,
            not_after=cert.not_valid_after_utc,
        )
    ca_pem, ca_key = data["ca.crt"] or b"", data["ca.key"] or b""
    ca = x509.load_pem_x509_certificate(ca_pem)
    expired_previous = previous_pem is not None and not previous_live
    cleanup: dict[str, str | None] = {PREVIOUS_CA_KEY: None} if expired_previous else {}
    cleanup_notes: dict[str, str | None] = {ROTATED_AT: None} if expired_previous else {}
    serving_problem = _usable_serving(data, ca, request, now)
    if serving_problem:
        made = certs.generate(
            request.service,
            request.namespace,
            request.extra_sans,
            request.days,
            ca=(ca_pem, ca_key),
        )
        cert = x509.load_pem_x509_certificate(made.cert_pem)
        return SecretPlan(
            action="renewed",
            reason=f"same CA: {serving_problem}",
            data={"tls.crt": _b64(made.cert_pem), "tls.key": _b64(made.key_pem), **cleanup},
            annotations={NOT_AFTER: _stamp(cert.not_valid_after_utc), **cleanup_notes},
            ca_pem=ca_pem,
            previous_ca_pem=previous_pem if previous_live else None,
            not_after=cert.not_valid_after_utc,
        )
    serving = x509.load_pem_x509_certificate(data["tls.crt"] or b"")
    return SecretPlan(
        action="updated" if expired_previous else "unchanged",
        reason="previous CA dropped after the rotation grace period"
        if expired_previous
        else "still valid",
        data=cleanup,
        annotations=cleanup_notes,
        ca_pem=ca_pem,
        previous_ca_pem=previous_pem if previous_live else None,
        not_after=serving.not_valid_after_utc,
    )


def ca_bundle(plan: SecretPlan) -> bytes:
    """The ``caBundle``: the current CA, then the previous one during the rotation grace."""
    bundle = plan.ca_pem.strip() + b"\n"
    if plan.previous_ca_pem and plan.previous_ca_pem.strip() != plan.ca_pem.strip():
        bundle += plan.previous_ca_pem.strip() + b"\n"
    return bundle


# ---------------------------------------------------------------------------------------------
# Talking to the API


def _secret_body(request: BootstrapRequest, plan: SecretPlan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": TLS_SECRET_TYPE,
        "metadata": {
            "name": request.secret,
            "namespace": request.namespace,
            "labels": dict(request.labels),
            "annotations": {k: v for k, v in plan.annotations.items() if v is not None},
        },
        "data": {k: v for k, v in plan.data.items() if v is not None},
    }


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _precondition(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON patch operation that makes the write conditional on the version that was read:
    the API server answers 409 Conflict when the object changed meanwhile."""
    version = obj["metadata"]["resourceVersion"]
    return {"op": "replace", "path": "/metadata/resourceVersion", "value": version}


def _map_ops(
    current: Mapping[str, Any] | None, path: tuple[str, ...], wanted: Mapping[str, str | None]
) -> list[dict[str, Any]]:
    """JSON patch operations setting (or, for ``None``, removing) keys of a string map."""
    ops: list[dict[str, Any]] = []
    if current is None and any(v is not None for v in wanted.values()):
        ops.append({"op": "add", "path": _pointer(*path), "value": {}})
    for key, value in wanted.items():
        if value is not None:
            ops.append({"op": "add", "path": _pointer(*path, key), "value": value})
        elif current is not None and key in current:
            ops.append({"op": "remove", "path": _pointer(*path, key)})
    return ops


def _secret_patch(
    secret: Mapping[str, Any], request: BootstrapRequest, plan: SecretPlan
) -> list[dict[str, Any]]:
    """A JSON patch: clients of every supported version send a list body as
    ``application/json-patch+json``, and only the keys swapper owns are touched."""
    meta = secret["metadata"]
    return [
        _precondition(secret),
        *_map_ops(meta.get("labels"), ("metadata", "labels"), dict(request.labels)),
        *_map_ops(meta.get("annotations"), ("metadata", "annotations"), plan.annotations),
        *_map_ops(secret.get("data"), ("data",), plan.data),
    ]


def _converge_secret(core: Any, request: BootstrapRequest, now: dt.datetime) -> SecretPlan:
    where = f"Secret {request.namespace}/{request.secret}"
    for _ in range(ATTEMPTS):
        try:
            secret: dict[str, Any] | None = call_json(
                core.read_namespaced_secret,
                request.secret,
                request.namespace,
                action=f"read {where}",
            )
        except NotFound:
            secret = None
        if secret is not None and secret.get("type") != TLS_SECRET_TYPE:
            raise KubeError(
                f"{where} exists with type {secret.get('type')!r}, not {TLS_SECRET_TYPE!r}; "
                "swapper does not overwrite it: delete it or choose another secret name"
            )
        plan = plan_secret(secret, request, now)
        try:
            if secret is None:
                call_json(
                    core.create_namespaced_secret,
                    request.namespace,
                    _secret_body(request, plan),
                    action=f"create {where}",
                )
            elif plan.action != "unchanged":
                call_json(
                    core.patch_namespaced_secret,
                    request.secret,
                    request.namespace,
                    _secret_patch(secret, request, plan),
                    action=f"update {where}",
                )
        except Conflict:  # created or changed by someone else meanwhile: re-plan
            continue
        return plan
    raise KubeError(f"{where}: still conflicting after {ATTEMPTS} attempts")


def _converge_webhook(
    admission: Any, request: BootstrapRequest, bundle: bytes
) -> tuple[WebhookAction, tuple[str, ...]]:
    where = f"MutatingWebhookConfiguration {request.webhook}"
    wanted = _b64(bundle)
    for _ in range(ATTEMPTS):
        try:
            configuration = call_json(
                admission.read_mutating_webhook_configuration,
                request.webhook,
                action=f"read {where}",
            )
        except NotFound:
            return "missing", ()
        ours = [
            hook
            for hook in configuration.get("webhooks") or []
            if ((hook.get("clientConfig") or {}).get("service") or {}).get("name")
            == request.service
            and (hook["clientConfig"]["service"].get("namespace") == request.namespace)
        ]
        if not ours:
            raise KubeError(
                f"{where} has no webhook calling service {request.namespace}/{request.service}"
            )
        stale = [h for h in ours if (h.get("clientConfig") or {}).get("caBundle") != wanted]
        names = tuple(str(h.get("name")) for h in stale)
        if not stale:
            return "unchanged", ()
        patch = [_precondition(configuration)]
        for index, hook in enumerate(configuration["webhooks"]):
            if any(hook is h for h in stale):
                path = f"/webhooks/{index}/clientConfig/caBundle"
                patch.append({"op": "add", "path": path, "value": wanted})
        try:
            call_json(
                admission.patch_mutating_webhook_configuration,
                request.webhook,
                patch,
                action=f"patch {where}",
            )
        except Conflict:
            continue
        return "patched", names
    raise KubeError(f"{where}: still conflicting after {ATTEMPTS} attempts")


def bootstrap(
    api_client: Any, request: BootstrapRequest, now: dt.datetime | None = None
) -> BootstrapResult:
    """Converge the TLS Secret and the webhook's ``caBundle`` (see the module docstring)."""
    from kubernetes import client

    now = now or dt.datetime.now(dt.UTC)
    plan = _converge_secret(client.CoreV1Api(api_client), request, now)
    webhook: WebhookAction = "skipped"
    names: tuple[str, ...] = ()
    if request.webhook:
        admission = client.AdmissionregistrationV1Api(api_client)
        webhook, names = _converge_webhook(admission, request, ca_bundle(plan))
    return BootstrapResult(plan.action, plan.reason, plan.not_after, webhook, names)


def parse_labels(pairs: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` arguments -> labels."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CertificateError(f"--label {pair!r} is not KEY=VALUE")
        labels[key] = value
    return labels
