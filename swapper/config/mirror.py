"""How images are copied (``mirror``): hosts, platforms, referrers, refreshes, ``verify``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from swapper.filters import check_jmespath
from swapper.settings import Duration, RefreshTags, _Model

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
