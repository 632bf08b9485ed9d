"""What a source registry serves for an image now: the monitor's and the healer's question.

Unlike the access check (:mod:`swapper.access.checker`), which answers "may this pod read it?"
from a cache, a probe always asks, and says what is there: the digest a tag points at now, or
that the image is gone, or that nobody who uses it can read it, or that the registry did not
answer. One ``HEAD`` of the manifest per credential tried (a ``HEAD`` is no pull for Docker
Hub's rate limit), in this order:

1. the client's own credentials: the operator's for ``source.registries``, else anonymous;
2. then, for each pod that uses the image (its ``askers``), the pod's pull secrets in the
   kubelet's order. A private image is so only ever judged with the credentials of a pod that
   runs it; the probe returns which asker's credentials read it, so a copy made from its
   answer uses those and no other pod's.

``gone``: a credential that may read the repository got a 404 (or, with none, the anonymous
caller did). ``denied``: every credential was refused (401/403). ``unreachable``: connection,
timeout, 5xx, or a 429 (with the ``Retry-After`` it asked for, which the caller honours).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from swapper.access.checker import KeyringSource
from swapper.credentials import Credentials
from swapper.errors import CopyError, CopyReason, TransientCopyError
from swapper.images import ImageReference
from swapper.mirror.queue import Requester
from swapper.oci import CredentialsProvider, RegistryClient


class SourceState(StrEnum):
    SERVED = "served"
    GONE = "gone"
    DENIED = "denied"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class Probe:
    state: SourceState
    digest: str = ""  # served: the digest the reference resolves to now
    asker: int | None = None  # served with askers[asker]'s credentials; None: the client's own
    retry_after: float | None = None  # unreachable because of a 429 that asked for this wait
    reason: str = ""  # unreachable: why


@runtime_checkable
class SourceProbe(Protocol):
    async def probe(self, source: ImageReference, askers: Sequence[Requester]) -> Probe:
        """What the source serves for ``source`` now (see the module docstring)."""
        ...


_REFUSED = frozenset({CopyReason.UNAUTHORIZED, CopyReason.DENIED})


class RegistryProbe:
    """Asks the registries through ``client`` (see the module docstring)."""

    def __init__(self, client: RegistryClient, keyrings: KeyringSource | None = None) -> None:
        self.client = client
        self.keyrings = keyrings
        self.requests = 0

    async def probe(self, source: ImageReference, askers: Sequence[Requester]) -> Probe:
        reference = source.digest or source.tag or "latest"
        tries: list[tuple[int | None, Credentials | None]] = [(None, None)]
        seen: set[str] = set()
        if self.keyrings is not None:
            for index, who in enumerate(askers):
                for auth in self.keyrings(who).lookup(source.name):
                    if auth.fingerprint() not in seen:
                        seen.add(auth.fingerprint())
                        tries.append((index, auth))
        refused = gone = False
        for asker, credentials in tries:
            self.requests += 1
            repository = (
                self.client.repository(source)
                if asker is None
                else self.client.repository(source, credentials=_fixed(credentials))
            )
            try:
                found = await repository.head_manifest(reference)
            except CopyError as exc:
                if exc.reason in _REFUSED:
                    refused = True
                    continue
                wait = exc.retry_after if isinstance(exc, TransientCopyError) else None
                return Probe(SourceState.UNREACHABLE, retry_after=wait, reason=str(exc.reason))
            if found is None:
                gone = True
                continue
            return Probe(SourceState.SERVED, found.digest or reference, asker)
        if gone:
            return Probe(SourceState.GONE)
        return Probe(SourceState.DENIED) if refused else Probe(SourceState.GONE)


def _fixed(auth: Credentials | None) -> CredentialsProvider:
    async def provide(_: str) -> Credentials | None:
        return auth

    return provide
