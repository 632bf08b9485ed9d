"""Who may read a source image: private images never leak across namespaces through the mirror.

The mirror is readable with swapper's pull secret by every pod that is swapped. If swapper
mirrored a private image for one namespace and then swapped a pod of another namespace to
it, that pod would read an image it could never pull from the source. So before a swap:

- the source repository is asked anonymously (``HEAD`` of the manifest): readable means
  **public**, and every pod may be swapped to it;
- otherwise it is **private**: the pod is swapped only if one of its own pull secrets (the
  credentials its kubelet would use, :mod:`swapper.kube.keyring`) can read it, each asked in
  the kubelet's order;
- registries listed in ``source.registries`` are readable with swapper's own credentials,
  which the operator configured for the whole cluster (as node credentials are on EKS/GKE):
  every pod may be swapped to their images.

Answers are cached per repository (public) and per credential and repository (private), for
``ttl`` seconds; a "no" is cached for ``negative_ttl``. A reference that does not exist (404)
says nothing about the repository's other tags: that "no" is cached for that reference only,
so a pod naming a missing tag does not make a public repository look private. When the
source cannot be asked (down, timing out, rate limiting) the last answer is used even if
older, and with no answer the image is not swapped: a pod keeps its original reference
rather than gain access it may not have. Credentials are held as a SHA-256 fingerprint in
the cache keys, never in clear.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from swapper.errors import CopyError
from swapper.images import ImageReference
from swapper.kube.keyring import Keyring, RegistryAuth
from swapper.logs import get_logger
from swapper.mirror.queue import Requester
from swapper.oci import Credentials, RegistryClient

log = get_logger("swapper.mirror")

_DENIED = frozenset({"unauthorized", "denied"})
_MISSING = "missing"  # the manifest is not there: a "no" for this reference only


@runtime_checkable
class SourceAccess(Protocol):
    def known(self, source: ImageReference, who: Requester) -> bool | None:
        """The cached answer, without I/O; None when it must be asked."""
        ...

    async def allows(self, source: ImageReference, who: Requester) -> bool:
        """Whether the pod may be swapped to the mirror of ``source``."""
        ...


class OpenAccess:
    """Every pod may read every image (``source.checkAccess: false``)."""

    def known(self, source: ImageReference, who: Requester) -> bool | None:
        return True

    async def allows(self, source: ImageReference, who: Requester) -> bool:
        return True


@dataclass
class MemoryAccess:
    """For tests: ``private`` maps a repository (``ref.name``) to the pull-secret names that can
    read it; anything else is public. ``asked`` counts the lookups that were not cached."""

    private: dict[str, set[str]] = field(default_factory=dict)
    asked: int = 0

    def known(self, source: ImageReference, who: Requester) -> bool | None:
        return None if source.name in self.private else True

    async def allows(self, source: ImageReference, who: Requester) -> bool:
        self.asked += 1
        readers = self.private.get(source.name)
        return readers is None or bool(readers.intersection(who.pull_secrets))


KeyringSource = Callable[[Requester], Keyring]


def _fingerprint(auth: RegistryAuth) -> str:
    material = "\0".join((auth.username, auth.password, auth.identity_token))
    return hashlib.sha256(material.encode()).hexdigest()


def _reference(source: ImageReference) -> str:
    return source.digest or source.tag or "latest"


def _missing_key(source: ImageReference) -> str:
    return f"{source.name}@{_reference(source)}"


@dataclass
class _Answer:
    readable: bool
    at: float


class RegistryAccess:
    """Asks source registries (see the module docstring)."""

    def __init__(
        self,
        client: RegistryClient,
        keyrings: KeyringSource,
        shared_registries: frozenset[str] = frozenset(),
        ttl: float = 3600.0,
        negative_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.keyrings = keyrings
        self.shared = shared_registries
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.clock = clock
        self._answers: dict[tuple[str, str], _Answer] = {}  # (fingerprint or "", repo)
        self._inflight: dict[tuple[str, str], asyncio.Future[bool | str | None]] = {}
        self.requests = 0  # registry round trips made, for tests and benchmarks

    def _fresh(self, key: tuple[str, str]) -> bool | None:
        answer = self._answers.get(key)
        if answer is None:
            return None
        age = self.clock() - answer.at
        return (
            answer.readable if age < (self.ttl if answer.readable else self.negative_ttl) else None
        )

    def _fresh_for(self, fingerprint: str, source: ImageReference) -> bool | None:
        """The repository's cached answer, else that of this very reference (a missing one)."""
        found = self._fresh((fingerprint, source.name))
        if found is None and self._fresh((fingerprint, _missing_key(source))) is False:
            return False
        return found

    def known(self, source: ImageReference, who: Requester) -> bool | None:
        if source.domain in self.shared:
            return True
        repo = source.name
        public = self._fresh_for("", source)
        if public:
            return True
        if public is None:
            return None
        for auth in self.keyrings(who).lookup(repo):
            readable = self._fresh_for(_fingerprint(auth), source)
            if readable is None:
                return None
            if readable:
                return True
        return False

    async def allows(self, source: ImageReference, who: Requester) -> bool:
        if source.domain in self.shared:
            return True
        repo = source.name
        public = await self._ask(source, None)
        if public:
            return True
        for auth in self.keyrings(who).lookup(repo):
            if await self._ask(source, auth):
                return True
        return False

    async def _ask(self, source: ImageReference, auth: RegistryAuth | None) -> bool:
        fingerprint = _fingerprint(auth) if auth else ""
        key = (fingerprint, source.name)
        fresh = self._fresh_for(fingerprint, source)
        if fresh is not None:
            return fresh
        asking = (fingerprint, _missing_key(source))  # one request per reference at a time
        pending = self._inflight.get(asking)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._inflight[asking] = pending
            try:
                pending.set_result(await self._head(source, auth))
            except BaseException as exc:
                pending.set_exception(exc)
                raise
            finally:
                del self._inflight[asking]
        result = await asyncio.shield(pending)
        if result == _MISSING:
            self._answers[asking] = _Answer(False, self.clock())
            return False
        if result is None:
            # The source could not tell: keep the last answer, however old, or say no; either
            # way it is not asked again before the cache runs out.
            last = self._answers.get(key)
            result = last.readable if last else False
        readable = result is True
        self._answers[key] = _Answer(readable, self.clock())
        return readable

    async def _head(self, source: ImageReference, auth: RegistryAuth | None) -> bool | str | None:
        """True: readable; False: denied; ``_MISSING``: no such manifest; None: unknown."""
        identity = (
            Credentials(auth.username, auth.password or auth.identity_token) if auth else None
        )

        async def provide(_: str) -> Credentials | None:
            return identity

        self.requests += 1
        repository = self.client.repository(source, credentials=provide)
        try:
            found = await repository.head_manifest(_reference(source))
        except CopyError as exc:
            if exc.reason in _DENIED:
                return False
            if exc.reason == "not-found":
                return _MISSING
            log.warning(
                "source_access_unknown",
                repository=source.name,
                credentials=auth.source if auth else "anonymous",
                reason=exc.reason,
            )
            return None
        return True if found is not None else _MISSING
