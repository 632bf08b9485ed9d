"""Copy jobs run by the OCI copy engine: the copier behind the worker queue.

For each job: the target repository is made ready (:meth:`TargetRegistry.ensure_repository`),
then the image is copied with :class:`swapper.oci.CopyEngine`, reading the source with the
credentials the requesting pod's kubelet would use (its pull secrets, in the kubelet's order;
the next one is tried when a registry refuses one), or else with the operator's
``source.registries`` credentials, or anonymously. Bytes and blobs are counted in the metrics.

The image's referrers (signatures, attestations, SBOMs) come with it when the engine has
:class:`~swapper.oci.ReferrerSettings` (``mirror.referrers``): each counted by result in
``swapper_referrers_copied_total``, and each one not copied (failed, malformed, a loop, too
deep) logged once, as ``referrer_not_copied``; none of them fails the copy.

With ``keep_existing`` (``mirror.refreshTags: never``), a job without ``recheck`` whose target
the mirror already has is done without looking at the source: a tag stays on its first copy.

With ``mirror.verify`` rules (``signatures`` and ``rules``), a job whose source a rule applies
to is copied only when its signature verifies, whoever asked (admission, the backfill, the
monitor, healing), and then by the digest that verified, so a tag that moves in between is not
copied unverified. Otherwise the copy fails with reason ``unverified-signature``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from swapper.access.checker import KeyringSource
from swapper.credentials import Credentials
from swapper.errors import CopyError, CopyReason
from swapper.logs import get_logger
from swapper.metrics import Metrics
from swapper.mirror.queue import CopyJob, Requester
from swapper.mirror.trust import NO_RULES, SignatureCheck, VerifyRules
from swapper.oci import CopyEngine, CopyResult, CredentialsProvider
from swapper.targets.base import TargetRegistry

_REFUSED = frozenset({CopyReason.UNAUTHORIZED, CopyReason.DENIED})
log = get_logger("swapper.mirror")


def _provider(identity: Credentials) -> CredentialsProvider:
    async def provide(_: str) -> Credentials | None:
        return identity

    return provide


class EngineCopier:
    def __init__(
        self,
        engine: CopyEngine,
        target: TargetRegistry,
        keyrings: KeyringSource | None = None,
        platforms: Sequence[str] = (),
        metrics: Metrics | None = None,
        on_copied: Callable[[str], None] = lambda _: None,
        *,
        keep_existing: bool = False,
        signatures: SignatureCheck | None = None,
        rules: VerifyRules = NO_RULES,
    ) -> None:
        self.signatures = signatures
        self.rules = rules
        self.on_copied = on_copied
        self.keep_existing = keep_existing
        self.engine = engine
        self.target = target
        self.keyrings = keyrings
        self.platforms = tuple(platforms) or None
        self.metrics = metrics or Metrics()

    def _providers(self, job: CopyJob) -> list[CredentialsProvider | None]:
        """Pod credentials in the kubelet's order, then the client's own (operator or none)."""
        providers: list[CredentialsProvider | None] = []
        if self.keyrings is not None:
            who = Requester(job.namespace, job.pull_secrets, job.service_account)
            for auth in self.keyrings(who).lookup(job.source.name):
                providers.append(_provider(auth))
        providers.append(None)
        return providers

    async def __call__(self, job: CopyJob) -> CopyResult | None:
        if self.keep_existing and not job.recheck and await self.target.image_exists(job.target):
            return None  # refreshTags never: the first copy stays
        source = (await self._verified(job)).source
        await self.target.ensure_repository(job.repository)
        providers = self._providers(job)
        for i, provider in enumerate(providers):
            try:
                result = await self.engine.copy(
                    source,
                    job.target,
                    platforms=self.platforms,
                    source_credentials=provider,
                )
            except CopyError as exc:
                if exc.reason in _REFUSED and i + 1 < len(providers):
                    continue  # the kubelet would try the pod's next credentials too
                raise
            self._count(result)
            self.on_copied(job.target)
            return result
        raise AssertionError("unreachable: the last provider re-raises")

    async def _verified(self, job: CopyJob) -> CopyJob:
        """The job to run: as asked, or its source pinned to the digest that verified."""
        rules = self.rules.matching(job.source) if len(self.rules) else ()
        if not rules:
            return job
        if self.signatures is None:
            raise CopyError(
                f"{job.source}: mirror.verify applies and no signature checker is configured",
                CopyReason.UNVERIFIED_SIGNATURE,
            )
        who = Requester(job.namespace, job.pull_secrets, job.service_account)
        signed = await self.signatures.check(job.source, rules, who, None)
        if not signed.verified:
            raise CopyError(f"{job.source}: {signed.reason}", CopyReason.UNVERIFIED_SIGNATURE)
        if job.source.digest or not signed.digest:
            return job
        return dataclasses.replace(
            job, source=dataclasses.replace(job.source, digest=signed.digest)
        )

    def _count(self, result: CopyResult) -> None:
        m = self.metrics
        m.copy_bytes.inc(result.bytes_copied)
        m.copy_blobs.labels("copied").inc(result.blobs_copied)
        m.copy_blobs.labels("skipped").inc(result.blobs_skipped)
        m.copy_blobs.labels("mounted").inc(result.blobs_mounted)
        for outcome, count in result.referrers.counts:
            if count:
                m.referrers_copied.labels(outcome).inc(count)
        for problem in result.referrers.problems:
            log.warning("referrer_not_copied", source=result.source, problem=problem)
