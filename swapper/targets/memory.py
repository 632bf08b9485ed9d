"""An in-memory target registry, for tests and for ``swapper explain``."""

from __future__ import annotations

from swapper.credentials import Credentials
from swapper.images import ImageReference, is_at_endpoint


class MemoryTarget:
    """Holds a set of present image references and repositories in memory.

    ``fail_with`` makes every call raise that exception (to test that admission never blocks),
    and ``calls`` counts calls per method name.
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
        return self.digests.get(target, "sha256:" + "0" * 64)

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

    def delete_image(self, target: str) -> None:
        self.images.discard(target)
