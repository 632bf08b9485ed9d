"""The audit's aggregate: pods in, one :class:`Row` per (namespace, image, decision) out.

:meth:`Audit.add` plans a pod as admission would (:func:`swapper.mutation.plan`, whose image
parsing is cached per image string) and counts it under each of its (namespace, image,
decision) keys; nothing of the pod is kept. What needs the mirror's answer (the candidates:
images admission would swap) is kept once per distinct target, with no container spec.
:meth:`Audit.settle` then resolves those as admission does in audit mode
(``side_effects=False``, a memory copy queue that is never used): with :class:`Registries`
each distinct image is asked once, with bounded concurrency and a timeout, whether the mirror
has it and whether its source answers anonymously; without, ``imageSwapPolicy: exists`` takes
every image to be in the mirror.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swapper.access.verdicts import SourceAccess, Verdict
from swapper.config import Config, CopyPolicy, SwapPolicy
from swapper.controller.audit.cleanup import CleanupPreview
from swapper.errors import InvalidReference, KubeError, MalformedPod, RegistryError
from swapper.images import ImageReference, is_at_endpoint, parse
from swapper.kube.pods import PodPages, namespaces
from swapper.mirror.memory import MemoryCopyQueue
from swapper.mirror.queue import Requester
from swapper.mirror.trust import AssumedSigned
from swapper.mutation import Candidate, CopyState, Mutator, Outcome, Policy, plan
from swapper.pods import Container, containers, namespace_of
from swapper.targets.base import TargetRegistry
from swapper.targets.memory import MemoryTarget

SOURCE_STATES = {
    Verdict.READABLE: "readable",
    Verdict.PRIVATE: "private",
    Verdict.UNVERIFIED: "unreachable",
}
"""The ``source`` column: what the source registry answered an anonymous ``HEAD``."""

_PENDING = ""  # the decision of a key whose candidate is settled later
_NOBODY = Requester("")

Key = tuple[str, str, str, str, int | None, str]
"""(namespace, image, decision or _PENDING, target, filter index, detail)"""


@dataclass(slots=True)
class Row:
    """One (namespace, image, decision) and how many pods it holds."""

    namespace: str
    image: str
    decision: str
    target: str | None
    pods: int
    reason: str
    mirrored: bool | None = None
    source: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "image": self.image,
            "pods": self.pods,
            "decision": self.decision,
            "target": self.target,
            "mirrored": self.mirrored,
            "source": self.source,
            "reason": self.reason,
        }


@dataclass
class Report:
    rows: list[Row]
    pods: int  # pods read
    skipped: int  # pods too malformed to plan
    namespaces: dict[str, int] = field(default_factory=dict)  # pods read per namespace
    forbidden: list[tuple[str, str]] = field(default_factory=list)  # (namespace, refusal)
    notes: list[str] = field(default_factory=list)
    checked: bool = False  # the registries were asked (--check-registries)
    cleanup: CleanupPreview | None = None  # cleanup's dry run (--cleanup)

    def mirror_references(self, endpoint: str) -> set[str]:
        """The mirror references the pods read use or would use: every row's target, and
        every image already under ``endpoint`` (more rather than fewer: what cleanup keeps)."""
        found = {row.target for row in self.rows if row.target}
        for row in self.rows:
            try:
                if is_at_endpoint(parse(row.image), endpoint):
                    found.add(row.image)
            except InvalidReference:
                continue
        return found


@dataclass
class _Check:
    """What the registries said about one candidate."""

    mirrored: bool | None = None
    mirror_error: str = ""
    source: str | None = None


class Registries:
    """The mirror (``target``) and an anonymous access checker for the sources, asked at most
    ``concurrency`` at a time, each answer within ``timeout`` seconds."""

    def __init__(
        self,
        target: TargetRegistry,
        access: SourceAccess | None,
        timeout: float = 10.0,
        concurrency: int = 16,
    ) -> None:
        self.target = target
        self.access = access
        self.timeout = timeout
        self.concurrency = concurrency

    async def check(self, candidates: Iterable[Candidate]) -> dict[str, _Check]:
        """One :class:`_Check` per candidate target."""
        gate = asyncio.Semaphore(self.concurrency)
        loop = asyncio.get_running_loop()

        async def one(c: Candidate) -> tuple[str, _Check]:
            found = _Check()
            async with gate:
                try:
                    found.mirrored = await asyncio.wait_for(
                        self.target.image_exists(c.target), self.timeout
                    )
                except TimeoutError:
                    found.mirror_error = f"the mirror did not answer within {self.timeout:g} s"
                except Exception as exc:  # a failed check is reported, never fatal
                    found.mirror_error = f"{type(exc).__name__}: {exc}"
                if self.access is not None:
                    try:
                        access = await asyncio.wait_for(
                            self.access.check(c.source, _NOBODY, loop.time() + self.timeout),
                            self.timeout + 1,
                        )
                        found.source = SOURCE_STATES[access.verdict]
                    except Exception:  # noqa: S110 - unknown: the column says null
                        pass
            return c.target, found

        return dict(await asyncio.gather(*(one(c) for c in candidates)))


class _Answering(MemoryTarget):
    """The mirror as the registries answered (or every image, when they were not asked)."""

    def __init__(self, endpoint: str, present: set[str], failures: dict[str, str]) -> None:
        super().__init__(endpoint, present)
        self.failures = failures

    async def image_exists(self, target: str) -> bool:
        failure = self.failures.get(target)
        if failure:
            raise RegistryError(failure)
        return target in self.images


class Audit:
    """The aggregate of the pods given to :meth:`add`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.policy = Policy.from_config(config)
        endpoint = self.policy.endpoint

        def is_origin(ref: ImageReference) -> bool:
            return is_at_endpoint(ref, endpoint)

        self.is_origin = is_origin
        self.counts: dict[Key, int] = {}
        self.candidates: dict[str, Candidate] = {}  # by target: one per distinct image
        self.pods = 0
        self.per_namespace: dict[str, int] = {}
        self.skipped = 0
        self.forbidden: list[tuple[str, str]] = []
        self.notes: list[str] = []

    def add(self, pod: Mapping[str, Any]) -> None:
        """Count one pod under each (namespace, image, decision) it has."""
        self.pods += 1
        namespace = namespace_of(pod)
        self.per_namespace[namespace] = self.per_namespace.get(namespace, 0) + 1
        try:
            found = containers(pod)
            settled, candidates = plan(
                pod, namespace, self.policy, self.is_origin, containers=found
            )
        except (MalformedPod, TypeError, AttributeError):
            self.skipped += 1
            return
        keys: set[Key] = set()
        for d in settled:
            keys.add((namespace, d.container.image, d.outcome.value, "", d.filter_index, d.detail))
        for c in candidates:
            keys.add((namespace, c.container.image, _PENDING, c.target, None, ""))
            if c.target not in self.candidates:  # kept without the pod's container spec
                bare = Container(c.container.field, 0, "", c.container.image, {})
                self.candidates[c.target] = Candidate(bare, c.source, c.target, c.repository)
        counts = self.counts
        for key in keys:
            counts[key] = counts.get(key, 0) + 1

    def add_all(self, pods: Iterable[Mapping[str, Any]]) -> None:
        for pod in pods:
            self.add(pod)

    async def settle(self, registries: Registries | None = None) -> Report:
        """The report: candidates resolved as admission would in audit mode."""
        unique = list(self.candidates.values())
        checks: dict[str, _Check] = {}
        if registries is not None:
            checks = await registries.check(unique)
            present = {t for t, c in checks.items() if c.mirrored}
            failures = {t: c.mirror_error for t, c in checks.items() if c.mirror_error}
        else:
            present, failures = {c.target for c in unique}, {}
        target = _Answering(self.policy.endpoint, present, failures)
        # Signatures are not checked here: a would-swap of an image mirror.verify applies to
        # holds only if it is signed (a note says so).
        mutator = Mutator(self.policy, target, MemoryCopyQueue(target), signatures=AssumedSigned())
        decisions = await mutator.resolve(unique, _NOBODY, side_effects=False)
        by_target = {d.target: d for d in decisions}
        rows: list[Row] = []
        for (namespace, image, decision, target_ref, index, detail), pods in self.counts.items():
            if decision != _PENDING:
                reason = self._settled_reason(Outcome(decision), image, index, detail)
                rows.append(Row(namespace, image, decision, None, pods, reason))
                continue
            d = by_target[target_ref]
            check = checks.get(target_ref, _Check())
            reason = self._reason(d.outcome, d.copy, d.detail, check, registries is not None)
            rows.append(
                Row(
                    namespace,
                    image,
                    d.outcome.value,
                    target_ref,
                    pods,
                    reason,
                    check.mirrored,
                    check.source,
                )
            )
        order = {o.value: i for i, o in enumerate(Outcome)}
        rows.sort(key=lambda r: (r.namespace, r.image, order[r.decision]))
        return Report(
            rows,
            self.pods,
            self.skipped,
            dict(sorted(self.per_namespace.items())),
            list(self.forbidden),
            [*self.notes, *self._notes(registries is not None)],
            registries is not None,
        )

    # -- words --------------------------------------------------------------------------------

    def _settled_reason(self, outcome: Outcome, image: str, index: int | None, detail: str) -> str:
        if outcome is Outcome.SKIPPED_FILTER and index is not None:
            return f"skipped by filter {index}: {self.config.source.filters[index].jmespath}"
        if outcome is Outcome.SKIPPED_ORIGIN:
            return "already in the target registry"
        return detail or outcome.value

    def _reason(
        self, outcome: Outcome, copy: CopyState, detail: str, check: _Check, asked: bool
    ) -> str:
        parts: list[str] = []
        exists = self.policy.swap is SwapPolicy.EXISTS
        if outcome is Outcome.SWAPPED:
            if exists and not asked:
                parts.append("assumed in the mirror (imageSwapPolicy: exists)")
            elif check.mirrored:
                parts.append("in the mirror")
            if copy is CopyState.WOULD_COPY and not check.mirrored:
                if self.policy.copy is CopyPolicy.DELAYED:
                    parts.append("a copy would be queued")
                else:
                    parts.append("copied at admission before the swap")
        elif outcome is Outcome.NOT_FOUND:
            parts.append("not in the mirror yet")
            if copy is CopyState.WOULD_COPY:
                parts.append("a copy would be queued")
        elif outcome is Outcome.ERROR and check.mirror_error:
            parts.append(check.mirror_error)  # as the mirror check said it
        else:
            parts.append(detail or outcome.value)
        if check.mirror_error and outcome is not Outcome.ERROR:
            parts.append(f"mirror check failed: {check.mirror_error}")
        if self.config.source.check_access:
            if check.source == "private":
                parts.append(
                    "the source refuses anonymous reads: swapped only for pods whose pull "
                    "secrets can read it"
                )
            elif check.source == "unreachable":
                parts.append("the source did not answer: admission skips it until it does")
        return "; ".join(parts)

    def _notes(self, asked: bool) -> list[str]:
        notes = []
        if self.skipped:
            notes.append(f"{self.skipped} pod(s) could not be read (malformed) and were skipped")
        if self.policy.swap is SwapPolicy.EXISTS and not asked:
            notes.append(
                "imageSwapPolicy is exists: every image was taken to be in the mirror "
                "(--check-registries asks it)"
            )
        if self.config.source.check_access:
            notes.append(
                "source.checkAccess: admission swaps a private image only for pods whose own "
                "pull secrets can read it; audit reads no Secret"
                + ("" if asked else ", and asked no source (--check-registries does)")
            )
        if len(self.policy.verify):
            notes.append(
                "mirror.verify: signatures were not checked; an image a rule applies to is "
                "copied and swapped only when its signature verifies"
            )
        return notes


def read_pods(
    audit: Audit,
    api_client: Any,
    only: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
    page_size: int = 500,
) -> None:
    """Give every pod of the namespaces ``only`` (default: all) to ``audit``, page by page.

    A namespace whose pods may not be listed (403) is noted once in ``audit.forbidden``. When
    pods may not be listed across namespaces, each namespace is listed on its own (if the
    namespaces may be listed); else :class:`KubeError`.
    """

    def each(pages: PodPages) -> None:
        for page in pages:
            audit.add_all(page)
            if progress is not None:
                progress(audit.pods)
        if pages.inconsistent:
            audit.notes.append(
                "the list's snapshot expired while it was read: later pages came from a newer one"
            )

    if only:
        for namespace in dict.fromkeys(only):
            pages = PodPages(api_client, namespace, page_size)
            each(pages)
            if pages.forbidden:
                audit.forbidden.append((namespace, pages.forbidden))
        return
    everywhere = PodPages(api_client, "", page_size)
    each(everywhere)
    if not everywhere.forbidden:
        return
    names = namespaces(api_client)
    if names is None:
        raise KubeError(f"{everywhere.forbidden}; nor may namespaces be listed: give --namespace")
    read_pods(audit, api_client, names, progress, page_size)


def registries_for(
    config: Config, target: TargetRegistry, timeout: float = 10.0
) -> tuple[Registries, Callable[[], Awaitable[None]]]:
    """:class:`Registries` over ``target`` and an anonymous access checker (registries of
    ``source.registries`` count as readable, as in admission), and what closes them."""
    from swapper.access.checker import RegistryAccess
    from swapper.access.keyring import Keyring
    from swapper.oci import RegistryClient, static_credentials
    from swapper.targets.factory import registry_hosts
    from swapper.wiring import operator_credentials

    client = RegistryClient(
        hosts=registry_hosts(config),
        credentials=static_credentials(operator_credentials(config, target)),
        timeout=timeout,
    )
    access = RegistryAccess(client, lambda _: Keyring(), config.source.shared_domains)

    async def close() -> None:
        await access.aclose()
        await client.aclose()
        await target.aclose()

    return Registries(target, access, timeout), close


__all__ = [
    "SOURCE_STATES",
    "Audit",
    "Registries",
    "Report",
    "Row",
    "read_pods",
    "registries_for",
]
