"""A generic OCI distribution registry as the target (``target.type: generic``).

Existence is a ``HEAD /v2/<name>/manifests/<reference>`` through :mod:`swapper.oci`'s client
(anonymous, basic, or bearer tokens from the registry's ``WWW-Authenticate`` challenge, with
its retries and token cache). Credentials, when the registry needs them, are ``username`` and
``password`` from ``credentialsFile`` (a YAML/JSON file, e.g. a mounted Secret).
Repositories need no creation on a generic registry; ``ensure_repository`` is a no-op.
Plain HTTP, the CA bundle and certificate checks come from ``target.generic`` merged with
``mirror.hosts.<host>`` (:meth:`~swapper.config.GenericRegistry.connection`), as for copies.

As a :class:`~swapper.targets.admin.RegistryAdmin`: repositories come from
``GET /v2/_catalog?n=`` (filtered to the endpoint's path prefix), tags from
``GET /v2/<name>/tags/list?n=`` (both following the ``Link`` header) with a manifest ``HEAD``
per tag for its digest, manifests are grouped from the tags (an OCI registry cannot list
untagged manifests, nor say when one was pushed), and deletes are
``DELETE /v2/<name>/manifests/<tag or digest>``. Registries of the distribution 2.x line
(``docker-registry``) delete by digest only and, without ``storage.delete.enabled``, not at
all: both raise :class:`~swapper.errors.DeleteRefused`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import yaml

from swapper.config import Config, GenericRegistry
from swapper.credentials import Credentials
from swapper.errors import ConfigError, CopyError, CopyReason, DeleteRefused, RegistryError
from swapper.oci import HostConfig, Repository
from swapper.targets._oci import host_client, manifest_digest
from swapper.targets.admin import (
    DEFAULT_PAGE_SIZE,
    StoredManifest,
    Tag,
    check_page_size,
    under_prefix,
)
from swapper.targets.base import UnderEndpoint

_REFUSALS = (CopyReason.REJECTED, CopyReason.DENIED)
_DIGEST_ONLY = (
    "registries of the distribution 2.x line (docker-registry) delete by digest only (400 "
    "DIGEST_INVALID): delete the manifest by digest, which removes every tag on it"
)
_DELETES_OFF = (
    "deletes are switched off on that registry (405 UNSUPPORTED: distribution needs "
    "storage.delete.enabled: true) or swapper's credentials may not delete there (403)"
)


def read_credentials(path: str) -> Credentials:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([("target.generic.credentialsFile", f"cannot read: {exc}")]) from None
    if not isinstance(data, dict) or not data.get("username") or not data.get("password"):
        raise ConfigError([("target.generic.credentialsFile", "needs keys username and password")])
    return Credentials(str(data["username"]), str(data["password"]))


class GenericTarget(UnderEndpoint):
    config: GenericRegistry

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

    # -- RegistryAdmin -------------------------------------------------------------------

    def _repository(self, repository: str) -> Repository:
        return self._client.repository(f"{self.config.domain}/{repository}")

    async def list_repositories(self, *, page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[str]:
        size = check_page_size(page_size)
        prefix = self.config.endpoint.partition("/")[2]
        try:
            async for page in self._client.catalog(self.config.domain, size):
                for name in page:
                    if under_prefix(name, prefix):
                        yield name
        except CopyError as exc:
            raise RegistryError(str(exc)) from exc

    async def list_tags(
        self, repository: str, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[Tag]:
        size = check_page_size(page_size)
        handle = self._repository(repository)
        try:
            async for page in handle.tag_pages(size):
                # A registry that ignores ``n`` sends every tag at once: ask digests in pages.
                for start in range(0, len(page), size):
                    names = page[start : start + size]
                    found = await asyncio.gather(*(handle.head_manifest(tag) for tag in names))
                    for name, descriptor in zip(names, found, strict=True):
                        if descriptor is not None and descriptor.digest:  # else: untagged since
                            yield Tag(name, descriptor.digest)
        except CopyError as exc:
            raise RegistryError(str(exc)) from exc

    async def list_manifests(
        self, repository: str, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[StoredManifest]:
        """The tagged manifests, grouped from :meth:`list_tags` (this holds every tag name of
        the repository until the listing ends; untagged manifests are not seen)."""
        tags: dict[str, list[str]] = {}
        async for tag in self.list_tags(repository, page_size=page_size):
            tags.setdefault(tag.digest, []).append(tag.name)
        for digest, names in tags.items():
            yield StoredManifest(digest, tuple(sorted(names)), None)

    async def delete_tag(self, repository: str, tag: str) -> bool:
        hint = f"{_DIGEST_ONLY}; or {_DELETES_OFF}"
        return await self._delete(repository, tag, f"the tag {repository}:{tag}", hint)

    async def delete_repository(self, repository: str) -> bool:
        raise DeleteRefused(
            f"{self.config.domain} cannot delete the repository {repository}: the OCI "
            "distribution API has no repository delete (an empty one costs nothing; the "
            "registry's garbage collection reclaims the blobs)"
        )

    async def delete_manifest(self, repository: str, digest: str) -> bool:
        return await self._delete(repository, digest, f"{repository}@{digest}", _DELETES_OFF)

    async def _delete(self, repository: str, reference: str, what: str, hint: str) -> bool:
        try:
            return await self._repository(repository).delete_manifest(reference)
        except CopyError as exc:
            if exc.reason in _REFUSALS:
                raise DeleteRefused(
                    f"{self.config.domain} refused to delete {what}: {exc}; {hint}"
                ) from exc
            raise RegistryError(str(exc)) from exc


def from_config(config: Config, hosts: dict[str, HostConfig]) -> GenericTarget:
    """The target of ``target.generic`` (see :mod:`swapper.targets.factory`)."""
    assert config.target.generic is not None
    return GenericTarget(config.target.generic)


def client_hosts(config: Config, hosts: dict[str, HostConfig]) -> dict[str, HostConfig]:
    """Its registry host with ``target.generic``'s connection settings (merged with
    ``mirror.hosts``, see :meth:`~swapper.config.GenericRegistry.connection`)."""
    from swapper.targets.factory import host_config

    generic = config.target.generic
    return {generic.domain: host_config(generic.connection())} if generic is not None else {}
