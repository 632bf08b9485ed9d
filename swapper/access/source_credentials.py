"""The pull secrets a pod can use, read from a cache that follows the cluster.

Three informers (:mod:`swapper.kube.informer`) keep, for the whole cluster:

- Secrets of type ``kubernetes.io/dockerconfigjson`` and ``kubernetes.io/dockercfg`` (two
  watches with a ``type=`` field selector: other Secrets, Helm releases and TLS keys among them,
  are never transferred), each kept parsed as registry key -> credentials;
- ServiceAccounts, each kept as its list of ``imagePullSecrets`` names.

:meth:`SourceCredentials.keyring` gives the credentials a pod's kubelet would use: the pod's
``spec.imagePullSecrets``, or, when the pod names none, its ServiceAccount's (what the API
server's ServiceAccount admission plugin copies into such a pod). A secret that does not exist
(yet) or cannot be read contributes nothing, as on the kubelet.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from swapper.access.keyring import PULL_SECRET_TYPES, Keyring, parse_pull_secret
from swapper.credentials import Credentials
from swapper.errors import CredentialsError
from swapper.kube.informer import Informer
from swapper.logs import get_logger

log = get_logger("swapper.kube")

Entries = tuple[tuple[str, Credentials], ...]


def _secret_entries(obj: dict[str, Any]) -> Entries | None:
    meta = obj.get("metadata") or {}
    source = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    try:
        parsed = parse_pull_secret(str(obj.get("type") or ""), obj.get("data") or {}, source)
    except CredentialsError as exc:
        log.warning("pull_secret_unreadable", secret=source, error=str(exc))
        return ()
    return tuple(parsed.items())


def _service_account_secrets(obj: dict[str, Any]) -> tuple[str, ...]:
    refs = obj.get("imagePullSecrets") or []
    return tuple(str(r["name"]) for r in refs if isinstance(r, dict) and r.get("name"))


class SourceCredentials:
    """Pull-secret credentials per pod, from informers over the ``kubernetes`` client."""

    def __init__(self, api_client: Any, watch_timeout: int = 300) -> None:
        from kubernetes import client

        core = client.CoreV1Api(api_client)
        self.secrets = [
            Informer(
                f"secrets({kind})",
                core.list_secret_for_all_namespaces,
                _secret_entries,
                field_selector=f"type={kind}",
                watch_timeout=watch_timeout,
            )
            for kind in PULL_SECRET_TYPES
        ]
        self.service_accounts = Informer(
            "serviceaccounts",
            core.list_service_account_for_all_namespaces,
            _service_account_secrets,
            watch_timeout=watch_timeout,
        )
        self._informers: list[Informer[Any]] = [*self.secrets, self.service_accounts]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def synced(self) -> bool:
        """Whether every cache has been listed once (before that, nothing is known)."""
        return all(i.synced.is_set() for i in self._informers)

    def secret_names(
        self, namespace: str, pod_secrets: Sequence[str], service_account: str
    ) -> tuple[str, ...]:
        if pod_secrets:
            return tuple(pod_secrets)
        name = service_account or "default"
        return self.service_accounts.items.get((namespace, name), ())

    def keyring(
        self, namespace: str, pod_secrets: Sequence[str], service_account: str = ""
    ) -> Keyring:
        """The credentials the pod's kubelet would try, in its order."""
        entries: list[tuple[str, Credentials]] = []
        for name in self.secret_names(namespace, pod_secrets, service_account):
            for informer in self.secrets:
                entries.extend(informer.items.get((namespace, name), ()))
        return Keyring(entries)

    def start(self) -> None:
        self._stop = threading.Event()  # a fresh one: threads of an earlier run keep theirs
        for informer in self._informers:
            thread = threading.Thread(
                target=informer.run, args=(self._stop,), name=f"informer-{informer.name}"
            )
            thread.daemon = True  # a hung API connection must not keep the process alive
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for informer in self._informers:
            informer.interrupt()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    async def wait_synced(self, within: float) -> bool:
        """Wait up to ``within`` seconds for :attr:`synced`; returns whether it is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self.synced:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def run(self) -> None:
        """Background task for the app's lifespan: start the informers, stop them on cancel."""
        self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.to_thread(self.stop)
