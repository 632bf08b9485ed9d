"""Where images come from (``source``): filters, registries, the access check's settings."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from swapper.config._base import Duration, _Model
from swapper.config.registries import AWSRegistry, GCPRegistry, RegistryType
from swapper.filters import check_jmespath


class JMESPathFilter(_Model):
    jmespath: str = Field(description="Skip the container when this expression is true.")

    @field_validator("jmespath")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return check_jmespath(value)


class GenericSourceOptions(_Model):
    domain: str
    username: str = ""
    password: str = ""


class GenericSource(_Model):
    name: str = ""
    generic_options: GenericSourceOptions = Field(alias="genericOptions")


class SourceRegistry(_Model):
    type: RegistryType
    aws: AWSRegistry | None = None
    gcp: GCPRegistry | None = None
    generic: GenericSource | None = None

    @model_validator(mode="after")
    def _selected_type_is_configured(self) -> SourceRegistry:
        if getattr(self, self.type) is None:
            raise ValueError(f"type is {self.type!r} but {self.type} is missing")
        return self


class LegacyPrivateRegistry(_Model):
    aws: AWSRegistry


MirrorReferencePolicy = Literal["deny", "warn", "allow"]


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
    mirror_references: MirrorReferencePolicy = Field("deny", alias="mirrorReferences")

    @field_validator("config_map")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", value):
            raise ValueError(f"{value!r} is not a valid ConfigMap name")
        return value


class Source(_Model):
    registries: tuple[SourceRegistry, ...] = ()
    private_registries: tuple[LegacyPrivateRegistry, ...] = Field((), alias="privateRegistries")
    filters: tuple[JMESPathFilter, ...] = ()
    # swapper's own keys:
    check_access: bool = Field(True, alias="checkAccess")
    pod_pull_secrets: bool = Field(True, alias="podPullSecrets")
    access: AccessSettings = Field(default_factory=lambda: AccessSettings())

    @property
    def shared_domains(self) -> frozenset[str]:
        """Registries whose credentials the operator configured for the whole cluster."""
        domains: set[str] = set()
        for registry in self.registries:
            if registry.generic is not None:
                domains.add(registry.generic.generic_options.domain.lower())
            if registry.aws is not None:
                domains.add(registry.aws.domain)
        domains.update(legacy.aws.domain for legacy in self.private_registries)
        return frozenset(domains)


# Keys of cosign's keyless verification (Fulcio certificates, Rekor's log), which needs the network.
