"""What the source-access check answers, and the protocol every access checker implements.

:class:`Access` is one answer (readable, private, or unverified, with the reason);
:class:`SourceAccess` is what admission asks (:class:`OpenAccess` when checks are off). The
registry-backed checker is :class:`swapper.access.checker.RegistryAccess`. No I/O here: the pure
core (mutation) imports this module, never the checker.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from swapper.images import ImageReference
from swapper.requester import Requester


class Verdict(StrEnum):
    READABLE = "readable"  # public, shared, or readable with the pod's own credentials
    PRIVATE = "private"  # the registry answered: the pod's credentials cannot read it
    UNVERIFIED = "unverified"  # the source did not answer (in time)


ANONYMOUS_REFUSED = "not readable without credentials (private, or not there)"


@dataclass(frozen=True, slots=True)
class Access:
    verdict: Verdict
    reason: str = ""  # private: what was refused; unverified: "source unreachable: ..."

    @property
    def readable(self) -> bool:
        return self.verdict is Verdict.READABLE


READABLE = Access(Verdict.READABLE)


def unreachable(reason: str) -> Access:
    return Access(Verdict.UNVERIFIED, f"source unreachable: {reason}")


@runtime_checkable
class SourceAccess(Protocol):
    def known(self, source: ImageReference, who: Requester) -> Access | None:
        """The cached answer, without I/O; None when it must be asked."""
        ...

    async def check(self, source: ImageReference, who: Requester, deadline: float) -> Access:
        """Whether the pod may be swapped to the mirror of ``source``, answered by ``deadline``
        (the event loop's clock)."""
        ...


class OpenAccess:
    """Every pod may read every image (``source.checkAccess: false``)."""

    def known(self, source: ImageReference, who: Requester) -> Access | None:
        return READABLE

    async def check(self, source: ImageReference, who: Requester, deadline: float) -> Access:
        return READABLE
