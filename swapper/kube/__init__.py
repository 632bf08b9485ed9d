"""Talking to the Kubernetes API, through the official ``kubernetes`` client.
Imported by access, mirror, backends, wiring and the CLI; imports targets and below.

- :mod:`swapper.kube.webhook_certs`: the webhook's certificate bootstrap that the Helm chart's
  Job and CronJob run when cert-manager is not used (``swapper certs bootstrap``).
- :mod:`swapper.kube.remembered`: the ConfigMap store of the source-access check's public
  answers, in swapper's own namespace (:func:`own_namespace`); the check itself is
  :mod:`swapper.access`'s.

Objects are read as raw JSON (``_preload_content=False``) and written as plain JSON (dicts, and
JSON patches as lists), so swapper depends on the API's wire format, not on the client's
generated model classes, which changed shape between client versions (``kubernetes>=29``; 29 and
37 were tried). Every call has a timeout.

Importing this package is cheap; ``kubernetes`` itself is imported by the functions that use it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from swapper.errors import (  # raised by this package; defined with the others
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeApiError,
    KubeError,
    NotFound,
)

REQUEST_TIMEOUT = 30.0
"""Seconds for one API call (connect and read), so a Job never hangs on a dead connection."""

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
"""Where a pod's mounted ServiceAccount token says which namespace the pod runs in."""


def own_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace swapper runs in: ``$POD_NAMESPACE`` (the chart sets it from the downward
    API), else the mounted ServiceAccount's namespace file, else the namespace of the
    kubeconfig's context (outside a cluster), else ``default``, as kubectl does."""
    named = os.environ.get("POD_NAMESPACE", "").strip()
    if named:
        return named
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as mounted:
            found = mounted.read().strip()
    except OSError:
        found = ""
    if found:
        return found
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    try:
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError, TypeError, ValueError):
        return "default"
    chosen = (
        next((c for c in contexts or [] if c.get("name") == context), None) if context else None
    )
    entry = (chosen or current or {}).get("context") or {}
    return str(entry.get("namespace") or "default")


def api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A ``kubernetes.client.ApiClient``: the pod's service account when running in a cluster
    (and no kubeconfig is given), otherwise the kubeconfig (``$KUBECONFIG``, ``~/.kube/config``).
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    try:
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
    except (ConfigException, OSError, TypeError) as exc:
        raise KubeError(f"cannot configure the Kubernetes client: {exc}") from None
    return client.ApiClient(configuration)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a ``kubernetes`` ``ApiException`` or a :class:`KubeApiError`
    (``None`` for anything else)."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) and status else None


_BY_STATUS: dict[int, type[KubeApiError]] = {
    cls.STATUS: cls for cls in (Forbidden, NotFound, Conflict, Gone, Invalid)
}


def api_error(exc: BaseException, action: str) -> KubeError:
    """The :class:`KubeError` for a failed call: ``action`` plus the Status reason and
    message, typed by status (:class:`NotFound`, :class:`Conflict`, ...; another status is a
    :class:`KubeApiError`, no status at all a plain KubeError). A KubeError is returned as it
    is (it names its action already)."""
    if isinstance(exc, KubeError):
        return exc
    status = status_of(exc)
    if status is None:
        return KubeError(f"{action}: {exc.__class__.__name__}: {exc}")
    reason, message, token = getattr(exc, "reason", "") or "", "", ""
    try:
        body = json.loads(getattr(exc, "body", None) or "{}")
        reason = body.get("reason") or reason
        message = str(body.get("message") or "")[:300]
        metadata = body.get("metadata")
        found = metadata.get("continue") if isinstance(metadata, dict) else None
        token = found if isinstance(found, str) else ""
    except (ValueError, AttributeError):
        pass
    hint = ""
    if status == 403:
        hint = " (the service account lacks this permission: check the chart's RBAC)"
    text = f"{action}: HTTP {status} {reason}: {message}{hint}".rstrip(": ")
    return _BY_STATUS.get(status, KubeApiError)(text, status=status, continue_token=token)


def call_json(
    method: Callable[..., Any],
    *args: Any,
    action: str = "",
    request_timeout: float | tuple[float, float] = REQUEST_TIMEOUT,
    **kwargs: Any,
) -> dict[str, Any]:
    """Call a generated client method and return the response body as JSON.

    A failure raises :func:`api_error`'s KubeError for ``action`` (default: the method's
    name): :class:`NotFound`, :class:`Conflict`, :class:`Forbidden`, :class:`Gone`,
    :class:`Invalid`, another :class:`KubeApiError`, or a plain KubeError when the API
    server could not be reached.
    """
    what = action or getattr(method, "__name__", str(method))
    try:
        response = method(*args, _preload_content=False, _request_timeout=request_timeout, **kwargs)
    except Exception as exc:
        raise api_error(exc, what) from None
    try:
        raw = response.data or b"{}"
    except Exception as exc:  # the connection broke while the answer was read
        raise api_error(exc, what) from None
    finally:
        response.release_conn()
    try:
        data = json.loads(raw)
    except ValueError:
        raise KubeError(f"{what}: the API server's answer is not JSON") from None
    if not isinstance(data, dict):
        raise KubeError(f"unexpected API response from {what}")
    return data
