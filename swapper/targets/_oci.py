"""What the OCI-registry targets share: a client of their own registry host, and the existence
check by manifest ``HEAD``. Imported by the target implementations only, never by the protocol
(:mod:`swapper.targets.base`), so what imports the protocol does not load :mod:`swapper.oci`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from swapper.credentials import Credentials
from swapper.images import parse
from swapper.oci import HostConfig, RegistryClient, RetryPolicy

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


async def manifest_digest(client: RegistryClient, target: str) -> str | None:
    """The digest of the manifest a full reference names (a ``HEAD``, by digest when the
    reference has one, else by tag, ``latest`` when it has neither), or None when absent.
    Raises ``CopyError``."""
    ref = parse(target)
    found = await client.repository(ref).head_manifest(ref.digest or ref.tag or "latest")
    return found.digest if found is not None else None
