"""The validated configuration.

One YAML file, read once at start. The keys of estahn/k8s-image-swapper's config file are accepted
as they are, so a user can point swapper at an existing file; swapper adds ``target.type: generic``
and a few keys of its own (documented in the README's config reference).

Unlike the reference project, every problem refuses to start: an unknown or misspelled key, a
value of the wrong type, a policy that does not exist, a JMESPath filter that does not compile or
calls a function that does not exist. The error names the key (``source.filters[1].jmespath``)
and the problem, and suggests the closest known key for a misspelling.

A setting that is valid but does nothing where it is (``kmsKey`` next to ``encryptionType:
AES256``, a ``target.aws`` section under ``target.type: generic``) does not stop the start: it
is listed in :attr:`Config.warnings`, naming the key, and left out of :meth:`Config.effective`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from swapper.errors import ConfigError
from swapper.filters import check_jmespath


class SwapPolicy(StrEnum):
    """When a container's image is rewritten to the mirror."""

    ALWAYS = "always"  # always rewrite, whether or not the mirror has the image yet
    EXISTS = "exists"  # rewrite only when the mirror already has the image


class RefreshTags(StrEnum):
    """When a mirrored tag is copied again from its source (``mirror.refreshTags``)."""

    NEVER = "never"  # the mirror keeps what it copied first: a pinned, stable copy
    ON_PULL = "onPull"  # a pod admitted with the tag looks at the source again (refreshEvery)
    ALWAYS = "always"  # onPull, and the monitor copies a tag it sees moved at the source


class CopyPolicy(StrEnum):
    """How the copy into the mirror is started."""

    DELAYED = "delayed"  # queue the copy and answer at once
    IMMEDIATE = "immediate"  # queue the copy and wait for it, up to imageCopyDeadline
    FORCE = "force"  # copy now, outside the queue, up to imageCopyDeadline
    NONE = "none"  # never copy


LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "fatal", "panic")

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def format_duration(seconds: float) -> str:
    """The shortest Go duration for ``seconds``: ``8s``, ``1h``, ``1m30s``, ``500ms``."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("us", 1_000)):
            if ns % size == 0:
                return f"{sign}{ns // size}{unit}"
        return f"{sign}{ns}ns"
    hours, ns = divmod(ns, 3_600_000_000_000)
    minutes, ns = divmod(ns, 60_000_000_000)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if ns:
        text += f"{ns / 1e9:.9f}".rstrip("0").rstrip(".") + "s"
    return sign + text


def parse_duration(value: object) -> float:
    """Seconds from a Go duration string (``8s``, ``1m30s``, ``500ms``) or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '8s'")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a duration such as '8s'")
    text = value.strip()
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(f"{value!r} is not a duration (examples: '8s', '1m30s', '500ms')")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total


@dataclasses.dataclass(frozen=True, slots=True)
class Duration:
    """The metadata that makes a ``float`` field a duration setting:
    ``Annotated[float, Duration(86_400, "24h")]``. It reads a Go duration (``8s``, ``1m30s``)
    or a number of seconds, keeps it within its bounds (more than 0s and at most ``high``,
    named ``label`` in the error; with ``zero_ok``, 0s too and no upper bound; ``zero_means``:
    what 0s stands for), and is written back as a Go duration in JSON (``check-config``, the
    config reload). The one place durations are read, checked and printed."""

    high: float | None = None
    label: str = ""
    zero_ok: bool = False
    zero_means: float | None = None

    def check(self, value: object) -> float:
        seconds = parse_duration(value)
        if seconds == 0 and self.zero_means is not None:
            return self.zero_means
        if self.zero_ok:
            if seconds < 0:
                raise ValueError("must not be negative")
            return seconds
        if not 0 < seconds <= (self.high if self.high is not None else float("inf")):
            raise ValueError(f"must be more than 0s and at most {self.label}")
        return seconds

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(
            self.check,
            handler(source),
            serialization=core_schema.plain_serializer_function_ser_schema(
                format_duration, when_used="json"
            ),
        )


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=True, str_strip_whitespace=True
    )


class JMESPathFilter(_Model):
    jmespath: str = Field(description="Skip the container when this expression is true.")

    @field_validator("jmespath")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return check_jmespath(value)


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
_KEYLESS_KEYS = (
    "keyless",
    "issuer",
    "subject",
    "identities",
    "certificateIdentity",
    "certificateOidcIssuer",
    "fulcio",
    "fulcioUrl",
    "rekor",
    "rekorUrl",
    "ctlog",
    "tuf",
)
_KEYLESS_WHY = (
    "keyless (Fulcio/Rekor) verification is not supported: it needs the network at admission "
    "(Fulcio's roots and Rekor's transparency log, kept fresh through TUF), and swapper "
    "verifies offline; sign with a key (cosign sign --key) and list its public key in keys"
)
_REMOTE_KEY = re.compile(r"^[a-z0-9]+://")


class VerifyRule(_Model):
    """One ``mirror.verify`` rule: the images it applies to, and the cosign public keys one of
    which must have signed them."""

    keys: tuple[str, ...] = Field(min_length=1)  # PEM files of ECDSA P-256 public keys
    images: tuple[str, ...] = ()  # reference prefixes: registry host first (docker.io/library/)
    jmespath: str = ""  # over {image, registry, repository, tag, digest}: true applies the rule
    _loaded: tuple[Any, ...] = PrivateAttr(default=())  # swapper.cosign.PublicKey, per key

    @model_validator(mode="before")
    @classmethod
    def _no_keyless(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in _KEYLESS_KEYS:
                if key in data:
                    raise ValueError(f"{key}: {_KEYLESS_WHY}")
        return data

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from swapper.cosign import load_public_key
        from swapper.errors import SignatureError

        for path in value:
            if _REMOTE_KEY.match(path):
                raise ValueError(
                    f"{path!r} is a KMS or remote key reference: give the path of "
                    "a PEM public key file (cosign public-key --key ... > cosign.pub)"
                )
            try:
                load_public_key(path)
            except SignatureError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("images")
    @classmethod
    def _images(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            first = prefix.split("/", 1)[0]
            if "/" not in prefix or not ("." in first or ":" in first or first == "localhost"):
                raise ValueError(
                    f"{prefix!r}: a prefix starts with the registry host (docker.io/library/nginx, "
                    "ghcr.io/acme/)"
                )
        return value

    @field_validator("jmespath")
    @classmethod
    def _jmespath(cls, value: str) -> str:
        return check_jmespath(value) if value else value

    @model_validator(mode="after")
    def _applies_somewhere(self) -> VerifyRule:
        if not (self.images or self.jmespath):
            raise ValueError(
                "name the images the rule applies to: images (reference prefixes) or jmespath"
            )
        from swapper.cosign import load_public_key

        self._loaded = tuple(load_public_key(path) for path in self.keys)
        return self

    @property
    def public_keys(self) -> tuple[Any, ...]:
        """The loaded keys (:class:`swapper.cosign.PublicKey`), in the order of ``keys``."""
        return self._loaded


_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")


class RegistryHost(_Model):
    """How to reach one registry host (source or target)."""

    insecure: bool = False  # plain HTTP
    skip_verify: bool = Field(False, alias="skipVerify")  # HTTPS without certificate checks
    ca_file: str = Field("", alias="caFile")


# A media type (RFC 6838 names), where ``*`` may stand for any text.
_ARTIFACT_TYPE = re.compile(r"^[A-Za-z0-9*][\w!#$&^.+*-]*/[A-Za-z0-9*][\w!#$&^.+*-]*$")


class Mirror(_Model):
    """How images are copied (swapper's own key ``mirror``)."""

    workers: int = Field(4, ge=1, le=64)
    max_queued: int = Field(1000, alias="maxQueued", ge=1, le=100_000)
    # The backfill's copies wait in a line of their own, below admission's.
    max_backfill_queued: int = Field(10_000, alias="maxBackfillQueued", ge=1, le=1_000_000)
    max_concurrent_blobs: int = Field(6, alias="maxConcurrentBlobs", ge=1, le=64)
    # Images copied (and swapped) only with a cosign signature one of the rule's keys verifies.
    verify: tuple[VerifyRule, ...] = ()
    platforms: tuple[str, ...] = ()  # empty: every platform of an index
    fresh_for: Annotated[float, Duration(zero_ok=True)] = Field(3600.0, alias="freshFor")
    recheck_every: Annotated[float, Duration(zero_ok=True)] = Field(60.0, alias="recheckEvery")
    # A mirrored tag that moved at the source: kept, or copied again (see RefreshTags); a tag
    # is looked at again at most once per refreshEvery (imagePullPolicy Always: recheckEvery).
    refresh_tags: RefreshTags = Field(RefreshTags.ON_PULL, alias="refreshTags")
    refresh_every: Annotated[float, Duration(30 * 86_400, "30 days")] = Field(
        3600.0, alias="refreshEvery"
    )
    # A blob body that sends nothing for this long is dropped and retried (apart from the
    # copy's total budget).
    blob_idle_timeout: Annotated[float, Duration(600, "10m")] = Field(15.0, alias="blobIdleTimeout")
    hosts: dict[str, RegistryHost] = Field(default_factory=dict)
    # What refers to a copied image (signatures, attestations, SBOMs: OCI 1.1 referrers and
    # cosign's tags) is copied with it; referrerTypes: the artifact types copied (``*``
    # wildcards), empty: all.
    referrers: bool = True
    referrer_types: tuple[str, ...] = Field((), alias="referrerTypes")

    @field_validator("platforms", mode="before")
    @classmethod
    def _platforms(cls, value: object) -> object:
        if value == "all" or value is None:
            return ()
        if isinstance(value, str):
            value = [p.strip() for p in value.split(",") if p.strip()]
        if isinstance(value, list | tuple):
            for item in value:
                if not isinstance(item, str) or not _PLATFORM.match(item):
                    raise ValueError(f"{item!r} is not OS/ARCH[/VARIANT], e.g. linux/arm64/v8")
        return value

    @field_validator("referrer_types", mode="before")
    @classmethod
    def _referrer_types(cls, value: object) -> object:
        if isinstance(value, str):
            value = [t.strip() for t in value.split(",") if t.strip()]
        if isinstance(value, list | tuple):
            for item in value:
                if not isinstance(item, str) or not _ARTIFACT_TYPE.match(item):
                    raise ValueError(
                        f"{item!r} is not an artifact type (a media type such as "
                        "application/vnd.dev.sigstore.bundle.v0.3+json; * matches any text)"
                    )
        return value


_SIZE = re.compile(r"^(\d+)(Ki|Mi|Gi)?$")
_SIZE_UNITS = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def parse_size(value: object) -> int:
    """Bytes from a number or a Kubernetes-style binary quantity (``64Ki``, ``8Mi``)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 8Mi")
    if isinstance(value, int):
        return value
    match = _SIZE.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a size (examples: 8388608, '64Ki', '8Mi')")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


class ServerSettings(_Model):
    """Limits of the HTTPS server (swapper's own key ``server``); see the README's Hardening."""

    max_request_bytes: int = Field(8 * 1024**2, alias="maxRequestBytes")  # 413 beyond
    max_header_bytes: int = Field(64 * 1024, alias="maxHeaderBytes")  # 431 beyond
    max_containers: int = Field(1000, alias="maxContainers", ge=1, le=100_000)  # per pod
    handshake_timeout: Annotated[float, Duration(3600, "1h")] = Field(
        5.0, alias="handshakeTimeout"
    )  # TLS handshake
    header_timeout: Annotated[float, Duration(3600, "1h")] = Field(
        5.0, alias="headerTimeout"
    )  # request line and headers
    # Longer than the API server's own idle timeout for webhook connections (90s), so it never
    # sends a request on a connection swapper is closing.
    keep_alive_timeout: Annotated[float, Duration(3600, "1h")] = Field(
        120.0, alias="keepAliveTimeout"
    )
    # Connections at once; beyond it the oldest idle one is closed, else the newest gets 503.
    # Kept below the open-file limit (raised to its hard limit at start).
    max_connections: int = Field(1000, alias="maxConnections", ge=16, le=1_000_000)

    @field_validator("max_request_bytes", "max_header_bytes", mode="before")
    @classmethod
    def _size(cls, value: object) -> int:
        size = parse_size(value)
        if not 1024 <= size <= 1024**3:
            raise ValueError("must be at least 1Ki and at most 1Gi")
        return size


DEFAULT_COPY_DEADLINE = 8.0


class HealSettings(_Model):
    """Pods stuck pulling a mirror image (``controller.heal``)."""

    enabled: bool = True  # the image copied back when the mirror lost it
    cooldown: Annotated[float, Duration(86_400, "24h")] = (
        300.0  # a pod is healed at most once per image per cooldown
    )
    # A mirror that cannot take the image back (it refuses the push): the stuck container is
    # patched back to its source, when the pod's own credentials can read it (RBAC: pods patch).
    revert: bool = False


class MonitorPace(_Model):
    """How often one registry is asked (``controller.monitor`` and its ``registries``)."""

    interval: Annotated[float, Duration(7 * 86_400, "7 days")] = 3600.0
    max_checks: int = Field(100, alias="maxChecks", ge=1, le=100_000)  # per interval


class MonitorSettings(MonitorPace):
    """The images in use, watched at the source and in the mirror (``controller.monitor``).

    Each registry (the mirror included) is asked at most ``maxChecks`` times per ``interval``,
    the checks spread evenly over it; ``registries`` sets another pace per host. The defaults
    (100 ``HEAD`` requests an hour per registry) stay far under Docker Hub's anonymous limits,
    which count manifest ``GET``s, not ``HEAD``s."""

    enabled: bool = True
    registries: dict[str, MonitorPace] = Field(default_factory=dict)
    # Images with a series of their own in swapper_image_info (the rest are counted only).
    max_info: int = Field(500, alias="maxInfo", ge=0, le=100_000)


class ControllerSettings(_Model):
    """The cluster half (``controller``): what the elected leader runs beside admission."""

    enabled: bool = True  # false: no leader election, no cluster loops, no RBAC for them
    lease_name: str = Field("swapper-controller", alias="leaseName", min_length=1, max_length=253)
    # client-go's leader-election semantics and defaults
    lease_duration: Annotated[float, Duration(3600, "1h")] = Field(15.0, alias="leaseDuration")
    renew_deadline: Annotated[float, Duration(3600, "1h")] = Field(10.0, alias="renewDeadline")
    retry_period: Annotated[float, Duration(3600, "1h")] = Field(2.0, alias="retryPeriod")
    backfill: bool = True  # mirror the images of pods already running
    # With dryRun: copy anyway (no patch, no Secret), so turning enforcement on finds the mirror
    # filled.
    prefill: bool = False
    # One copy per image across replicas: a short Lease per image being copied.
    share_copies: bool = Field(True, alias="shareCopies")
    copy_lease_duration: Annotated[float, Duration(3600, "1h")] = Field(
        30.0, alias="copyLeaseDuration"
    )
    # Pods listed per page by the pod watch.
    page_size: int = Field(500, alias="pageSize", ge=10, le=5000)
    # At most this many distinct images tracked (a bound on memory; more are logged once).
    max_images: int = Field(50_000, alias="maxImages", ge=100, le=1_000_000)
    heal: HealSettings = Field(default_factory=lambda: HealSettings())
    monitor: MonitorSettings = Field(default_factory=lambda: MonitorSettings())

    @model_validator(mode="after")
    def _lease_order(self) -> ControllerSettings:
        # client-go's checks: leaseDuration > renewDeadline > retryPeriod * 1.2 (JitterFactor).
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                f"leaseDuration ({self.lease_duration:g}s) must be greater than renewDeadline "
                f"({self.renew_deadline:g}s)"
            )
        if self.renew_deadline <= self.retry_period * 1.2:
            raise ValueError(
                f"renewDeadline ({self.renew_deadline:g}s) must be greater than 1.2 x "
                f"retryPeriod ({self.retry_period:g}s)"
            )
        return self


CLUSTER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
"""What ``clusterName`` may be: a lowercase DNS label (at most 63 characters), so that the
usage-mark tag ``swapper-used-<clusterName>-<32 hex>`` stays a valid tag (at most 128)."""


class CleanupSettings(_Model):
    """Deleting mirrored images nobody runs any more (``cleanup``), safe when several clusters
    share one registry: every cluster marks what it runs in the registry itself, and an image is
    deleted only when no cluster's mark is younger than ``retention``
    (:mod:`swapper.controller.cleanup`, :mod:`swapper.mirror.marks`).

    Off by default, and a dry run when turned on until ``dryRun: false``: it then reports what
    it would delete and deletes nothing."""

    enabled: bool = False
    dry_run: bool = Field(True, alias="dryRun")
    # The leader runs one pass at most this often.
    interval: Annotated[float, Duration(30 * 86_400, "30 days")] = 86_400.0
    # An image is deleted only when every cluster's mark on it is older than this (and, where
    # the registry says when it was pushed, it was pushed longer ago than this).
    retention: Annotated[float, Duration(3650 * 86_400, "10 years")] = 30 * 86_400.0
    # A cluster rewrites its mark on an image it runs at most this often.
    mark_every: Annotated[float, Duration(30 * 86_400, "30 days")] = Field(
        86_400.0, alias="markEvery"
    )
    # A repository left empty by a pass is deleted too (no target's admin protocol can delete
    # repositories yet: accepted, and a no-op that says so once per pass).
    delete_empty_repositories: bool = Field(False, alias="deleteEmptyRepositories")
    # Items asked per page of a registry listing.
    page_size: int = Field(100, alias="pageSize", ge=1, le=1000)
    # At most this many images deleted per pass (the rest wait for the next pass).
    max_deletes: int = Field(1000, alias="maxDeletes", ge=1, le=100_000)

    @model_validator(mode="after")
    def _marks_outlive_their_rewrite(self) -> CleanupSettings:
        # A mark is rewritten at most once per markEvery: were it as long as the retention, an
        # image in use could look unused between two rewrites.
        if self.mark_every >= self.retention:
            raise ValueError(
                f"markEvery ({format_duration(self.mark_every)}) must be less than retention "
                f"({format_duration(self.retention)})"
            )
        return self


_WebhookSeconds = Annotated[float, Duration(30, "30s (the webhook timeout limit)")]
# As in the reference project, an imageCopyDeadline of 0 means the default.
_CopyDeadline = Annotated[
    float, Duration(30, "30s (the webhook timeout limit)", zero_means=DEFAULT_COPY_DEADLINE)
]


class SupervisorSettings(_Model):
    """How swapper's long-running tasks are kept running (``supervisor``)."""

    # A task that raises is restarted after a backoff that doubles from backoffMin to backoffMax.
    backoff_min: Annotated[float, Duration(3600, "1h")] = Field(0.5, alias="backoffMin")
    backoff_max: Annotated[float, Duration(3600, "1h")] = Field(30.0, alias="backoffMax")
    # /readyz answers 503 while a task the webhook depends on has been down this long.
    not_ready_after: Annotated[float, Duration(3600, "1h")] = Field(10.0, alias="notReadyAfter")
    # Shutdown stops every task within this (keep it under terminationGracePeriodSeconds).
    shutdown_timeout: Annotated[float, Duration(3600, "1h")] = Field(20.0, alias="shutdownTimeout")


class Config(_Model):
    """The whole configuration. Field aliases are the YAML keys."""

    dry_run: bool = Field(False, alias="dryRun")
    log_level: str = Field("info", alias="logLevel")
    log_format: Literal["json", "console"] = Field("json", alias="logFormat")
    listen_address: str = Field("0.0.0.0:8443", alias="listenAddress")
    tls_cert_file: str = Field("", alias="tlsCertFile")
    tls_key_file: str = Field("", alias="tlsKeyFile")
    image_swap_policy: SwapPolicy = Field(SwapPolicy.EXISTS, alias="imageSwapPolicy")
    image_copy_policy: CopyPolicy = Field(CopyPolicy.DELAYED, alias="imageCopyPolicy")
    image_copy_deadline: _CopyDeadline = Field(DEFAULT_COPY_DEADLINE, alias="imageCopyDeadline")
    admission_timeout: _WebhookSeconds = Field(
        9.0,
        validation_alias=AliasChoices("admissionTimeout"),
        serialization_alias="admissionTimeout",
    )
    source: Source = Field(default_factory=lambda: Source())
    target: Target
    mirror: Mirror = Field(default_factory=lambda: Mirror())
    server: ServerSettings = Field(default_factory=lambda: ServerSettings())
    controller: ControllerSettings = Field(default_factory=lambda: ControllerSettings())
    supervisor: SupervisorSettings = Field(default_factory=lambda: SupervisorSettings())
    cleanup: CleanupSettings = Field(default_factory=lambda: CleanupSettings())
    # This cluster's name in the usage marks it writes into the target registry (cleanup).
    # Declared after ``cleanup``: its check reads that section.
    cluster_name: str = Field("", alias="clusterName", validate_default=True)
    _warnings: tuple[tuple[str, str], ...] = PrivateAttr(default=())

    @property
    def warnings(self) -> tuple[tuple[str, str], ...]:
        """``(key, message)`` for every setting that is valid but does nothing where it is."""
        return self._warnings

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
        return value.lower()

    @field_validator("listen_address")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        split_address(value)
        return value

    @field_validator("cluster_name")
    @classmethod
    def _cluster_name(cls, value: str, info: ValidationInfo) -> str:
        # A field validator (run for the default too) rather than a model validator, so that
        # the error names the key: ``clusterName: required once cleanup.enabled is true``.
        cleanup = info.data.get("cleanup")
        if not value:
            if isinstance(cleanup, CleanupSettings) and cleanup.enabled:
                raise ValueError(
                    "required once cleanup.enabled is true: the name this cluster's usage marks "
                    "carry in the shared registry (a lowercase DNS label, unique per cluster)"
                )
            return value
        if not CLUSTER_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a lowercase DNS label (a-z, 0-9 and '-', starting and ending "
                "with a letter or digit, at most 63 characters)"
            )
        return value

    @model_validator(mode="after")
    def _deadline_inside_budget(self) -> Config:
        if self.image_copy_deadline >= self.admission_timeout:
            raise ValueError(
                f"imageCopyDeadline ({self.image_copy_deadline:g}s) must be less than "
                f"admissionTimeout ({self.admission_timeout:g}s)"
            )
        if self.source.check_access and self.source.access.deadline >= self.admission_timeout:
            raise ValueError(
                f"source.access.deadline ({self.source.access.deadline:g}s) must be less than "
                f"admissionTimeout ({self.admission_timeout:g}s)"
            )
        return self

    @model_validator(mode="after")
    def _settle(self) -> Config:
        generic = self.target.generic
        if generic is not None:
            for host, settings in self.mirror.hosts.items():
                if host.lower() == generic.domain:
                    generic._mirror_host = settings
        self._warnings = tuple(_ignored_keys(self))
        return self

    def with_overrides(self, named: Mapping[str, str] | None = None, **changes: Any) -> Config:
        """A copy with ``changes`` (by field name), validated as a loaded config is. Raises
        ConfigError naming each bad key as ``named`` names it (a command-line option such as
        ``--listen-address``), else by its YAML key."""
        data = self.model_dump(by_alias=True, mode="json")
        shown: dict[str, str] = {}
        for name, value in changes.items():
            key = type(self).model_fields[name].alias or name
            data[key] = value
            shown[key] = (named or {}).get(name, key)
        try:
            return Config.model_validate(data)
        except ValidationError as exc:
            problems = [(shown.get(key, key), message) for key, message in _problems(exc)]
            raise ConfigError(problems, "command line") from None

    def effective(self) -> dict[str, Any]:
        """The config as swapper understands it, under the YAML keys, as ``check-config``
        prints it: defaults filled in, durations as Go durations (``8s``, ``1h``), only the
        keys that apply (no settings :attr:`warnings` lists, no section of a type not chosen),
        passwords and tokens as ``<redacted>``."""
        data = self.model_dump(by_alias=True, mode="json", exclude_none=True)
        target = data["target"]
        for kind in _REGISTRY_TYPES - {self.target.type}:
            target.pop(kind, None)
        if "aws" in target:
            _prune_ecr(target["aws"])
        gcp = self.target.gcp
        if "gcp" in target and gcp is not None and not gcp.create_repository:
            for key in _GCP_CREATION_KEYS:
                target["gcp"].pop(key, None)
        source = data["source"]
        for registry, dumped in zip(self.source.registries, source["registries"], strict=True):
            for kind in _REGISTRY_TYPES - {registry.type}:
                dumped.pop(kind, None)
            if "aws" in dumped:
                _prune_source_aws(dumped["aws"])
        for dumped in source["privateRegistries"]:
            _prune_source_aws(dumped["aws"])
        redacted: dict[str, Any] = _redacted(data)
        return redacted


_REGISTRY_TYPES = frozenset(get_args(RegistryType))
_GCP_CREATION_KEYS = ("labels", "description", "immutableTags")
# Keys of an AWS registry that only the target uses: under source.registries they do nothing.
_TARGET_ONLY_AWS_KEYS = (
    "prefix",
    "registry_host",
    "ecr_options",
    "access_policy",
    "lifecycle_policy",
)
# Keys whose values are secrets (only ``password`` exists today; the others guard what may come).
# Matched exactly: a ``mirror.hosts`` key like ``tokens.example.com`` is a host, not a secret.
_SECRET_KEYS = frozenset({"password", "token", "identityToken", "registryToken", "accessToken"})
REDACTED = "<redacted>"


def _alias(model: type[BaseModel], name: str) -> str:
    return model.model_fields[name].alias or name


def _prune_ecr(aws: dict[str, Any]) -> None:
    encryption = aws["ecrOptions"]["encryptionConfiguration"]
    if encryption["encryptionType"] != "KMS":
        encryption.pop("kmsKey", None)
    for key in ("accessPolicy", "lifecyclePolicy"):  # the older spelling, when unused
        if not aws.get(key):
            aws.pop(key, None)


def _prune_source_aws(aws: dict[str, Any]) -> None:
    for name in _TARGET_ONLY_AWS_KEYS:
        aws.pop(_alias(AWSRegistry, name), None)


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: REDACTED if item and key in _SECRET_KEYS else _redacted(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return value


def _ignored_keys(config: Config) -> Iterator[tuple[str, str]]:
    """``(key, message)`` for each setting given in the file that does nothing where it is."""
    target = config.target
    for kind in sorted(_REGISTRY_TYPES - {target.type}):
        if getattr(target, kind) is not None:
            yield f"target.{kind}", f"ignored: target.type is {target.type!r}"
    if target.type == "aws" and target.aws is not None:
        yield from _ignored_ecr_keys(target.aws, "target.aws")
    if target.type == "gcp" and target.gcp is not None and not target.gcp.create_repository:
        for name in sorted(
            {"labels", "description", "immutable_tags"} & target.gcp.model_fields_set
        ):
            yield (
                f"target.gcp.{_alias(GCPRegistry, name)}",
                "ignored: only used when swapper creates the repository (createRepository: true)",
            )
    for index, registry in enumerate(config.source.registries):
        where = f"source.registries[{index}]"
        for kind in sorted(_REGISTRY_TYPES - {registry.type}):
            if getattr(registry, kind) is not None:
                yield f"{where}.{kind}", f"ignored: type is {registry.type!r}"
        if registry.type == "aws" and registry.aws is not None:
            yield from _ignored_source_keys(registry.aws, f"{where}.aws")
    for index, legacy in enumerate(config.source.private_registries):
        yield from _ignored_source_keys(legacy.aws, f"source.privateRegistries[{index}].aws")


def _ignored_ecr_keys(aws: AWSRegistry, where: str) -> Iterator[tuple[str, str]]:
    encryption = aws.ecr_options.encryption_configuration
    if encryption.encryption_type != "KMS" and encryption.kms_key:
        yield (
            f"{where}.ecrOptions.encryptionConfiguration.kmsKey",
            f"ignored: only used with encryptionType KMS (encryptionType is "
            f"{encryption.encryption_type})",
        )


def _ignored_source_keys(aws: AWSRegistry, where: str) -> Iterator[tuple[str, str]]:
    for name in _TARGET_ONLY_AWS_KEYS:
        if name in aws.model_fields_set:
            key = _alias(AWSRegistry, name)
            yield f"{where}.{key}", "ignored: only used for the target registry"


def split_address(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``[IPv6]:PORT`` -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - a webhook listens on all interfaces
    return host, int(port)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _known_keys() -> set[str]:
    keys: set[str] = set()
    pending: list[type[BaseModel]] = [Config]
    seen: set[type[BaseModel]] = set()
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            keys.add(field.alias or name)
            for arg in _model_types(field.annotation):
                pending.append(arg)
    return keys


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()):
        found.extend(_model_types(arg))
    return found


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    known = _known_keys()
    problems: list[tuple[str, str]] = []
    for error in exc.errors():
        # Drop the internal tags pydantic adds for unions and enum/literal choices.
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p))
        if loc and loc[0] in Config.model_fields:  # a default that was validated: its key
            loc = (_alias(Config, str(loc[0])), *loc[1:])
        key = _location(loc)
        kind = error["type"]
        if kind == "extra_forbidden":
            leaf = str(loc[-1]) if loc else ""
            close = difflib.get_close_matches(leaf, known, n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = f"unknown key{hint}"
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = _one_line(str(error["msg"])).removeprefix("Value error, ")
        problems.append((key, message))
    return problems


def load_config(data: Any, source: str = "config") -> Config:
    """Validate parsed YAML. Raises :class:`ConfigError` naming every bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("(top level)", "expected a mapping of keys")], source)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc), source) from None


def load_config_file(path: str | Path) -> Config:
    """Read and validate a YAML config file. Raises :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("(file)", f"cannot read {path}: {exc.strerror}")], str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            [("(file)", f"not valid YAML: {_one_line(str(exc))}")], str(path)
        ) from None
    return load_config(data, str(path))
