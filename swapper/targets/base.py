"""The target-registry protocol."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from swapper.credentials import Credentials
from swapper.images import ImageReference, is_at_endpoint


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


class HasEndpoint(Protocol):
    @property
    def endpoint(self) -> str: ...


class UnderEndpoint:
    """What every target built from its settings shares: ``endpoint`` is the settings' (its
    ``config``), an image lies under it or not, and it exists when the mirror serves a digest
    for it. A target mixes this in and implements the rest of the protocol."""

    config: HasEndpoint

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    def is_origin(self, ref: ImageReference) -> bool:
        return is_at_endpoint(ref, self.config.endpoint)

    async def image_exists(self, target: str) -> bool:
        return await self.image_digest(target) is not None

    async def image_digest(self, target: str) -> str | None:
        raise NotImplementedError
