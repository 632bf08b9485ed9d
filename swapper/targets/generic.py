"""A generic OCI distribution registry as the target (``target.type: generic``).

Existence is a ``HEAD /v2/<name>/manifests/<reference>`` through :mod:`swapper.oci`'s client
(anonymous, basic, or bearer tokens from the registry's ``WWW-Authenticate`` challenge, with
its retries and token cache). Credentials, when the registry needs them, are ``username`` and
``password`` from ``credentialsFile`` (a YAML/JSON file, e.g. a mounted Secret).
Repositories need no creation on a generic registry; ``ensure_repository`` is a no-op.
Plain HTTP, the CA bundle and certificate checks come from ``target.generic`` merged with
``mirror.hosts.<host>`` (:meth:`~swapper.config.GenericRegistry.connection`), as for copies.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from swapper.config import GenericRegistry
from swapper.credentials import Credentials
from swapper.errors import ConfigError, CopyError, RegistryError
from swapper.images import ImageReference, is_at_endpoint
from swapper.oci import HostConfig
from swapper.targets._oci import host_client, manifest_digest


def read_credentials(path: str) -> Credentials:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([("target.generic.credentialsFile", f"cannot read: {exc}")]) from None
    if not isinstance(data, dict) or not data.get("username") or not data.get("password"):
        raise ConfigError([("target.generic.credentialsFile", "needs keys username and password")])
    return Credentials(str(data["username"]), str(data["password"]))


class GenericTarget:
    def __init__(self, config: GenericRegistry, timeout: float = 5.0) -> None:
        self.config = config
        self.credentials = (
            read_credentials(config.credentials_file) if config.credentials_file else None
        )
        settings = config.connection()
        host = HostConfig(
            plain_http=settings.insecure,
            verify_tls=not settings.skip_verify,
            ca_file=settings.ca_file or None,
        )

        async def credentials() -> Credentials | None:
            return self.credentials

        self._client = host_client(config.domain, host, credentials, timeout)

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    def is_origin(self, ref: ImageReference) -> bool:
        return is_at_endpoint(ref, self.config.endpoint)

    async def image_exists(self, target: str) -> bool:
        return await self.image_digest(target) is not None

    async def image_digest(self, target: str) -> str | None:
        try:
            return await manifest_digest(self._client, target)
        except CopyError as exc:
            raise RegistryError(str(exc)) from exc

    async def ensure_repository(self, repository: str) -> None:
        return None

    async def pull_credentials(self) -> Credentials | None:
        return self.credentials

    async def aclose(self) -> None:
        await self._client.aclose()
