"""What a pod gets when it may not read an image's source (pure): the refusal's kind and words,
and the rule for a pod naming a mirror image directly (``source.access.mirrorReferences``).

- A container whose source the pod may not read is not swapped: ``skipped-private`` when the
  source said so, ``skipped-unverified`` when it could not be asked in time.
- A container naming the mirror image directly ("origin") is checked the same way unless the
  policy is ``allow``: ``origin-private`` / ``origin-unverified``. Under ``deny`` the first
  ``origin-private`` container denies the pod (:func:`deny_message`); under ``warn`` the pod
  is admitted with a warning. A source that could not be asked never denies a pod.

:mod:`swapper.mutation` turns a :class:`Refused` into its decision; the admission answer words
the denial with :func:`deny_message`.
"""

from __future__ import annotations

from enum import StrEnum

from swapper.access.settings import MirrorReferencePolicy
from swapper.access.verdicts import Access, Verdict


class Refused(StrEnum):
    """The decisions a refused source access leads to (their values are decision outcomes)."""

    PRIVATE = "skipped-private"  # the source answered: the pod's secrets cannot read it
    UNVERIFIED = "skipped-unverified"  # the source did not answer within source.access.deadline
    ORIGIN_PRIVATE = "origin-private"  # the same, for a pod naming the mirror image directly
    ORIGIN_UNVERIFIED = "origin-unverified"


def refused(source: str, access: Access, *, origin: bool) -> tuple[Refused, str]:
    """The refusal for a container whose source access is not readable, and its detail."""
    if access.verdict is Verdict.UNVERIFIED:
        kind = Refused.ORIGIN_UNVERIFIED if origin else Refused.UNVERIFIED
        return kind, f"could not verify that {source} is readable ({access.reason})"
    kind = Refused.ORIGIN_PRIVATE if origin else Refused.PRIVATE
    return kind, f"{source} is {access.reason}"


def checks_mirror_references(policy: MirrorReferencePolicy) -> bool:
    """Whether a container naming a mirror image directly has its source access checked."""
    return policy != MirrorReferencePolicy.ALLOW


def denies(policy: MirrorReferencePolicy) -> bool:
    """Whether an ``origin-private`` container denies its pod."""
    return policy == MirrorReferencePolicy.DENY


def deny_message(who: str, image: str, detail: str) -> str:
    """The message that denies a pod: container ``who`` names mirror image ``image`` directly,
    and ``detail`` (the refusal's) says why its source may not be read."""
    return (
        f"swapper: {who} names the mirror image {image} directly, and {detail}: a pod that may "
        "not read the source may not read its mirror (source.access.mirrorReferences: deny)"
    )
