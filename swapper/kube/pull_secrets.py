"""The target pull secret: a Secret swapper keeps current in every namespace it swapped pods in.

With ``target.pullSecret.enabled``, swapped pods get ``spec.imagePullSecrets: [<name>]``, so the
Secret must exist, hold valid credentials for the mirror, and stay valid (ECR tokens last 12 h,
Artifact Registry tokens 1 h):

- :meth:`KubePullSecrets.ensure` runs before the admission response that references the Secret:
  it creates it (``kubernetes.io/dockerconfigjson``, labelled ``app.kubernetes.io/managed-by:
  swapper``) or brings it up to date, once per namespace and set of credentials; after that it
  costs no API call.
- :meth:`KubePullSecrets.refresh` (every ``interval`` from :meth:`run`) rewrites every managed
  Secret as soon as the target hands out new credentials (the targets renew theirs well before
  expiry), so a Secret never holds an expired token. At start, the namespaces that already
  hold a managed Secret are found (a list of namespaces, then a GET by name in each: no
  cluster-wide Secret listing is needed).
- A Secret of that name that swapper does not manage is never overwritten: it is reported
  (log, metric, a Kubernetes Event on the pod's ServiceAccount) and left alone.
- With ``cleanup``, a managed Secret is deleted from a namespace where no pod refers to it any
  more (and that was not written in the last ``cleanup_grace`` seconds).
- A failure is reported as an Event on the pod's ServiceAccount (so ``kubectl describe`` shows
  why) and raised as :class:`~swapper.errors.KubeError`: admission then leaves the pod as it is.

Writes carry the ``resourceVersion`` that was read; a 409 Conflict reads again and retries. A
Secret that already holds the current credentials is never written again (compared by
fingerprint), so several replicas, or a restarted one, do not take turns rewriting it.
Credentials are never logged; log lines name namespaces and the Secret.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from swapper.credentials import Credentials
from swapper.errors import Conflict, KubeError, NotFound
from swapper.kube import call_json
from swapper.kube.events import create_event, event_body
from swapper.kube.pods import namespaces
from swapper.logs import get_logger
from swapper.pods import pull_secret_names
from swapper.targets.base import TargetRegistry

log = get_logger("swapper.kube")

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "swapper"
EXPIRES_AT = "swapper.io/credentials-expire-at"
ATTEMPTS = 4


@runtime_checkable
class PullSecrets(Protocol):
    async def ensure(self, namespace: str, service_account: str = "") -> None:
        """Make sure the target pull secret is in ``namespace`` and current (raises KubeError)."""
        ...


def docker_config(registry: str, credentials: Credentials) -> bytes:
    auth = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    entry = {"username": credentials.username, "password": credentials.password, "auth": auth}
    return json.dumps({"auths": {registry: entry}}, sort_keys=True).encode()


def fingerprint(registry: str, credentials: Credentials) -> str:
    return hashlib.sha256(docker_config(registry, credentials)).hexdigest()


class KubePullSecrets:
    """Provisions and refreshes the target pull secret through the ``kubernetes`` client."""

    def __init__(
        self,
        api_client: Any,
        name: str,
        target: TargetRegistry,
        registry: str,
        *,
        interval: float = 60.0,
        cleanup: bool = False,
        cleanup_grace: float = 3600.0,
        clock: Callable[[], float] = time.time,
        on_report: Callable[[str], None] = lambda _: None,
    ) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.name = name
        self.target = target
        self.registry = registry
        self.interval = interval
        self.cleanup = cleanup
        self.cleanup_grace = cleanup_grace
        self.clock = clock
        self.on_report = on_report  # a metric: called with "created", "updated", "failed", ...
        self._current: dict[str, str] = {}  # namespace -> fingerprint written there
        self._written_at: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._reported: set[str] = set()  # namespaces whose unmanaged Secret was reported

    @property
    def namespaces(self) -> set[str]:
        return set(self._current)

    # -- admission ----------------------------------------------------------------------------

    async def ensure(self, namespace: str, service_account: str = "") -> None:
        credentials = await self.target.pull_credentials()
        if credentials is None:
            return  # the mirror is readable anonymously: nothing to provision
        wanted = fingerprint(self.registry, credentials)
        if self._current.get(namespace) == wanted:
            return
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            if self._current.get(namespace) == wanted:
                return
            try:
                await asyncio.to_thread(self._converge, namespace, credentials, wanted)
            except KubeError as exc:
                self.on_report("failed")
                log.warning("pull_secret_failed", namespace=namespace, secret=self.name)
                await asyncio.to_thread(self._event, namespace, service_account, str(exc))
                raise

    # -- background ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Find managed Secrets, then refresh (and clean up) every ``interval`` seconds."""
        try:
            await asyncio.to_thread(self.discover)
        except KubeError as exc:
            log.warning("pull_secret_discovery_failed", error=str(exc))
        while True:
            await asyncio.sleep(self.interval)
            await self.refresh()

    async def refresh(self) -> int:
        """Rewrite managed Secrets whose credentials are not the target's current ones;
        returns how many were written."""
        credentials = await self.target.pull_credentials()
        written = 0
        if credentials is not None:
            wanted = fingerprint(self.registry, credentials)
            for namespace, current in list(self._current.items()):
                if current == wanted:
                    continue
                try:
                    async with self._locks.setdefault(namespace, asyncio.Lock()):
                        await asyncio.to_thread(self._converge, namespace, credentials, wanted)
                    written += 1
                except KubeError as exc:
                    self.on_report("failed")
                    log.warning("pull_secret_refresh_failed", namespace=namespace, error=str(exc))
        if self.cleanup:
            await asyncio.to_thread(self._clean)
        return written

    def discover(self) -> None:
        """Learn which namespaces already hold a Secret swapper manages (after a restart)."""
        found = namespaces(self.core.api_client)
        if found is None:
            raise KubeError("list namespaces: HTTP 403 Forbidden (check the chart's RBAC)")
        for namespace in found:
            secret = self._read(namespace)
            if secret is not None and _managed(secret):
                # What it holds now: rewritten on the next refresh only if that is not current
                # (another replica, or this one before a restart, may have written it already).
                self._current[namespace] = _stored_fingerprint(secret) or "unknown"
                self._written_at[namespace] = self.clock()

    # -- the Kubernetes side (threads) ----------------------------------------------------------

    def _read(self, namespace: str) -> dict[str, Any] | None:
        action = f"read secret {namespace}/{self.name}"
        try:
            return call_json(self.core.read_namespaced_secret, self.name, namespace, action=action)
        except NotFound:
            return None

    def _body(self, credentials: Credentials, existing: dict[str, Any] | None) -> dict[str, Any]:
        annotations: dict[str, str] = {}
        if credentials.expires_at is not None:
            annotations[EXPIRES_AT] = credentials.expires_at.astimezone(dt.UTC).isoformat()
        metadata: dict[str, Any] = {
            "name": self.name,
            "labels": {MANAGED_BY: MANAGER},
            "annotations": annotations,
        }
        if existing is not None:
            old = existing.get("metadata") or {}
            metadata["resourceVersion"] = old.get("resourceVersion")
            metadata["labels"] = {**(old.get("labels") or {}), MANAGED_BY: MANAGER}
            kept = {k: v for k, v in (old.get("annotations") or {}).items() if k != EXPIRES_AT}
            metadata["annotations"] = {**kept, **annotations}
        data = base64.b64encode(docker_config(self.registry, credentials)).decode()
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": data},
        }

    def _converge(self, namespace: str, credentials: Credentials, wanted: str) -> None:
        for _ in range(ATTEMPTS):
            existing = self._read(namespace)
            if existing is not None and not _managed(existing):
                if namespace not in self._reported:
                    self._reported.add(namespace)
                    self.on_report("unmanaged")
                    log.warning(
                        "pull_secret_not_managed",
                        namespace=namespace,
                        secret=self.name,
                        detail="a Secret of this name exists and is not managed by swapper: "
                        "left as it is",
                    )
                self._current[namespace] = wanted  # not ours: never written, not asked again
                return
            if existing is not None and _stored_fingerprint(existing) == wanted:
                # Already current (written by another replica): writing it again would only
                # make the replicas take turns rewriting the same Secret.
                self._current[namespace] = wanted
                self._written_at[namespace] = self.clock()
                return
            body = self._body(credentials, existing)
            action = f"write secret {namespace}/{self.name}"
            try:
                if existing is None:
                    call_json(self.core.create_namespaced_secret, namespace, body, action=action)
                    self.on_report("created")
                else:
                    call_json(
                        self.core.replace_namespaced_secret,
                        self.name,
                        namespace,
                        body,
                        action=action,
                    )
                    self.on_report("updated")
            except Conflict:
                continue  # created or changed meanwhile: read again
            self._current[namespace] = wanted
            self._written_at[namespace] = self.clock()
            log.info("pull_secret_written", namespace=namespace, secret=self.name)
            return
        raise KubeError(f"write secret {namespace}/{self.name}: still conflicting after retries")

    def _clean(self) -> None:
        for namespace in list(self._current):
            if self.clock() - self._written_at.get(namespace, 0.0) < self.cleanup_grace:
                continue
            try:
                pods = call_json(self.core.list_namespaced_pod, namespace).get("items") or []
            except Exception as exc:
                log.warning("pull_secret_cleanup_failed", namespace=namespace, error=str(exc))
                continue
            if any(self.name in _secret_names(pod) for pod in pods):
                continue
            existing = self._read(namespace)
            if existing is not None and _managed(existing):
                try:
                    call_json(self.core.delete_namespaced_secret, self.name, namespace)
                except NotFound:
                    pass  # gone already
                except KubeError:
                    log.warning("pull_secret_cleanup_failed", namespace=namespace)
                    continue
                self.on_report("deleted")
                log.info("pull_secret_deleted", namespace=namespace, secret=self.name)
            self._current.pop(namespace, None)
            self._written_at.pop(namespace, None)

    def _event(self, namespace: str, service_account: str, message: str) -> None:
        """A Warning Event on the pod's ServiceAccount; best effort."""
        account = service_account or "default"
        text = f"swapper could not provision Secret {self.name}: {message}"
        create_event(
            self.core, event_body("ServiceAccount", namespace, account, "PullSecretFailed", text)
        )


def _stored_fingerprint(secret: dict[str, Any]) -> str | None:
    """The :func:`fingerprint` of the credentials a Secret holds (None if unreadable)."""
    try:
        raw = base64.b64decode((secret.get("data") or {}).get(".dockerconfigjson") or "")
    except (ValueError, TypeError):
        return None
    return hashlib.sha256(raw).hexdigest() if raw else None


def _managed(secret: dict[str, Any]) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY) == MANAGER)


def _secret_names(pod: dict[str, Any]) -> set[str]:
    return set(pull_secret_names(pod))
