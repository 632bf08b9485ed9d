"""The target-registry protocol."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from swapper.credentials import Credentials
from swapper.images import ImageReference


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

    async def image_digest(self, target: str) -> str | None:
        """The digest the mirror serves for ``target`` now (asked, never cached), or None when
        it has no such image. What the monitor compares with the source's."""
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
