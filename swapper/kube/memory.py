"""In-memory doubles of the kube package's protocols, for tests (like httpx's
``MockTransport``): :class:`MemoryPullSecrets` (a :class:`~swapper.kube.pull_secrets.PullSecrets`).
"""

from __future__ import annotations

from dataclasses import dataclass

from swapper.errors import KubeError


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
