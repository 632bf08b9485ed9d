"""In-memory doubles of the kube package's protocols, for tests (like httpx's
``MockTransport``): :class:`MemoryPullSecrets` (a :class:`~swapper.kube.pull_secrets.PullSecrets`)
and :class:`MemoryEvents` (a :class:`~swapper.kube.events.PodEvents`) and
:class:`MemoryPodPatches` (a :class:`~swapper.kube.pods.PodPatches`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from swapper.errors import KubeError
from swapper.kube.events import EventType


@dataclass
class MemoryPullSecrets:
    """For tests: records namespaces; ``fail`` holds namespaces whose provisioning fails."""

    namespaces: set[str]
    fail: set[str]

    def __init__(self) -> None:
        self.namespaces = set()
        self.fail = set()

    async def ensure(self, namespace: str, service_account: str = "") -> None:
        if namespace in self.fail:
            raise KubeError(f"cannot provision the pull secret in {namespace}")
        self.namespaces.add(namespace)


class MemoryEvents:
    """Events kept in a list, for tests: ``(namespace, name, reason, type, message)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str, str]] = []

    async def pod_event(
        self,
        namespace: str,
        name: str,
        uid: str,
        reason: str,
        message: str,
        event_type: EventType = "Normal",
    ) -> bool:
        self.events.append((namespace, name, reason, event_type, message))
        return True


class MemoryPodPatches:
    """Pods as JSON in a dict by (namespace, name), patched as the API server would: the
    ``test`` operations of :func:`~swapper.kube.pods.image_patch` are checked."""

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.patched: list[tuple[str, str, str, str]] = []  # namespace, name, path, image

    async def set_image(
        self, namespace: str, name: str, uid: str, path: str, current: str, image: str
    ) -> str:
        pod = self.pods.get((namespace, name))
        if pod is None or pod.get("metadata", {}).get("uid") != uid:
            return "gone"
        _, spec, field, index, key = path.split("/")
        container = pod[spec][field][int(index)]
        if container.get(key) != current:
            return "conflict"
        container[key] = image
        self.patched.append((namespace, name, path, image))
        return "patched"
