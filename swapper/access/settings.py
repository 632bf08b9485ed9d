"""The source-access check's settings (``source.access``): how it asks, remembers and enforces.

The config file's ``source`` section (:class:`swapper.config.Source`) holds them; they live here,
beside the check, and import nothing of swapper but the settings' base.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import Field, field_validator

from swapper.settings import Duration, _Model


class MirrorReferencePolicy(StrEnum):
    """What becomes of a pod naming a mirror image directly whose source its own credentials
    cannot read (``source.access.mirrorReferences``)."""

    DENY = "deny"  # the pod is refused
    WARN = "warn"  # admitted, with a warning
    ALLOW = "allow"  # not checked


class AccessSettings(_Model):
    """How the source-access check asks, remembers and enforces (``source.access``)."""

    # The lookup for all of one pod's containers at once; what is still unanswered then is
    # ``skipped-unverified`` and the pod's other containers go on.
    deadline: Annotated[float, Duration(30, "30s")] = 1.5
    ttl: Annotated[float, Duration(86_400, "24h")] = (
        3600.0  # a "readable" answer is believed this long
    )
    negative_ttl: Annotated[float, Duration(86_400, "24h")] = Field(
        60.0, alias="negativeTtl"
    )  # "not readable" is asked again after
    unverifiable_ttl: Annotated[float, Duration(86_400, "24h")] = Field(
        30.0, alias="unverifiableTtl"
    )  # "source unreachable" likewise
    cache_size: int = Field(10_000, alias="cacheSize", ge=100, le=1_000_000)  # answers in memory
    # The ConfigMap (in swapper's own namespace) that remembers public answers across restarts
    # and replicas; empty: remembered in memory only.
    config_map: str = Field("", alias="configMap")
    max_remembered: int = Field(5_000, alias="maxRemembered", ge=1, le=20_000)
    # A pod naming a mirror image directly whose source its own credentials cannot read.
    mirror_references: MirrorReferencePolicy = Field(
        MirrorReferencePolicy.DENY, alias="mirrorReferences"
    )

    @field_validator("config_map")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", value):
            raise ValueError(f"{value!r} is not a valid ConfigMap name")
        return value
