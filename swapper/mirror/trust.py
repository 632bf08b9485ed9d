"""``mirror.verify``: which images need a signature, what a signature check answers, and the
protocol admission and the copier ask (pure: no I/O; the registry-backed checker is
:class:`swapper.mirror.signatures.SignatureVerifier`).

A rule applies to an image when one of its ``images`` prefixes matches the normalised reference
(``docker.io/library/nginx:1.27``), or when its ``jmespath`` is ``true`` over
``{"image", "registry", "repository", "tag", "digest"}``. The context is the image alone, not
the pod, on purpose: the same image is copied for a pod by admission and by the backfill, and
without one by the monitor, healing and ``swapper mirror``, and each must apply the same rules.
Every rule that applies must be satisfied: a signature that one of *its* keys verifies.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import jmespath
import jmespath.exceptions

from swapper.config import VerifyRule
from swapper.filters import FilterFunctions
from swapper.images import ImageReference
from swapper.mirror.queue import Requester

_OPTIONS = jmespath.Options(custom_functions=FilterFunctions())


class SignatureState(StrEnum):
    """What a signature check found; also the ``result`` label of
    ``swapper_signature_verifications_total``."""

    VERIFIED = "verified"  # every rule that applies has a signature one of its keys verifies
    UNSIGNED = "unsigned"  # no cosign signature at all
    INVALID = "invalid"  # signatures, but none verifies: another key, another digest, malformed
    ERROR = "error"  # the source registry could not be asked (in time): nothing is known


@dataclass(frozen=True, slots=True)
class Signed:
    """One answer: the state, the digest it is about (empty when not even that was learnt),
    why (a one-line reason), and the key that verified (its file path)."""

    state: SignatureState
    digest: str = ""
    reason: str = ""
    key: str = ""

    @property
    def verified(self) -> bool:
        return self.state is SignatureState.VERIFIED


@runtime_checkable
class SignatureCheck(Protocol):
    def known(self, source: ImageReference, rules: tuple[int, ...]) -> Signed | None:
        """The cached answer for ``source`` under the rules (indexes into ``mirror.verify``)
        without I/O; None when it must be asked."""
        ...

    async def check(
        self,
        source: ImageReference,
        rules: tuple[int, ...],
        who: Requester | None,
        deadline: float | None,
    ) -> Signed:
        """Verify ``source`` (read with ``who``'s pull secrets, else the operator's
        credentials) by ``deadline`` (the event loop's clock; None: no deadline). A check
        still running at the deadline goes on in the background and fills the cache; this
        call then answers :attr:`SignatureState.ERROR`. Never raises for bad input or a
        registry failure: that is a state."""
        ...


def image_context(ref: ImageReference) -> dict[str, Any]:
    """What a rule's JMESPath sees for ``ref``."""
    return {
        "image": str(ref),
        "registry": ref.domain,
        "repository": ref.path,
        "tag": ref.tag or "",
        "digest": ref.digest or "",
    }


def _prefix_matches(prefix: str, ref: ImageReference) -> bool:
    """A prefix ending in ``/`` matches everything under it; otherwise it is a repository
    (``ghcr.io/acme/api``: not ``ghcr.io/acme/api-evil``) or a reference (``...:1.4``)."""
    full = str(ref)
    if prefix.endswith("/"):
        return full.startswith(prefix)
    if ref.name == prefix or ref.name.startswith(prefix + "/"):
        return True
    return full == prefix or full.startswith((prefix + "@",))


class VerifyRules:
    """The ``mirror.verify`` rules, compiled once; :meth:`matching` is cached per reference."""

    def __init__(self, rules: Sequence[VerifyRule]) -> None:
        self.rules = tuple(rules)
        self._expressions = tuple(
            jmespath.compile(rule.jmespath) if rule.jmespath else None for rule in self.rules
        )
        self.matching = functools.lru_cache(maxsize=4096)(self._matching)

    def __len__(self) -> int:
        return len(self.rules)

    def _matching(self, ref: ImageReference) -> tuple[int, ...]:
        """The indexes of the rules that apply to ``ref`` (empty: no signature needed)."""
        if not self.rules:
            return ()
        found: list[int] = []
        context: dict[str, Any] | None = None
        for index, rule in enumerate(self.rules):
            if any(_prefix_matches(prefix, ref) for prefix in rule.images):
                found.append(index)
                continue
            expression = self._expressions[index]
            if expression is not None:
                context = context or image_context(ref)
                try:
                    result = expression.search(context, options=_OPTIONS)
                except (jmespath.exceptions.JMESPathError, ValueError, TypeError):
                    # A rule that cannot be evaluated applies: a signature is asked for
                    # rather than an image let through unchecked.
                    result = True
                if result is True:
                    found.append(index)
        return tuple(found)

    def describe(self, rules: tuple[int, ...]) -> str:
        """``mirror.verify[0]`` or ``mirror.verify[0], [2]``, for messages."""
        return "mirror.verify" + ", ".join(f"[{i}]" for i in rules)


NO_RULES = VerifyRules(())


class AssumedSigned:
    """A :class:`SignatureCheck` that asks nothing and takes every image as signed: for
    ``swapper explain``, which contacts nothing and says so."""

    def known(self, source: ImageReference, rules: tuple[int, ...]) -> Signed | None:
        return Signed(SignatureState.VERIFIED, source.digest or "", "not checked")

    async def check(
        self,
        source: ImageReference,
        rules: tuple[int, ...],
        who: Requester | None,
        deadline: float | None,
    ) -> Signed:
        return Signed(SignatureState.VERIFIED, source.digest or "", "not checked")
