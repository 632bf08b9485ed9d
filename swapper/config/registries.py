"""The registries: ECR, Artifact Registry, any OCI registry, and the target (one of them)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from swapper.config.mirror import RegistryHost
from swapper.settings import Duration, _Model


class Tag(_Model):
    key: str
    value: str


class ImageScanningConfiguration(_Model):
    image_scan_on_push: bool = Field(True, alias="imageScanOnPush")


class EncryptionConfiguration(_Model):
    encryption_type: Literal["AES256", "KMS"] = Field("AES256", alias="encryptionType")
    kms_key: str = Field("", alias="kmsKey")

    @model_validator(mode="after")
    def _kms_needs_key(self) -> EncryptionConfiguration:
        # kmsKey next to AES256 does nothing: a warning (see _ignored_keys), as in the
        # reference project's own sample config.
        if self.encryption_type == "KMS" and not self.kms_key:
            raise ValueError("encryptionType KMS needs kmsKey")
        return self


class ECROptions(_Model):
    access_policy: str = Field("", alias="accessPolicy")
    lifecycle_policy: str = Field("", alias="lifecyclePolicy")
    tags: tuple[Tag, ...] = ()
    image_tag_mutability: Literal["MUTABLE", "IMMUTABLE"] = Field(
        "MUTABLE", alias="imageTagMutability"
    )
    image_scanning_configuration: ImageScanningConfiguration = Field(
        default_factory=lambda: ImageScanningConfiguration(),
        alias="imageScanningConfiguration",
    )
    encryption_configuration: EncryptionConfiguration = Field(
        default_factory=lambda: EncryptionConfiguration(),
        alias="encryptionConfiguration",
    )

    @field_validator("access_policy", "lifecycle_policy")
    @classmethod
    def _json_object(cls, value: str) -> str:
        if value:
            import json

            try:
                parsed = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"is not valid JSON: {exc}") from exc
            if not isinstance(parsed, dict):
                raise ValueError("must be a JSON object")
        return value


_ACCOUNT_ID = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_PATH_PREFIX = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)


def _check_prefix(value: str) -> str:
    value = value.strip("/")
    if value and not _PATH_PREFIX.match(value):
        raise ValueError(f"{value!r} is not a valid repository path prefix (lowercase, a-z0-9._-/)")
    return value


class AWSRegistry(_Model):
    account_id: str = Field(alias="accountId")
    region: str
    role: str = ""
    registry_id: str = Field("", alias="registryId")
    endpoint_url: str = Field("", alias="endpointUrl")
    # swapper's own key: override the registry host used for pushes and pod images, e.g. a
    # pull-through mirror or tests; default the real ECR domain.
    registry_host: str = Field("", alias="registryHost")
    prefix: str = ""
    ecr_options: ECROptions = Field(default_factory=lambda: ECROptions(), alias="ecrOptions")
    # Older k8s-image-swapper documentation puts these two next to accountId; accept them there.
    access_policy: str = Field("", alias="accessPolicy")
    lifecycle_policy: str = Field("", alias="lifecyclePolicy")

    @field_validator("account_id", mode="before")
    @classmethod
    def _account_id(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:012d}"
        if isinstance(value, str) and not _ACCOUNT_ID.match(value.strip()):
            raise ValueError(f"{value!r} is not a 12-digit AWS account id")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION.match(value):
            raise ValueError(f"{value!r} is not an AWS region (example: eu-west-1)")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _check_prefix(value)

    @field_validator("registry_host")
    @classmethod
    def _registry_host(cls, value: str) -> str:
        match = _GENERIC_REGISTRY.match(value) if value else None
        if value and (match is None or match.group("path")):
            raise ValueError(f"{value!r} is not HOST[:PORT]")
        return value.lower()

    @property
    def domain(self) -> str:
        """The ECR registry host ``<registry>.dkr.ecr.<region>.amazonaws.com[.cn]``."""
        suffix = "amazonaws.com.cn" if self.region.startswith("cn-") else "amazonaws.com"
        return f"{self.registry_id or self.account_id}.dkr.ecr.{self.region}.{suffix}"

    @property
    def endpoint(self) -> str:
        """Where mirrored images go: ``registryHost`` (or the ECR domain) ``[/prefix]``."""
        host = self.registry_host or self.domain
        return f"{host}/{self.prefix}" if self.prefix else host


def _label_chars_ok(text: str) -> bool:
    """GCP label characters: lowercase letters (international ones too), digits, ``_``, ``-``."""
    return all(c in "_-" or c.isdigit() or (c.isalpha() and not c.isupper()) for c in text)


def _check_gcp_labels(labels: dict[str, str]) -> dict[str, str]:
    """Google Cloud's label rules: at most 64; a key is 1-63 characters starting with a
    lowercase letter, a value 0-63; both lowercase letters, digits, ``_`` and ``-`` only
    (international lowercase letters allowed) and under 128 bytes in UTF-8."""
    if len(labels) > 64:
        raise ValueError(f"has {len(labels)} labels; Google Cloud allows at most 64")
    for key, value in labels.items():
        if not 1 <= len(key) <= 63 or len(key.encode()) >= 128:
            raise ValueError(f"label key {key!r} must be 1 to 63 characters")
        if not (key[0].isalpha() and not key[0].isupper()) or not _label_chars_ok(key):
            raise ValueError(
                f"label key {key!r} must start with a lowercase letter and hold only lowercase "
                "letters, digits, '_' and '-'"
            )
        if len(value) > 63 or len(value.encode()) >= 128:
            raise ValueError(f"label {key}: value {value!r} is longer than 63 characters")
        if not _label_chars_ok(value):
            raise ValueError(
                f"label {key}: value {value!r} may hold only lowercase letters, digits, '_' and '-'"
            )
    return labels


_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class GCPRegistry(_Model):
    location: str
    project_id: str = Field(alias="projectId")
    repository_id: str = Field(alias="repositoryId")
    prefix: str = ""
    create_repository: bool = Field(False, alias="createRepository")
    # Artifact Registry API (gRPC) endpoint: HOST[:PORT] or https://HOST[:PORT] over TLS;
    # http://HOST:PORT (loopback hosts only) is plaintext, for tests. Default: the public API.
    endpoint_override: str = Field("", alias="endpoint")
    # The Docker registry host images are pushed to and pulled from (tests point it elsewhere).
    registry_host: str = Field("", alias="registryHost")
    # Settings of a repository swapper creates (createRepository: true); never changed later.
    labels: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    immutable_tags: bool = Field(False, alias="immutableTags")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _check_prefix(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_gcp_labels(value)

    @field_validator("registry_host")
    @classmethod
    def _registry_host(cls, value: str) -> str:
        match = _GENERIC_REGISTRY.match(value)
        if value and (match is None or match.group("path")):
            raise ValueError(f"{value!r} is not HOST[:PORT]")
        return value.lower()

    @field_validator("endpoint_override")
    @classmethod
    def _endpoint_override(cls, value: str) -> str:
        if not value:
            return value
        scheme, sep, address = value.rpartition("://")
        match = _GENERIC_REGISTRY.match(address)
        if (sep and scheme not in ("http", "https")) or match is None or match.group("path"):
            raise ValueError(f"{value!r} is not [https://|http://]HOST[:PORT]")
        if scheme == "http" and match.group("host").strip("[]").lower() not in _LOOPBACK_HOSTS:
            raise ValueError(
                f"{value!r}: plaintext http:// is only allowed to a loopback host (tests); "
                "use HOST[:PORT] for TLS"
            )
        return value

    @property
    def domain(self) -> str:
        return self.registry_host or f"{self.location}-docker.pkg.dev"

    @property
    def endpoint(self) -> str:
        base = f"{self.domain}/{self.project_id}/{self.repository_id}"
        return f"{base}/{self.prefix}" if self.prefix else base


_GENERIC_REGISTRY = re.compile(
    r"^(?P<host>(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\]))(?::(?P<port>\d{1,5}))?(?:/(?P<path>.+))?$"
)


class GenericRegistry(_Model):
    """Any OCI distribution registry, as ``HOST[:PORT][/path-prefix]``."""

    registry: str
    insecure: bool = False
    ca_file: str = Field("", alias="caFile")
    credentials_file: str = Field("", alias="credentialsFile")
    # ``mirror.hosts.<domain>``, set by Config: it applies to the target's own requests too.
    _mirror_host: RegistryHost | None = PrivateAttr(default=None)

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        value = value.removeprefix("https://").removeprefix("http://").rstrip("/")
        match = _GENERIC_REGISTRY.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not HOST[:PORT][/path-prefix]")
        host = match.group("host").lower()
        if not ("." in host or ":" in value.split("/", 1)[0] or host == "localhost"):
            raise ValueError(
                f"{value!r}: the host needs a '.', a ':PORT' or to be 'localhost', otherwise "
                "image names under it would read as Docker Hub names"
            )
        port = f":{match.group('port')}" if match.group("port") else ""
        path = _check_prefix(match.group("path") or "")
        return f"{host}{port}/{path}" if path else f"{host}{port}"

    @property
    def domain(self) -> str:
        return self.registry.split("/", 1)[0]

    @property
    def endpoint(self) -> str:
        return self.registry

    def connection(self) -> RegistryHost:
        """How to reach the registry: ``insecure`` and ``caFile`` here, merged with
        ``mirror.hosts.<domain>`` (``insecure`` from either; its ``caFile`` and ``skipVerify``
        win)."""
        host = self._mirror_host or RegistryHost()
        return RegistryHost(
            insecure=self.insecure or host.insecure,
            skip_verify=host.skip_verify,
            ca_file=host.ca_file or self.ca_file,
        )


class PullSecret(_Model):
    enabled: bool = False
    name: str = "swapper-pull-secret"
    # swapper's own key: delete the Secret from namespaces where no pod refers to it any more
    cleanup: bool = False

    @field_validator("name")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", value):
            raise ValueError(f"{value!r} is not a valid Secret name")
        return value


class ExistenceCacheSettings(_Model):
    """How long answers of the mirror's existence checks are kept (swapper's own key)."""

    ttl: Annotated[float, Duration(86_400, "24h")] = (
        60.0  # a present image is re-checked (in the background) after this
    )
    negative_ttl: Annotated[float, Duration(86_400, "24h")] = Field(
        5.0, alias="negativeTtl"
    )  # "not there" is asked again after this


RegistryType = Literal["aws", "gcp", "generic"]
"""The registry kinds: each has its settings model here and its module in
:data:`swapper.targets.factory.TARGETS`."""


class Target(_Model):
    type: RegistryType = "aws"
    aws: AWSRegistry | None = None
    gcp: GCPRegistry | None = None
    generic: GenericRegistry | None = None
    pull_secret: PullSecret = Field(default_factory=lambda: PullSecret(), alias="pullSecret")
    existence_cache: ExistenceCacheSettings = Field(
        default_factory=lambda: ExistenceCacheSettings(), alias="existenceCache"
    )

    @model_validator(mode="after")
    def _selected_type_is_configured(self) -> Target:
        if getattr(self, self.type) is None:
            raise ValueError(f"target.type is {self.type!r} but target.{self.type} is missing")
        return self

    @property
    def endpoint(self) -> str:
        """``host[:port][/path]`` that every mirrored image lives under."""
        registry = getattr(self, self.type)
        assert registry is not None
        return str(registry.endpoint)
