"""Registry authentication: challenges, credentials and a cache of scoped bearer tokens.

A registry says how it wants to be authenticated in the ``WWW-Authenticate`` header of a 401
(``GET /v2/`` is asked once per host when there are credentials to send; anonymous requests
learn it from their first 401): ``Basic realm=...`` or ``Bearer realm=...,service=...``.
For bearer, a token for the scopes a request needs (``repository:NAME:pull`` or
``repository:NAME:pull,push``, plus ``repository:OTHER:pull`` for a cross-repository mount) is
fetched from the realm, with basic credentials when the caller has some, and kept until
shortly before it expires. Tokens are keyed by host, identity and scopes: a token fetched with
one pod's credentials is never used for a request made with another's (or with none).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from swapper.aio import SingleFlight, TTLMap
from swapper.credentials import Credentials

__all__ = [
    "Challenge",
    "CredentialsProvider",
    "TokenCache",
    "parse_challenge",
    "static_credentials",
]


CredentialsProvider = Callable[[str], Awaitable[Credentials | None]]
"""``async (registry host) -> Credentials | None``.

The host is the registry as written in image references (``docker.io``, ``ghcr.io``,
``registry.local:5000``), which is what pull secrets are matched against.
"""


def static_credentials(mapping: Mapping[str, Credentials]) -> CredentialsProvider:
    """A provider answering from a fixed ``{host: Credentials}`` mapping."""
    table = dict(mapping)

    async def provide(host: str) -> Credentials | None:
        return table.get(host)

    return provide


@dataclass(frozen=True, slots=True)
class Challenge:
    """What a registry's ``WWW-Authenticate`` asks for. ``scheme`` is ``""`` for anonymous."""

    scheme: str
    realm: str = ""
    service: str | None = None
    scope: str | None = None
    error: str | None = None


ANONYMOUS = Challenge("")

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


def parse_challenge(header: str | None) -> Challenge:
    """Parse one ``WWW-Authenticate`` value; quoted values may contain commas."""
    if not header:
        return ANONYMOUS
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(rest):
        value = match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
    return Challenge(
        scheme=scheme.lower(),
        realm=params.get("realm", ""),
        service=params.get("service"),
        scope=params.get("scope"),
        error=params.get("error"),
    )


Identity = Credentials | None
TokenKey = tuple[str, Identity, tuple[str, ...]]


class TokenCache:
    """Bearer tokens by (host, identity, scopes), until shortly before they expire.

    Concurrent requests for the same key share one fetch (:class:`~swapper.aio.SingleFlight`:
    a request that gives up does not cancel the fetch the others wait for). At most ``size``
    tokens are kept (least recently used dropped first).
    """

    def __init__(self, size: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self._tokens: TTLMap[TokenKey, str] = TTLMap(size, clock)
        self._fetches: SingleFlight[TokenKey, str] = SingleFlight()

    def get(self, key: TokenKey) -> str | None:
        return self._tokens.get(key)

    def put(self, key: TokenKey, token: str, expires_in: float) -> None:
        # Renew before expiry: a token that runs out mid-upload costs the whole blob.
        ttl = max(expires_in, 60.0)
        self._tokens.set(key, token, ttl - max(5.0, ttl * 0.1))

    def invalidate(self, key: TokenKey) -> None:
        self._tokens.pop(key)

    async def get_or_fetch(
        self, key: TokenKey, fetch: Callable[[], Awaitable[tuple[str, float]]]
    ) -> str:
        token = self.get(key)
        if token is not None:
            return token

        async def fetch_and_keep() -> str:
            token, expires_in = await fetch()
            self.put(key, token, expires_in)
            return token

        return await self._fetches.do(key, fetch_and_keep)
