"""The target-registry protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from swapper.images import ImageReference, parse
from swapper.oci import RegistryClient


@dataclass(frozen=True, slots=True)
class Credentials:
    """Registry credentials for pulling from (or pushing to) the target."""

    username: str
    password: str = field(repr=False)
    expires_at: datetime | None = None  # None: does not expire


@runtime_checkable
class TargetRegistry(Protocol):
    """What admission and the copy queue need from a target registry."""

    @property
    def endpoint(self) -> str:
        """``host[:port][/path]`` that every mirrored image is put under."""
        ...

    def is_origin(self, ref: ImageReference) -> bool:
        """True when ``ref`` already points into this registry (never swap it again)."""
        ...

    async def image_exists(self, target: str) -> bool:
        """Whether the mirror reference ``target`` (a full reference) can be pulled now."""
        ...

    async def ensure_repository(self, repository: str) -> None:
        """Make sure the repository (path under the registry host) exists and is configured."""
        ...

    async def pull_credentials(self) -> Credentials | None:
        """Credentials nodes need to pull from the target, or None when pulls are anonymous."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


async def manifest_exists(client: RegistryClient, target: str) -> bool:
    """Whether the registry has the manifest a full reference names (a ``HEAD``, by digest when
    the reference has one, else by tag, ``latest`` when it has neither). Raises ``CopyError``."""
    ref = parse(target)
    found = await client.repository(ref).head_manifest(ref.digest or ref.tag or "latest")
    return found is not None
