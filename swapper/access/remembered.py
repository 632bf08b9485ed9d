"""What the source-access check remembers as public: the protocol, and the in-memory copy.

:class:`PublicAnswers` is what the access check (:mod:`swapper.access.checker`) uses; nothing
on the admission path does I/O. :class:`MemoryPublicAnswers` keeps the answers in this process
only; :class:`swapper.kube.remembered.ConfigMapPublicAnswers` keeps them in a ConfigMap too,
shared by replicas and kept across restarts (its module docstring says how).
:func:`public_answers` picks one from ``source.access``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from swapper.stamps import StampMap

if TYPE_CHECKING:
    from swapper.access.settings import AccessSettings

KubeClient = Callable[[str, str], Any]
"""The wiring's Kubernetes API client, asked for when needed: ``(event, without)`` -> the client,
or None after one warning line ``event`` saying what goes ``without`` it."""


@runtime_checkable
class PublicAnswers(Protocol):
    """Repositories known to be readable anonymously, and since when (unix seconds)."""

    def confirmed_at(self, repository: str) -> float | None:
        """When ``repository`` was last confirmed public, or None (in memory, no I/O)."""
        ...

    def remember(self, repository: str) -> None:
        """``repository`` was just confirmed public (no I/O: queued)."""
        ...

    def forget(self, repository: str) -> None:
        """The source says ``repository`` is not public any more (no I/O: queued)."""
        ...

    def ready(self) -> bool:
        """Whether the start-up load was tried (never blocks on a failure)."""
        ...

    async def run(self) -> None:
        """Background task for the app's lifespan: load, follow, write; until cancelled."""
        ...


class MemoryPublicAnswers(StampMap):
    """Public answers in this process only: lost on restart, not shared with other replicas."""

    def ready(self) -> bool:
        return True

    async def run(self) -> None:
        await asyncio.Event().wait()


def public_answers(settings: AccessSettings, kube: KubeClient) -> PublicAnswers:
    """Where the access check remembers public answers: the ConfigMap ``source.access.configMap``
    of swapper's own namespace (:mod:`swapper.kube.remembered`), or this process's memory."""
    if settings.config_map:
        client = kube(
            "remembered_answers_unavailable",
            "public answers of the access check are kept in memory only",
        )
        if client is not None:
            from swapper.kube import own_namespace
            from swapper.kube.remembered import ConfigMapPublicAnswers

            return ConfigMapPublicAnswers(
                client, own_namespace(), settings.config_map, settings.max_remembered
            )
    return MemoryPublicAnswers(settings.max_remembered)
