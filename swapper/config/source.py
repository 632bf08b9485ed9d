"""Where images come from (``source``): filters and registries; the access check's settings are
:mod:`swapper.access.settings`'s."""

from __future__ import annotations

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from swapper.access.settings import AccessSettings
from swapper.config.registries import AWSRegistry, GCPRegistry, RegistryType
from swapper.filters import check_jmespath
from swapper.settings import _Model


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
