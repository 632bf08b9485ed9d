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

import difflib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from swapper.config.controller import (
    CLUSTER_NAME,
    CleanupSettings,
    ControllerSettings,
    HealSettings,
    MonitorPace,
    MonitorSettings,
    SupervisorSettings,
)
from swapper.config.mirror import (
    Mirror,
    RegistryHost,
    VerifyRule,
)
from swapper.config.registries import (
    AWSRegistry,
    ECROptions,
    EncryptionConfiguration,
    ExistenceCacheSettings,
    GCPRegistry,
    GenericRegistry,
    ImageScanningConfiguration,
    PullSecret,
    RegistryType,
    Tag,
    Target,
)
from swapper.config.server import (
    ServerSettings,
)
from swapper.config.source import (
    GenericSource,
    GenericSourceOptions,
    JMESPathFilter,
    LegacyPrivateRegistry,
    Source,
    SourceRegistry,
)
from swapper.errors import ConfigError
from swapper.settings import (
    DEFAULT_COPY_DEADLINE,
    LOG_LEVELS,
    CopyPolicy,
    Duration,
    RefreshTags,
    SwapPolicy,
    _Model,
    format_duration,
    parse_duration,
    parse_size,
)

_WebhookSeconds = Annotated[float, Duration(30, "30s (the webhook timeout limit)")]
# As in the reference project, an imageCopyDeadline of 0 means the default.
_CopyDeadline = Annotated[
    float, Duration(30, "30s (the webhook timeout limit)", zero_means=DEFAULT_COPY_DEADLINE)
]


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


__all__ = [
    "CLUSTER_NAME",
    "DEFAULT_COPY_DEADLINE",
    "LOG_LEVELS",
    "REDACTED",
    "AWSRegistry",
    "CleanupSettings",
    "Config",
    "ControllerSettings",
    "CopyPolicy",
    "Duration",
    "ECROptions",
    "EncryptionConfiguration",
    "ExistenceCacheSettings",
    "GCPRegistry",
    "GenericRegistry",
    "GenericSource",
    "GenericSourceOptions",
    "HealSettings",
    "ImageScanningConfiguration",
    "JMESPathFilter",
    "LegacyPrivateRegistry",
    "Mirror",
    "MonitorPace",
    "MonitorSettings",
    "PullSecret",
    "RefreshTags",
    "RegistryHost",
    "RegistryType",
    "ServerSettings",
    "Source",
    "SourceRegistry",
    "SupervisorSettings",
    "SwapPolicy",
    "Tag",
    "Target",
    "VerifyRule",
    "format_duration",
    "load_config",
    "load_config_file",
    "parse_duration",
    "parse_size",
    "split_address",
]
