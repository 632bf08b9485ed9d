"""Pod -> per-container decisions.

Two steps:

1. :func:`plan` is pure: it selects the containers to look at, parses each reference, and settles
   what needs no I/O (invalid reference, already at the target, skipped by a filter). What is
   left is a :class:`Candidate` with its mirror reference.
2. :meth:`Mutator.resolve` applies the copy policy (through the :class:`CopyQueue` protocol) and
   the swap policy (through the :class:`TargetRegistry` protocol), all candidates concurrently
   and each image once, and turns every candidate into a :class:`Decision`.

With ``side_effects=False`` (dry-run audit mode, or a server-side dry-run request) nothing is
copied or created; the decision says what would have happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from swapper.access.refusal import Refused, checks_mirror_references, refused
from swapper.access.settings import MirrorReferencePolicy
from swapper.access.verdicts import READABLE, Access, OpenAccess, SourceAccess
from swapper.config import Config, CopyPolicy, RefreshTags, SwapPolicy
from swapper.errors import CopyDeadlineExceeded, CopyError, QueueFull, SwapperError
from swapper.filters import Filters
from swapper.images import ImageReference, parse, source_of_mirror, target_reference
from swapper.logs import get_logger
from swapper.mirror.queue import CopyJob, CopyQueue, Requester
from swapper.mirror.trust import NO_RULES, SignatureCheck, SignatureState, Signed, VerifyRules
from swapper.pods import (
    CONTAINER_FIELDS,
    Container,
    pull_secret_names,
    service_account,
    with_namespace,
)
from swapper.pods import containers as pod_containers
from swapper.targets.base import TargetRegistry

log = get_logger("swapper.mutation")

NAME_MAX = 255  # the distribution spec's limit on a repository name, host included


class Outcome(StrEnum):
    SWAPPED = "swapped"
    SKIPPED_FILTER = "skipped-filter"
    SKIPPED_ORIGIN = "skipped-origin"
    NOT_FOUND = "not-found"  # imageSwapPolicy exists, and the mirror does not have the image
    INVALID_REFERENCE = "invalid-reference"
    NO_PULL_SECRET = "skipped-no-pull-secret"  # noqa: S105 - a reason, not a secret  # ephemeral container: secrets cannot be added
    # The source-access refusals (swapper.access.refusal): the pod may not read the source, or
    # it could not be asked in time; ORIGIN_*: for a pod naming a mirror image directly.
    NO_SOURCE_ACCESS = Refused.PRIVATE.value
    UNVERIFIED = Refused.UNVERIFIED.value
    ORIGIN_PRIVATE = Refused.ORIGIN_PRIVATE.value
    ORIGIN_UNVERIFIED = Refused.ORIGIN_UNVERIFIED.value
    # mirror.verify applies and no signature verified (or it could not be checked in time):
    # neither copied nor swapped.
    UNVERIFIED_SIGNATURE = "unverified-signature"
    ERROR = "error"


class CopyState(StrEnum):
    NONE = ""  # no copy asked for (imageCopyPolicy none)
    QUEUED = "queued"
    COPIED = "copied"
    WOULD_COPY = "would-copy"
    QUEUE_FULL = "queue-full"
    DEADLINE = "deadline"
    FAILED = "failed"


@dataclass(slots=True)  # per container: plain init is cheaper; never mutated
class Candidate:
    container: Container
    source: ImageReference
    target: str
    repository: str
    origin: bool = False  # the pod names the mirror image itself: only its source's access


@dataclass(slots=True)  # per container: plain init is cheaper; never mutated
class Decision:
    container: Container
    outcome: Outcome
    target: str | None = None
    filter_index: int | None = None
    copy: CopyState = CopyState.NONE
    detail: str = ""

    @property
    def swapped(self) -> bool:
        return self.outcome is Outcome.SWAPPED


@dataclass(frozen=True, slots=True)
class Resolved:
    """What resolving one image decided: the outcome, the copy's state and why (the
    :class:`Decision` of each container naming that image is made from it)."""

    outcome: Outcome
    copy: CopyState = CopyState.NONE
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """The part of the config that decisions depend on."""

    endpoint: str
    swap: SwapPolicy
    copy: CopyPolicy
    copy_deadline: float
    pull_secret: str | None  # name of the target pull secret to add, or None
    filters: Filters = field(default_factory=lambda: Filters(()))
    access_deadline: float = 1.5  # source.access.deadline
    # source.access.mirrorReferences
    mirror_references: MirrorReferencePolicy = MirrorReferencePolicy.DENY
    refresh_tags: RefreshTags = RefreshTags.ON_PULL  # mirror.refreshTags
    refresh_every: float = 3600.0  # mirror.refreshEvery
    recheck_every: float = 60.0  # mirror.recheckEvery (tags pulled with imagePullPolicy Always)
    verify: VerifyRules = NO_RULES  # mirror.verify: images swapped only with a valid signature

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        target = config.target
        return cls(
            endpoint=target.endpoint,
            swap=config.image_swap_policy,
            copy=config.image_copy_policy,
            copy_deadline=config.image_copy_deadline,
            pull_secret=target.pull_secret.name if target.pull_secret.enabled else None,
            filters=Filters([f.jmespath for f in config.source.filters]),
            access_deadline=config.source.access.deadline,
            mirror_references=config.source.access.mirror_references,
            refresh_tags=config.mirror.refresh_tags,
            refresh_every=config.mirror.refresh_every,
            recheck_every=config.mirror.recheck_every,
            verify=VerifyRules(config.mirror.verify) if config.mirror.verify else NO_RULES,
        )

    @property
    def copy_before_swap(self) -> bool:
        """Whether the pod waits for its copy (``immediate``, ``force``): the one rule for
        when admission waits on a copy, and for what an audit may take as copied."""
        return self.copy in (CopyPolicy.IMMEDIATE, CopyPolicy.FORCE)

    def waits(self, side_effects: bool) -> bool:
        """Whether deciding waits on I/O whatever the other checks say: an existence check
        (``exists``), or a copy the pod waits for (never in an audit: no side effects)."""
        return self.swap is SwapPolicy.EXISTS or (side_effects and self.copy_before_swap)

    def recheck(self, c: Candidate) -> float:
        """After how many seconds a copy of ``c`` looks at its source again (0: never). A
        digest never moves; under ``refreshTags: never`` a tag is pinned to its first copy."""
        if c.source.digest or self.refresh_tags is RefreshTags.NEVER:
            return 0.0
        if c.container.spec.get("imagePullPolicy") == "Always":
            return min(self.recheck_every, self.refresh_every)
        return self.refresh_every


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """What one image string means under a target endpoint (pure, so cached per string)."""

    ref: ImageReference | None  # None: not a valid reference (``problem`` says why)
    problem: str  # why the image cannot be mirrored, "" when it can
    at_origin: bool  # already in the target registry
    target: str
    repository: str  # repository path in the target registry, prefix included
    source: ImageReference | None = None  # at the origin: the source its mirror path names


@functools.lru_cache(maxsize=4096)
def image_plan(image: str, endpoint: str, is_origin: Callable[[ImageReference], bool]) -> ImagePlan:
    """Parse ``image`` and name its mirror. A cluster runs a few hundred distinct images, admitted
    over and over, so this is cached (bounded); ``is_origin`` must be pure, as the protocol says.
    """
    try:
        ref = parse(image)
    except SwapperError as exc:
        return ImagePlan(None, str(exc.args[0] if exc.args else exc), False, "", "")
    mirror_path = ref.mirror_path()
    problem = ""
    if len(endpoint) + 1 + len(mirror_path) > NAME_MAX:
        problem = f"mirror name for {image} is over {NAME_MAX} characters"
    prefix = endpoint.partition("/")[2]
    repository = f"{prefix}/{mirror_path}" if prefix else mirror_path
    at_origin = is_origin(ref)
    source = source_of_mirror(ref, endpoint) if at_origin else None
    return ImagePlan(ref, problem, at_origin, target_reference(ref, endpoint), repository, source)


def plan(
    pod: Mapping[str, Any],
    namespace: str,
    policy: Policy,
    is_origin: Callable[[ImageReference], bool],
    check_origin: bool = False,
    *,
    containers: Sequence[Container] | None = None,
    secret_frozen: bool = False,
) -> tuple[list[Decision], list[Candidate]]:
    """Settle what needs no I/O for a pod spec in ``namespace``; no admission request needed.
    ``is_origin(ref) -> bool`` comes from the target (pure).

    ``containers``: the ones to look at (default: every container of the pod). With
    ``check_origin``, a container naming a mirror image directly is a candidate too (with
    ``origin`` set and the source its mirror path names): its source's access is checked.
    ``secret_frozen``: the pod's ``imagePullSecrets`` cannot change (an ephemeral-container
    update), so a swap that needs the target pull secret the pod lacks is not made.
    """
    if containers is None:
        containers = pod_containers(pod)
    if not containers:
        return [], []
    if len(policy.filters):
        pod = with_namespace(pod, namespace)
    settled: list[Decision] = []
    candidates: list[Candidate] = []
    memo: dict[int, Any] = {}  # pod-level filter results, shared by the pod's containers
    for container in containers:
        image = image_plan(container.image, policy.endpoint, is_origin)
        if image.ref is None:
            settled.append(Decision(container, Outcome.INVALID_REFERENCE, detail=image.problem))
            continue
        if image.at_origin:
            if check_origin and image.source is not None:
                candidates.append(
                    Candidate(container, image.source, container.image, "", origin=True)
                )
            else:
                settled.append(Decision(container, Outcome.SKIPPED_ORIGIN))
            continue
        matched = policy.filters.first_match(pod, container.spec, memo)
        if matched is not None:
            settled.append(Decision(container, Outcome.SKIPPED_FILTER, filter_index=matched))
            continue
        if image.problem:
            settled.append(Decision(container, Outcome.INVALID_REFERENCE, detail=image.problem))
            continue
        if secret_frozen:
            settled.append(
                Decision(
                    container,
                    Outcome.NO_PULL_SECRET,
                    target=image.target,
                    detail=f"pod lacks imagePullSecret {policy.pull_secret} and it cannot be "
                    "added on update",
                )
            )
            continue
        candidates.append(Candidate(container, image.ref, image.target, image.repository))
    return settled, candidates


def in_container_order(settled: list[Decision], resolved: list[Decision]) -> list[Decision]:
    """A pod's decisions in container order: those :func:`plan` settled and those
    :meth:`Mutator.resolve` decided (each list already in that order)."""
    if not settled or not resolved:
        return settled or resolved
    return sorted(
        settled + resolved,
        key=lambda d: (CONTAINER_FIELDS.index(d.container.field), d.container.index),
    )


def _refused(c: Candidate, access: Access) -> Resolved:
    """The decision for a candidate whose source the pod may not read (or not known)."""
    kind, detail = refused(str(c.source), access, origin=c.origin)
    return Resolved(Outcome(kind.value), CopyState.NONE, detail)


_ORIGIN_OK = Resolved(Outcome.SKIPPED_ORIGIN)


def unverified(c: Candidate, signed: Signed, rules: str) -> Resolved:
    """The decision for a candidate whose signature did not verify (or was not checked)."""
    if signed.state is SignatureState.ERROR:
        detail = f"the signature of {c.source} could not be checked ({signed.reason})"
    else:
        detail = f"{c.source} is not signed by a key of {rules}: {signed.reason}"
    return Resolved(Outcome.UNVERIFIED_SIGNATURE, CopyState.NONE, detail)


_NOT_CHECKED = Signed(SignatureState.ERROR, reason="no signature checker here")
_NO_RULE = Signed(SignatureState.VERIFIED, reason="no mirror.verify rule applies")


def requester_of(pod: Mapping[str, Any], namespace: str) -> Requester:
    """The pod's namespace, pull secrets and ServiceAccount."""
    return Requester(namespace, pull_secret_names(pod), service_account(pod))


def copy_job(
    c: Candidate, who: Requester, policy: Policy, source: ImageReference | None = None
) -> CopyJob:
    """The copy that mirrors candidate ``c`` for the pod ``who``; ``source``: the candidate's
    source pinned to the digest whose signature verified (the tag's recheck is kept)."""
    recheck = policy.recheck(c)
    return CopyJob(
        source or c.source,
        c.target,
        c.repository,
        who.namespace,
        who.pull_secrets,
        who.service_account,
        recheck,
    )


class Mutator:
    """Applies the access check, the copy and swap policies through the protocols."""

    def __init__(
        self,
        policy: Policy,
        target: TargetRegistry,
        queue: CopyQueue,
        access: SourceAccess | None = None,
        signatures: SignatureCheck | None = None,
    ) -> None:
        self.policy = policy
        self.target = target
        self.queue = queue
        self.access: SourceAccess = access or OpenAccess()
        self._checks_access = not isinstance(self.access, OpenAccess)
        # Without a checker, an image mirror.verify applies to is never swapped (fail closed).
        self.signatures = signatures
        self._verifies = len(policy.verify) > 0

    def plan(
        self,
        pod: Mapping[str, Any],
        namespace: str,
        *,
        containers: Sequence[Container] | None = None,
        secret_frozen: bool = False,
    ) -> tuple[list[Decision], list[Candidate]]:
        """:func:`plan` with this mutator's policy and target."""
        check_origin = self._checks_access and checks_mirror_references(
            self.policy.mirror_references
        )
        return plan(
            pod,
            namespace,
            self.policy,
            self.target.is_origin,
            check_origin,
            containers=containers,
            secret_frozen=secret_frozen,
        )

    async def resolve(
        self,
        candidates: Sequence[Candidate],
        who: Requester,
        side_effects: bool,
    ) -> list[Decision]:
        """One decision per candidate, in order. Each distinct target is worked on once.

        Access checks still unanswered run for every candidate at once, up to the policy's
        ``access_deadline``; a candidate whose check runs out is ``skipped-unverified`` and
        the others go on.
        """
        unique: dict[str, Candidate] = {}
        for candidate in candidates:
            unique.setdefault(candidate.target, candidate)
        # Without access checks every image is allowed: no lookup per image on the hot path.
        known: list[Access | None] = (
            [self.access.known(c.source, who) for c in unique.values()]
            if self._checks_access
            else [READABLE] * len(unique)
        )
        # mirror.verify: the cached answers (None: to be asked), no lookup without rules.
        signed: list[Signed | None] = (
            [self._known_signature(c) for c in unique.values()]
            if self._verifies
            else [_NO_RULE] * len(unique)
        )
        if self.policy.waits(side_effects) or None in known or None in signed:
            now = asyncio.get_running_loop().time()
            deadline = now + self.policy.access_deadline
            # A signature check may take as long as the copy admission waits for, if any.
            verify_deadline = now + (
                self.policy.copy_deadline
                if side_effects and self.policy.copy_before_swap
                else self.policy.access_deadline
            )
            results = await asyncio.gather(
                *(
                    self._one(c, who, side_effects, k, deadline, verify_deadline)
                    for c, k in zip(unique.values(), known, strict=True)
                )
            )
        else:  # nothing can block (the hot path of `always`): no coroutine per image
            results = [
                self._settled(c, k or READABLE)
                or self._signed_now(c, s or _NO_RULE, who, side_effects)
                for c, k, s in zip(unique.values(), known, signed, strict=True)
            ]
        by_target = dict(zip(unique, results, strict=True))
        decisions = []
        for c in candidates:
            found = by_target[c.target]
            decisions.append(
                Decision(c.container, found.outcome, c.target, None, found.copy, found.detail)
            )
        return decisions

    def may_wait(self, side_effects: bool) -> bool:
        """Whether deciding may wait on I/O (an access check, a copy, an existence check)."""
        return self._checks_access or self._verifies or self.policy.waits(side_effects)

    def _known_signature(self, c: Candidate) -> Signed | None:
        """The signature answer for ``c`` without I/O: :data:`_NO_RULE` when no rule applies,
        None when it must be asked."""
        rules = self.policy.verify.matching(c.source)
        if not rules:
            return _NO_RULE
        if self.signatures is None:
            return _NOT_CHECKED
        return self.signatures.known(c.source, rules)

    def _signed_now(
        self, c: Candidate, signed: Signed, who: Requester, side_effects: bool
    ) -> Resolved:
        """The decision when nothing waits, given the (known) signature answer."""
        if signed is _NO_RULE:
            return self._now(c, who, side_effects)
        if not signed.verified:
            return unverified(
                c, signed, self.policy.verify.describe(self.policy.verify.matching(c.source))
            )
        source = None
        if signed.digest and not c.source.digest:
            source = dataclasses.replace(c.source, digest=signed.digest)
        return self._now(c, who, side_effects, source)

    def _now(
        self,
        c: Candidate,
        who: Requester,
        side_effects: bool,
        source: ImageReference | None = None,
    ) -> Resolved:
        """The decision when :meth:`may_wait` is false: swap, and hand over the copy if any."""
        try:
            copy = self._copy_without_waiting(c, who, side_effects, source)
        except Exception as exc:  # a backend failure decides this container only
            return Resolved(Outcome.ERROR, CopyState.NONE, f"{type(exc).__name__}: {exc}")
        assert copy is not None, "may_wait() said no copy is waited for"
        return Resolved(Outcome.SWAPPED, copy)

    @staticmethod
    def _settled(c: Candidate, access: Access) -> Resolved | None:
        """The decision the access answer settles by itself, or None to go on."""
        if not access.readable:
            return _refused(c, access)
        return _ORIGIN_OK if c.origin else None

    async def _one(
        self,
        c: Candidate,
        who: Requester,
        side_effects: bool,
        known: Access | None,
        deadline: float,
        verify_deadline: float | None = None,
    ) -> Resolved:
        try:
            access = known or await self.access.check(c.source, who, deadline)
            settled = self._settled(c, access)
            if settled is not None:
                return settled
            source = None
            rules = self.policy.verify.matching(c.source) if self._verifies else ()
            if rules:
                signed = await self._signature(c, rules, who, verify_deadline or deadline)
                if not signed.verified:
                    return unverified(c, signed, self.policy.verify.describe(rules))
                if signed.digest and not c.source.digest:
                    source = dataclasses.replace(c.source, digest=signed.digest)
            copy = self._copy_without_waiting(c, who, side_effects, source)
            if copy is None:
                copy = await self._copy_and_wait(c, who, source)
            if self.policy.swap is SwapPolicy.ALWAYS:
                return Resolved(Outcome.SWAPPED, copy)
            # exists: a copy that just finished (or would have) needs no second look.
            if copy is CopyState.COPIED or (
                copy is CopyState.WOULD_COPY and self.policy.copy_before_swap
            ):
                return Resolved(Outcome.SWAPPED, copy)
            if await self.target.image_exists(c.target):
                return Resolved(Outcome.SWAPPED, copy)
            return Resolved(Outcome.NOT_FOUND, copy, "target image does not exist yet")
        except Exception as exc:  # a backend failure decides this container only
            return Resolved(Outcome.ERROR, CopyState.NONE, f"{type(exc).__name__}: {exc}")

    async def _signature(
        self, c: Candidate, rules: tuple[int, ...], who: Requester, deadline: float
    ) -> Signed:
        if self.signatures is None:
            return _NOT_CHECKED
        known = self.signatures.known(c.source, rules)
        if known is not None:
            return known
        return await self.signatures.check(c.source, rules, who, deadline)

    def _copy_without_waiting(
        self, c: Candidate, who: Requester, side_effects: bool, source: ImageReference | None = None
    ) -> CopyState | None:
        """The copy state when getting it needs no waiting; None for immediate and force."""
        policy = self.policy.copy
        if policy is CopyPolicy.NONE:
            return CopyState.NONE
        if not side_effects:
            return CopyState.WOULD_COPY
        if policy is not CopyPolicy.DELAYED:
            return None
        try:
            self.queue.submit(copy_job(c, who, self.policy, source))
        except QueueFull:
            return CopyState.QUEUE_FULL
        return CopyState.QUEUED

    async def _copy_and_wait(
        self, c: Candidate, who: Requester, source: ImageReference | None = None
    ) -> CopyState:
        job = copy_job(c, who, self.policy, source)
        try:
            if self.policy.copy is CopyPolicy.IMMEDIATE:
                await self.queue.submit_and_wait(job, self.policy.copy_deadline)
            else:
                await self.queue.copy_now(job, self.policy.copy_deadline)
            return CopyState.COPIED
        except QueueFull:
            return CopyState.QUEUE_FULL
        except CopyDeadlineExceeded:
            return CopyState.DEADLINE
        except CopyError as exc:
            log.warning("copy_failed", source=str(c.source), target=c.target, reason=exc.reason)
            return CopyState.FAILED
