"""The validated configuration.

One YAML file, read once at start. The keys of estahn/k8s-image-swapper's config file are accepted
as they are, so a user can point swapper at an existing file; swapper adds ``target.type: generic``
and a few keys of its own (documented in the README's config reference).

Unlike the reference project, every problem refuses to start: an unknown or misspelled key, a
value of the wrong type, a policy that does not exist, a JMESPath filter that does not compile.
The error names the key (``source.filters[1].jmespath``) and the problem, and suggests the
closest known key for a misspelling.
"""

from __future__ import annotations

import difflib
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import jmespath
import jmespath.exceptions
import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from swapper.errors import ConfigError


class SwapPolicy(StrEnum):
    """When a container's image is rewritten to the mirror."""

    ALWAYS = "always"  # always rewrite, whether or not the mirror has the image yet
    EXISTS = "exists"  # rewrite only when the mirror already has the image


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


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=True, str_strip_whitespace=True
    )


class JMESPathFilter(_Model):
    jmespath: str = Field(description="Skip the container when this expression is true.")

    @field_validator("jmespath")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            jmespath.compile(value)
        except jmespath.exceptions.JMESPathError as exc:
            raise ValueError(f"does not compile: {_one_line(str(exc))}") from exc
        return value


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
        if self.encryption_type == "KMS" and not self.kms_key:
            raise ValueError("encryptionType KMS needs kmsKey")
        if self.encryption_type == "AES256" and self.kms_key:
            raise ValueError("kmsKey is only used with encryptionType KMS")
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

    @model_validator(mode="after")
    def _creation_settings_need_create_repository(self) -> GCPRegistry:
        given = {"labels", "description", "immutable_tags"} & self.model_fields_set
        if given and not self.create_repository:
            fields = type(self).model_fields
            keys = ", ".join(sorted(fields[name].alias or name for name in given))
            raise ValueError(
                f"{keys}: only used when swapper creates the repository (createRepository: true)"
            )
        return self

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

    ttl: float = 60.0  # a present image is re-checked (in the background) after this
    negative_ttl: float = Field(5.0, alias="negativeTtl")  # "not there" is asked again after this

    @field_validator("ttl", "negative_ttl", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> float:
        seconds = parse_duration(value)
        if not 0 < seconds <= 86_400:
            raise ValueError("must be more than 0s and at most 24h")
        return seconds


class Target(_Model):
    type: Literal["aws", "gcp", "generic"] = "aws"
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
    type: Literal["aws", "gcp", "generic"]
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


_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")


class RegistryHost(_Model):
    """How to reach one registry host (source or target)."""

    insecure: bool = False  # plain HTTP
    skip_verify: bool = Field(False, alias="skipVerify")  # HTTPS without certificate checks
    ca_file: str = Field("", alias="caFile")


class Mirror(_Model):
    """How images are copied (swapper's own key ``mirror``)."""

    workers: int = Field(4, ge=1, le=64)
    max_queued: int = Field(1000, alias="maxQueued", ge=1, le=100_000)
    max_concurrent_blobs: int = Field(6, alias="maxConcurrentBlobs", ge=1, le=64)
    platforms: tuple[str, ...] = ()  # empty: every platform of an index
    fresh_for: float = Field(3600.0, alias="freshFor")
    recheck_every: float = Field(60.0, alias="recheckEvery")
    hosts: dict[str, RegistryHost] = Field(default_factory=dict)

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

    @field_validator("fresh_for", "recheck_every", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> float:
        seconds = parse_duration(value)
        if seconds < 0:
            raise ValueError("must not be negative")
        return seconds


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
    image_copy_deadline: float = Field(8.0, alias="imageCopyDeadline")
    admission_timeout: float = Field(
        9.0,
        validation_alias=AliasChoices("admissionTimeout"),
        serialization_alias="admissionTimeout",
    )
    source: Source = Field(default_factory=lambda: Source())
    target: Target
    mirror: Mirror = Field(default_factory=lambda: Mirror())

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
        return value.lower()

    @field_validator("image_copy_deadline", "admission_timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        seconds = parse_duration(value)
        if not 0 < seconds <= 30:
            raise ValueError("must be more than 0s and at most 30s (the webhook timeout limit)")
        return seconds

    @field_validator("listen_address")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        split_address(value)
        return value

    @model_validator(mode="after")
    def _deadline_inside_budget(self) -> Config:
        if self.image_copy_deadline >= self.admission_timeout:
            raise ValueError(
                f"imageCopyDeadline ({self.image_copy_deadline:g}s) must be less than "
                f"admissionTimeout ({self.admission_timeout:g}s)"
            )
        return self

    def with_overrides(self, **changes: Any) -> Config:
        return self.model_copy(update=changes)

    def effective(self) -> dict[str, Any]:
        """The config as swapper understands it, defaults filled in, under the YAML keys."""
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


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
