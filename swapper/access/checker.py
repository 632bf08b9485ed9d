"""Who may read a source image: private images never leak across namespaces through the mirror.

The mirror is readable with swapper's pull secret by every pod that is swapped. If swapper
mirrored a private image for one namespace and then swapped a pod of another namespace to
it, that pod would read an image it could never pull from the source. So before a swap:

- the source repository is asked anonymously (``HEAD`` of the manifest): readable means
  **public**, and every pod may be swapped to it;
- otherwise the pod is swapped only if one of its own pull secrets (the credentials its
  kubelet would use, :mod:`swapper.access.keyring`) can read it, each asked in the kubelet's
  order;
- registries listed in ``source.registries`` are readable with swapper's own credentials,
  which the operator configured for the whole cluster (as node credentials are on EKS/GKE):
  every pod may be swapped to their images.

Each check ends in an :class:`Access`: **readable**; **private** (the registry answered, and
neither anonymous callers nor the pod's credentials may read it: 401, 403, or 404, which
cannot be told apart from outside); or **unverified** (the source did not answer in time,
refused the connection, or failed). A check never waits past the ``deadline`` it is given;
the registry round trip it started goes on in the background, once per key however many pods
ask (:class:`~swapper.aio.SingleFlight`), and its answer serves the next admission.

Answers are cached per repository (readable, denied) and per reference (missing: a pod naming
a missing tag does not make a public repository look private), in a bounded
:class:`~swapper.aio.TTLMap`, per credential fingerprint (SHA-256, never the credential):
readable for ``ttl``, denied or missing for ``negative_ttl``, unreachable for
``unverifiable_ttl`` (so an outage costs one wait, not one per pod). Public answers are also
kept in a :class:`~swapper.access.remembered.PublicAnswers` store (a ConfigMap shared by the
replicas and kept across restarts): a repository confirmed public there within ``ttl`` is not
asked again, and while its source is unreachable a public answer of any age still counts, so
a source outage does not turn mirroring off for images the mirror exists to serve. Answers
tied to a credential live only in memory. A repository whose source now refuses anonymous
reads (401/403) is forgotten there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from swapper.access.keyring import Keyring
from swapper.access.remembered import MemoryPublicAnswers, PublicAnswers
from swapper.access.verdicts import (
    ANONYMOUS_REFUSED,
    READABLE,
    Access,
    Verdict,
    unreachable,
)
from swapper.aio import SingleFlight, TTLMap
from swapper.credentials import Credentials
from swapper.errors import CopyError, CopyReason
from swapper.images import ImageReference
from swapper.logs import get_logger
from swapper.oci import RegistryClient
from swapper.requester import Requester

log = get_logger("swapper.mirror")


KeyringSource = Callable[[Requester], Keyring]


class _Said(StrEnum):
    """What one registry round trip said."""

    READABLE = "readable"
    DENIED = "denied"  # 401/403: for the whole repository
    MISSING = "missing"  # 404: for this reference only
    UNKNOWN = "unknown"  # no answer: connection, timeout, 5xx, rate limit


@dataclass(frozen=True, slots=True)
class _Answer:
    said: _Said
    reason: str = ""  # why unknown


_DENIED_REASONS = frozenset({CopyReason.UNAUTHORIZED, CopyReason.DENIED})
_Key = tuple[str, str]  # (credential fingerprint or "", repository or repository@reference)


def _reference(source: ImageReference) -> str:
    return source.digest or source.tag or "latest"


def _reference_key(source: ImageReference) -> str:
    return f"{source.name}@{_reference(source)}"


def _short(exc: CopyError) -> str:
    text = str(exc).splitlines()[0] if str(exc) else exc.reason
    return f"{exc.reason}: {text[-160:]}" if text != exc.reason else exc.reason


class RegistryAccess:
    """Asks source registries (see the module docstring)."""

    def __init__(
        self,
        client: RegistryClient,
        keyrings: KeyringSource,
        shared_registries: frozenset[str] = frozenset(),
        ttl: float = 3600.0,
        negative_ttl: float = 60.0,
        unverifiable_ttl: float = 30.0,
        cache_size: int = 10_000,
        remembered: PublicAnswers | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.keyrings = keyrings
        self.shared = shared_registries
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.unverifiable_ttl = unverifiable_ttl
        self.remembered: PublicAnswers = remembered or MemoryPublicAnswers()
        self.wall_clock = wall_clock
        # Readable/denied per repository, missing per reference; kept after expiry (stale
        # reads: the last answer while the source is down) until evicted.
        self._answers: TTLMap[_Key, _Said] = TTLMap(cache_size, clock)
        self._unreachable: TTLMap[_Key, str] = TTLMap(cache_size, clock)
        self._flight: SingleFlight[_Key, _Answer] = SingleFlight()
        self.requests = 0  # registry round trips made, for tests and benchmarks

    # -- what is known without I/O ---------------------------------------------------------

    def _cached(self, fingerprint: str, source: ImageReference) -> _Answer | None:
        said = self._answers.get((fingerprint, source.name))
        if said is not None:
            return _Answer(said)
        if self._answers.get((fingerprint, _reference_key(source))) is _Said.MISSING:
            return _Answer(_Said.MISSING)
        if not fingerprint and self._remembered_fresh(source.name):
            return _Answer(_Said.READABLE)
        reason = self._unreachable.get((fingerprint, source.name))
        if reason is not None:
            return self._fallback(fingerprint, source, reason)
        return None

    def _remembered_fresh(self, repository: str) -> bool:
        at = self.remembered.confirmed_at(repository)
        return at is not None and self.wall_clock() - at < self.ttl

    def _fallback(self, fingerprint: str, source: ImageReference, reason: str) -> _Answer:
        """The source cannot tell: a readable answer of any age still counts."""
        last = self._answers.entry((fingerprint, source.name))
        if last is not None and last[0] is _Said.READABLE:
            return _Answer(_Said.READABLE)
        if not fingerprint and self.remembered.confirmed_at(source.name) is not None:
            return _Answer(_Said.READABLE)
        return _Answer(_Said.UNKNOWN, reason)

    def known(self, source: ImageReference, who: Requester) -> Access | None:
        if source.domain in self.shared:
            return READABLE
        answers = [self._cached("", source)]
        if answers[0] is not None and answers[0].said is _Said.READABLE:
            return READABLE
        for auth in self.keyrings(who).lookup(source.name):
            answer = self._cached(auth.fingerprint(), source)
            if answer is not None and answer.said is _Said.READABLE:
                return READABLE
            answers.append(answer)
        if any(a is None for a in answers):
            return None
        return _verdict([a for a in answers if a is not None])

    # -- asking ----------------------------------------------------------------------------

    async def check(self, source: ImageReference, who: Requester, deadline: float) -> Access:
        if source.domain in self.shared:
            return READABLE
        answers = [await self._ask(source, None, deadline)]
        if answers[0].said is _Said.READABLE:
            return READABLE
        for auth in self.keyrings(who).lookup(source.name):
            answer = await self._ask(source, auth, deadline)
            if answer.said is _Said.READABLE:
                return READABLE
            answers.append(answer)
        return _verdict(answers)

    async def _ask(
        self, source: ImageReference, auth: Credentials | None, deadline: float
    ) -> _Answer:
        fingerprint = auth.fingerprint() if auth else ""
        cached = self._cached(fingerprint, source)
        if cached is not None:
            return cached
        # One round trip per reference at a time, whoever asks; it outlives this caller.
        key = (fingerprint, _reference_key(source))
        task = self._flight.start(key, lambda: self._head(source, auth, fingerprint))
        budget = deadline - asyncio.get_running_loop().time()
        try:
            answer = await asyncio.wait_for(asyncio.shield(task), max(0.0, budget))
        except TimeoutError:
            reason = "no answer in time"
            if (fingerprint, source.name) not in self._unreachable:
                self._unreachable.set((fingerprint, source.name), reason, self.unverifiable_ttl)
            return self._fallback(fingerprint, source, reason)
        if answer.said is _Said.UNKNOWN:
            return self._fallback(fingerprint, source, answer.reason)
        return answer

    async def _head(
        self, source: ImageReference, auth: Credentials | None, fingerprint: str
    ) -> _Answer:
        """One round trip; its answer is stored before it is returned."""

        async def provide(_: str) -> Credentials | None:
            return auth

        self.requests += 1
        repository = self.client.repository(source, credentials=provide)
        repo_key = (fingerprint, source.name)
        try:
            found = await repository.head_manifest(_reference(source))
        except CopyError as exc:
            if exc.reason in _DENIED_REASONS:
                self._store(repo_key, _Said.DENIED)
                if not fingerprint:
                    self.remembered.forget(source.name)
                return _Answer(_Said.DENIED)
            if exc.reason is not CopyReason.NOT_FOUND:
                reason = _short(exc)
                log.warning(
                    "source_access_unknown",
                    repository=source.name,
                    credentials=auth.source if auth else "anonymous",
                    reason=reason,
                )
                self._unreachable.set(repo_key, reason, self.unverifiable_ttl)
                return _Answer(_Said.UNKNOWN, reason)
            found = None
        if found is None:
            self._answers.set(
                (fingerprint, _reference_key(source)), _Said.MISSING, self.negative_ttl
            )
            return _Answer(_Said.MISSING)
        self._store(repo_key, _Said.READABLE)
        if not fingerprint:
            self.remembered.remember(source.name)
        return _Answer(_Said.READABLE)

    def _store(self, key: _Key, said: _Said) -> None:
        self._unreachable.pop(key)
        ttl = self.ttl if said is _Said.READABLE else self.negative_ttl
        self._answers.set(key, said, ttl)

    async def aclose(self) -> None:
        await self._flight.aclose()


def _verdict(answers: list[_Answer]) -> Access:
    """None of ``answers`` (anonymous first, then each credential) said readable."""
    unknown = [a.reason for a in answers if a.said is _Said.UNKNOWN]
    if unknown:
        return unreachable(unknown[0])
    if len(answers) == 1:
        return Access(Verdict.PRIVATE, ANONYMOUS_REFUSED)
    return Access(
        Verdict.PRIVATE,
        f"{ANONYMOUS_REFUSED}, nor with the pod's pull secrets",
    )
