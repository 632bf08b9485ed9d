"""The admin protocol of target registries: list what swapper mirrored, and delete it.

A building block for cleaning up mirrored images. Every target implements
:class:`RegistryAdmin` next to :class:`~swapper.targets.base.TargetRegistry` (the same object):
:class:`~swapper.targets.memory.MemoryTarget`, :class:`~swapper.targets.generic.GenericTarget`,
:class:`~swapper.targets.ecr.ECRTarget` and :class:`~swapper.targets.gar.GARTarget`.

A *repository* here is what :meth:`TargetRegistry.ensure_repository` takes: the path under the
registry host (``m/docker.io/library/nginx`` for the endpoint ``host/m``), so
``f"{domain}/{repository}:{tag}"`` is the pullable reference. Listings are async iterators
that ask the registry one page at a time (``page_size`` items per request, where the registry
honours it) and yield while they go, so no listing is held whole by swapper. Deletes answer
True when something was deleted and False when there was nothing to delete; a registry that
will not delete raises :class:`~swapper.errors.DeleteRefused` once (never retried), any other
failure :class:`~swapper.errors.RegistryError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import NamedTuple, Protocol, runtime_checkable

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
"""The most items asked per page (ECR's and Artifact Registry's own maximum)."""


class Tag(NamedTuple):
    """A tag and the digest of the manifest it points to now."""

    name: str
    digest: str


class StoredManifest(NamedTuple):
    """A manifest in a repository: its digest, the tags on it (none: untagged) and when it was
    pushed, where the registry tells (ECR, Artifact Registry, memory; a generic OCI registry
    does not: None)."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime | None


def check_page_size(value: int) -> int:
    """``value`` when it is a usable page size (1 to :data:`MAX_PAGE_SIZE`), else ValueError."""
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be from 1 to {MAX_PAGE_SIZE}, not {value}")
    return value


def under_prefix(repository: str, prefix: str) -> bool:
    """Whether ``repository`` lies under the path ``prefix`` (whole components; every
    repository when ``prefix`` is empty)."""
    return not prefix or repository.startswith(prefix.rstrip("/") + "/")


@runtime_checkable
class RegistryAdmin(Protocol):
    """Listing and deleting what lives in a target registry under swapper's endpoint."""

    def list_repositories(self, *, page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[str]:
        """The repositories under the target's endpoint (its path prefix), a page at a time.
        Nothing outside the endpoint is listed."""
        ...

    def list_tags(
        self, repository: str, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[Tag]:
        """The tags of ``repository`` with their digests, a page at a time (nothing when the
        repository does not exist)."""
        ...

    def list_manifests(
        self, repository: str, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[StoredManifest]:
        """The manifests of ``repository`` with their tags and push time. Where the registry
        cannot list manifests (generic OCI), the tagged ones, grouped from the tags."""
        ...

    async def delete_tag(self, repository: str, tag: str) -> bool:
        """Remove the tag ``tag`` (the manifest stays when other tags or digests name it, as
        far as the registry allows: ECR deletes an image whose last tag goes). False when
        there was no such tag. Raises :class:`~swapper.errors.DeleteRefused` where the
        registry deletes by digest only."""
        ...

    async def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete the manifest ``digest`` and every tag on it. False when there was none."""
        ...

    async def delete_repository(self, repository: str) -> bool:
        """Delete ``repository`` if it holds no image, in one step that cannot take an image
        pushed meanwhile (ECR's ``DeleteRepository`` without ``force``). False when it holds
        images or is not there. Raises :class:`~swapper.errors.DeleteRefused` where the
        registry has no such step (OCI distribution; Artifact Registry, whose package delete
        takes its versions with it)."""
        ...
