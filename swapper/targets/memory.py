"""An in-memory target registry, for tests and for ``swapper explain``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

from swapper.credentials import Credentials
from swapper.errors import DeleteRefused
from swapper.images import ImageReference, is_at_endpoint, parse
from swapper.targets.admin import DEFAULT_PAGE_SIZE, StoredManifest, Tag, check_page_size

UNKNOWN_DIGEST = "sha256:" + "0" * 64
"""The digest served for an image that was added without one."""


class MemoryTarget:
    """Holds a set of present image references and repositories in memory.

    ``fail_with`` makes every call raise that exception (to test that admission never blocks),
    and ``calls`` counts calls per method name (the admin listings count one call per page,
    ``list_tags_page`` and so on). As a :class:`~swapper.targets.admin.RegistryAdmin` it lists
    and deletes what ``images`` holds; ``refuse_deletes`` makes every delete raise
    :class:`~swapper.errors.DeleteRefused`, and ``pushed`` holds when each digest was added.
    """

    def __init__(
        self,
        endpoint: str,
        images: set[str] | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self._endpoint = endpoint
        self.images: set[str] = set(images or ())
        self.digests: dict[str, str] = {}  # target -> digest, where a test set one
        self.repositories: set[str] = set()
        self.credentials = credentials
        self.fail_with: BaseException | None = None
        self.calls: dict[str, int] = {}
        self.pushed: dict[str, datetime] = {}  # digest -> when add_image first gave it
        self.refuse_deletes = False

    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.fail_with is not None:
            raise self.fail_with

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def is_origin(self, ref: ImageReference) -> bool:
        return is_at_endpoint(ref, self._endpoint)

    async def image_exists(self, target: str) -> bool:
        self._call("image_exists")
        return target in self.images

    async def image_digest(self, target: str) -> str | None:
        self._call("image_digest")
        if target not in self.images:
            return None
        return self.digests.get(target, UNKNOWN_DIGEST)

    async def ensure_repository(self, repository: str) -> None:
        self._call("ensure_repository")
        self.repositories.add(repository)

    async def pull_credentials(self) -> Credentials | None:
        self._call("pull_credentials")
        return self.credentials

    async def aclose(self) -> None:
        return None

    # test helpers
    def add_image(self, target: str, digest: str | None = None) -> None:
        self.images.add(target)
        if digest is not None:
            self.digests[target] = digest
            self.pushed.setdefault(digest, datetime.now(UTC))

    def delete_image(self, target: str) -> None:
        self.images.discard(target)

    # -- RegistryAdmin -------------------------------------------------------------------

    def _domain(self) -> str:
        return self._endpoint.split("/", 1)[0]

    def _references(self, repository: str) -> Iterator[tuple[str, ImageReference, str]]:
        """``(target, parsed, digest)`` of each image of ``repository``."""
        for target in sorted(self.images):
            ref = parse(target)
            if ref.path == repository and is_at_endpoint(ref, self._endpoint):
                yield target, ref, ref.digest or self.digests.get(target, UNKNOWN_DIGEST)

    def _tags(self, repository: str) -> list[Tag]:
        return [
            Tag(ref.tag, digest)
            for _, ref, digest in self._references(repository)
            if ref.tag is not None
        ]

    async def list_repositories(self, *, page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[str]:
        size = check_page_size(page_size)
        names = sorted(
            {ref.path for ref in map(parse, self.images) if is_at_endpoint(ref, self._endpoint)}
        )
        for start in range(0, len(names), size):
            self._call("list_repositories_page")
            for name in names[start : start + size]:
                yield name

    async def list_tags(
        self, repository: str, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[Tag]:
        size = check_page_size(page_size)
        tags = self._tags(repository)
        for start in range(0, len(tags), size):
            self._call("list_tags_page")
            for tag in tags[start : start + size]:
                yield tag

    async def list_manifests(
        self, repository: str, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[StoredManifest]:
        size = check_page_size(page_size)
        tags: dict[str, list[str]] = {}
        for _, ref, digest in self._references(repository):
            tags.setdefault(digest, []).extend([ref.tag] if ref.tag is not None else [])
        found = [
            StoredManifest(digest, tuple(sorted(names)), self.pushed.get(digest))
            for digest, names in sorted(tags.items())
        ]
        for start in range(0, len(found), size):
            self._call("list_manifests_page")
            for manifest in found[start : start + size]:
                yield manifest

    async def delete_repository(self, repository: str) -> bool:
        self._call("delete_repository")
        if self.refuse_deletes:
            raise DeleteRefused(f"{self._endpoint} refuses deletes (refuse_deletes is set)")
        if repository not in self.repositories or any(self._references(repository)):
            return False
        self.repositories.discard(repository)
        return True

    async def delete_tag(self, repository: str, tag: str) -> bool:
        self._call("delete_tag")
        if self.refuse_deletes:
            raise DeleteRefused(f"{self._endpoint} refuses deletes (refuse_deletes is set)")
        target = f"{self._domain()}/{repository}:{tag}"
        present = target in self.images
        self.images.discard(target)
        self.digests.pop(target, None)
        return present

    async def delete_manifest(self, repository: str, digest: str) -> bool:
        self._call("delete_manifest")
        if self.refuse_deletes:
            raise DeleteRefused(f"{self._endpoint} refuses deletes (refuse_deletes is set)")
        doomed = [target for target, _, found in self._references(repository) if found == digest]
        for target in doomed:
            self.images.discard(target)
            self.digests.pop(target, None)
        return bool(doomed)
