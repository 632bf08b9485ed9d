"""Decisions -> the words of the answer (pure): warnings, audit annotations, the deny message.

The patch itself is :func:`swapper.admission.patches.build_patch`'s; the AdmissionReview around
them is :func:`swapper.admission.review.build_response`'s or
:func:`swapper.admission.review.deny_response`'s.
"""

from __future__ import annotations

from collections.abc import Iterable

from swapper.access.refusal import deny_message
from swapper.admission.review import Mode
from swapper.mutation import Decision, Outcome
from swapper.pods import Container

# Outside audit mode, only these outcomes are warned about.
_WARNED = (
    Outcome.ERROR,
    Outcome.INVALID_REFERENCE,
    Outcome.NO_SOURCE_ACCESS,
    Outcome.UNVERIFIED,
    Outcome.ORIGIN_PRIVATE,
    Outcome.ORIGIN_UNVERIFIED,
    Outcome.UNVERIFIED_SIGNATURE,
)


def describe(decisions: Iterable[Decision], mode: Mode) -> tuple[list[str], dict[str, str]]:
    """Warnings and audit annotations for a set of decisions.

    In audit mode there is one warning per container, and the swaps are ``would-swap``;
    otherwise (enforcing, or a server-side dry run) only the containers in
    ``_WARNED`` (errors, invalid references, sources the pod may not read or that could not
    be asked) are warned about.

    Audit annotation keys carry no ``/``: the API server prefixes them with the webhook name.
    """
    would = not mode.enforces  # audit: what would have been done
    warnings: list[str] = []
    swapped: list[str] = []
    skipped: list[str] = []
    for d in decisions:
        c = d.container
        if d.swapped:
            if would:
                warnings.append(f"{_who(c)}: would swap {c.image} -> {d.target}")
            swapped.append(f"{c.name}={d.target}")
        else:
            if would or d.outcome in _WARNED:
                warnings.append(f"{_who(c)}: {_reason(d)}")
            skipped.append(f"{c.name}={d.outcome.value}")
    annotations: dict[str, str] = {}
    if swapped:
        annotations["would-swap" if would else "swapped"] = ",".join(swapped)
    if skipped:
        annotations["skipped"] = ",".join(skipped)
    return warnings, annotations


def refusal(decisions: Iterable[Decision]) -> str | None:
    """The message that denies the pod under ``source.access.mirrorReferences: deny``: about
    the first container naming a mirror image whose source the pod may not read; None when
    there is none."""
    for d in decisions:
        if d.outcome is Outcome.ORIGIN_PRIVATE:
            return deny_message(_who(d.container), d.container.image, d.detail)
    return None


def _who(c: Container) -> str:
    return f"{c.field}[{c.name or c.index}]"


def _reason(d: Decision) -> str:
    match d.outcome:
        case Outcome.SKIPPED_FILTER:
            return f"skipped by filter {d.filter_index}"
        case Outcome.SKIPPED_ORIGIN:
            return f"not swapped: {d.container.image} is already in the target registry"
        case Outcome.NOT_FOUND:
            return f"not swapped: {d.target} is not in the target registry yet"
        case Outcome.INVALID_REFERENCE:
            return f"not swapped: {d.detail}"
        case Outcome.NO_PULL_SECRET:
            return f"not swapped: {d.detail}"
        case Outcome.ORIGIN_PRIVATE | Outcome.ORIGIN_UNVERIFIED:
            return f"names the mirror image {d.container.image} directly, and {d.detail}"
        case _:
            return f"not swapped: {d.detail or d.outcome.value}"
