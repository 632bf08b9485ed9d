"""The target-registry protocol."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from swapper.credentials import Credentials
from swapper.images import ImageReference, parse
from swapper.oci import HostConfig, RegistryClient, RetryPolicy


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


TARGET_RETRY = RetryPolicy(attempts=3, base_delay=0.2, max_delay=2.0)


def host_client(
    domain: str,
    host: HostConfig,
    credentials: Callable[[], Awaitable[Credentials | None]],
    timeout: float,
    retry: RetryPolicy | None = None,
) -> RegistryClient:
    """A client of the target's own registry host, sending ``credentials()`` to that host only."""

    async def provide(asked: str) -> Credentials | None:
        return await credentials() if asked == domain else None

    return RegistryClient(
        hosts={domain: host}, credentials=provide, retry=retry or TARGET_RETRY, timeout=timeout
    )


async def manifest_exists(client: RegistryClient, target: str) -> bool:
    """Whether the registry has the manifest a full reference names (a ``HEAD``, by digest when
    the reference has one, else by tag, ``latest`` when it has neither). Raises ``CopyError``."""
    ref = parse(target)
    found = await client.repository(ref).head_manifest(ref.digest or ref.tag or "latest")
    return found is not None
