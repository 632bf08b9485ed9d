"""Builds the backends ``swapper serve`` runs with, from the config.

- one :class:`~swapper.oci.RegistryClient` for every registry (per-host TLS settings from
  ``mirror.hosts`` and the generic target, operator credentials from ``source.registries`` and
  the target's credentials file), shared by the copy engine and the access checks;
- :class:`~swapper.access.source_credentials.SourceCredentials` when ``source.podPullSecrets`` is
  on and a Kubernetes API is reachable (in a cluster, or ``$KUBECONFIG``);
- the copy queue (:class:`~swapper.mirror.workers.WorkerQueue` over
  :class:`~swapper.mirror.engine.EngineCopier`) and the private-image access checker;
- with ``cleanup.enabled``, the usage marks' store (:class:`~swapper.mirror.marks.OCIMarkStore`
  over the copies' client, so with the target's push credentials) and the target's admin
  protocol, for the controller's cleanup.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from swapper.access.checker import KeyringSource, RegistryAccess
from swapper.access.keyring import Keyring
from swapper.access.remembered import public_answers
from swapper.access.verdicts import OpenAccess, SourceAccess
from swapper.backends import Backends
from swapper.config import Config, RefreshTags
from swapper.credentials import Credentials
from swapper.logs import get_logger
from swapper.metrics import Metrics
from swapper.mirror.engine import EngineCopier
from swapper.mirror.marks import MarkStore, OCIMarkStore
from swapper.mirror.probe import RegistryProbe
from swapper.mirror.queue import Requester
from swapper.mirror.shared import SharedCopier
from swapper.mirror.signatures import SignatureVerifier
from swapper.mirror.trust import VerifyRules
from swapper.mirror.workers import QueueSettings, WorkerQueue
from swapper.oci import (
    CopyEngine,
    CredentialsProvider,
    ReferrerSettings,
    RegistryClient,
    static_credentials,
)
from swapper.supervisor import TaskSpec
from swapper.targets.admin import RegistryAdmin
from swapper.targets.base import TargetRegistry
from swapper.targets.cache import ExistenceCache
from swapper.targets.factory import registry_hosts

log = get_logger("swapper.wiring")


def referrer_settings(config: Config) -> ReferrerSettings | None:
    """How copies bring the images' referrers along (``mirror.referrers``,
    ``mirror.referrerTypes``); None: they do not."""
    if not config.mirror.referrers:
        return None
    return ReferrerSettings(types=config.mirror.referrer_types)


def operator_credentials(config: Config, target: TargetRegistry) -> dict[str, Credentials]:
    found: dict[str, Credentials] = {}
    for registry in config.source.registries:
        options = registry.generic.generic_options if registry.generic else None
        if options is not None and options.username:
            found[options.domain.lower()] = Credentials(options.username, options.password)
    target_creds = getattr(target, "credentials", None)
    generic = config.target.generic
    if target_creds is not None and generic is not None:
        found[generic.domain] = Credentials(target_creds.username, target_creds.password)
    return found


def target_credentials(
    config: Config, target: TargetRegistry, others: CredentialsProvider
) -> CredentialsProvider:
    """Push credentials for the target host from ``target.pull_credentials()`` (asked per copy,
    so renewed tokens such as ECR's are picked up); other hosts, and a target that has none,
    from ``others``."""
    target_host = config.target.endpoint.split("/", 1)[0].lower()

    async def provide(host: str) -> Credentials | None:
        if host.lower() == target_host:
            found = await target.pull_credentials()
            if found is not None:
                return found
        return await others(host)

    return provide


def kube_api_client() -> Any | None:
    """An API client when a cluster is reachable: in-cluster, or through ``$KUBECONFIG``."""
    if not (os.environ.get("KUBERNETES_SERVICE_HOST") or os.environ.get("KUBECONFIG")):
        return None
    from swapper.kube import api_client

    return api_client()


_NO_API = "no Kubernetes API (not in a cluster, no KUBECONFIG): "


def kube_or_warn(kube: Any | None, event: str, without: str) -> Any | None:
    """``kube``, else an API client if a cluster is reachable, else None with one warning line
    ``event`` saying what goes ``without`` it."""
    return KubeApi(kube).get(event, without)


class KubeApi:
    """The one API client the backends share: the one handed in, else looked for once (at
    the first :meth:`get`), however many parts ask."""

    def __init__(self, given: Any | None = None) -> None:
        self._client = given
        self._looked = given is not None

    def get(self, event: str, without: str) -> Any | None:
        """The client, or None with one warning line ``event`` saying what goes ``without``
        it."""
        if not self._looked:
            self._client, self._looked = kube_api_client(), True
        if self._client is None:
            log.warning(event, reason=_NO_API + without)
        return self._client


def build_backends(
    config: Config,
    target: TargetRegistry,
    metrics: Metrics,
    kube: Any | None = None,
) -> Backends:
    """``kube``: a ``kubernetes`` API client, or None to find one (see :func:`kube_api_client`),
    once, when a part needs one."""
    api = KubeApi(kube)
    cached = ExistenceCache(
        target,
        ttl=config.target.existence_cache.ttl,
        negative_ttl=config.target.existence_cache.negative_ttl,
    )
    client = RegistryClient(
        hosts=registry_hosts(config),
        credentials=target_credentials(
            config, target, static_credentials(operator_credentials(config, target))
        ),
        blob_idle_timeout=config.mirror.blob_idle_timeout,
    )
    for key, message in config.warnings:
        log.warning("config_setting_ignored", key=key, problem=message)
    background: list[TaskSpec] = []
    ready_checks: list[Callable[[], bool]] = []
    keyrings: KeyringSource | None = None
    if config.source.pod_pull_secrets:
        kube = api.get(
            "pod_pull_secrets_unavailable",
            "private images are copied with operator credentials only and swapped for no pod",
        )
        if kube is not None:
            from swapper.access.source_credentials import SourceCredentials

            store = SourceCredentials(kube)
            background.append(TaskSpec("source-credentials", store.run, critical=True))
            ready_checks.append(lambda: store.synced)

            def keyrings(who: Requester) -> Keyring:
                return store.keyring(who.namespace, who.pull_secrets, who.service_account)

    # mirror.verify: asked by admission before a copy and a swap, and by the copier.
    rules = VerifyRules(config.mirror.verify)
    signatures = (
        SignatureVerifier(client, rules, keyrings, metrics) if config.mirror.verify else None
    )

    engine = CopyEngine(
        client,
        max_concurrent_blobs=config.mirror.max_concurrent_blobs,
        referrers=referrer_settings(config),
    )
    copier = EngineCopier(
        engine,
        target,
        keyrings,
        config.mirror.platforms,
        metrics,
        cached.record_present,
        keep_existing=config.mirror.refresh_tags is RefreshTags.NEVER,
        signatures=signatures,
        rules=rules,
    )
    settings = QueueSettings(
        workers=config.mirror.workers,
        max_queued=config.mirror.max_queued,
        max_backfill_queued=config.mirror.max_backfill_queued,
        fresh_for=config.mirror.fresh_for,
        recheck_every=config.mirror.recheck_every,
    )
    access: SourceAccess = OpenAccess()
    closers: list[Callable[[], Awaitable[None]]] = []
    if signatures is not None:
        closers.append(signatures.aclose)
    if config.source.check_access:
        options = config.source.access
        remembered = public_answers(options, api.get)
        background.append(TaskSpec("remembered-answers", remembered.run, critical=True))
        ready_checks.append(remembered.ready)
        access = RegistryAccess(
            client,
            keyrings or _no_keyring,
            config.source.shared_domains,
            ttl=options.ttl,
            negative_ttl=options.negative_ttl,
            unverifiable_ttl=options.unverifiable_ttl,
            cache_size=options.cache_size,
            remembered=remembered,
        )
        closers.append(access.aclose)
    pull_secrets = None
    if config.target.pull_secret.enabled:
        kube = api.get(
            "pull_secret_unavailable",
            "the target pull secret is added to pods but not provisioned",
        )
        if kube is not None:
            from swapper.kube.pull_secrets import KubePullSecrets

            pull_secrets = KubePullSecrets(
                kube,
                config.target.pull_secret.name,
                cached,
                config.target.endpoint.split("/", 1)[0],
                cleanup=config.target.pull_secret.cleanup,
                on_report=lambda result: metrics.pull_secret_writes.labels(result).inc(),
            )
            background.append(TaskSpec("pull-secrets", pull_secrets.run))
    shared = shared_copier(config, copier, cached, metrics, api)
    queue = WorkerQueue(shared or copier, settings, metrics, verify=cached.image_exists)
    cached.on_missing = queue.forget
    marks: MarkStore | None = None
    admin: RegistryAdmin | None = None
    if config.cleanup.enabled:
        marks = OCIMarkStore(client, config.target.endpoint.split("/", 1)[0].lower())
        admin = target if isinstance(target, RegistryAdmin) else None
        if admin is None:
            log.warning(
                "cleanup_unavailable",
                key="cleanup.enabled",
                reason=f"the target {type(target).__name__} cannot list or delete images",
            )
    return Backends(
        target=cached,
        queue=queue,
        metrics=metrics,
        access=access,
        background=background,
        ready_checks=ready_checks,
        closers=[*closers, client.aclose],
        pull_secrets=pull_secrets,
        probe=RegistryProbe(client, keyrings),
        marks=marks,
        admin=admin,
        signatures=signatures,
    )


def shared_copier(
    config: Config,
    copier: EngineCopier,
    cached: ExistenceCache,
    metrics: Metrics,
    api: KubeApi,
) -> SharedCopier | None:
    """``copier`` behind a Lease per image (``controller.shareCopies``), so the replicas copy
    each image once; None when off, or when no Kubernetes API is reachable."""
    settings = config.controller
    if not (settings.enabled and settings.share_copies):
        return None
    kube = api.get("shared_copies_unavailable", "each replica copies on its own")
    if kube is None:
        return None
    from swapper.kube import own_namespace
    from swapper.kube.leases import KubeLeaseStore, identity

    return SharedCopier(
        copier,
        KubeLeaseStore(kube, own_namespace()),
        identity(),
        settings.copy_lease_duration,
        verify=cached.image_exists_now,
        metrics=metrics,
    )


def _no_keyring(_: Requester) -> Keyring:
    return Keyring()
