"""Target registries: where mirrored images live (ECR, Artifact Registry, any OCI registry).
Imported by mirror, kube, backends, wiring and the CLI; imports oci, images and below.

:class:`TargetRegistry` (``base``) is the protocol every backend implements; ``memory`` holds
:class:`~swapper.targets.memory.MemoryTarget`, the in-package implementation for tests (like
httpx's ``MockTransport``), imported only by what uses it. One contract test in
``tests/targets/`` runs over every implementation.
"""

from swapper.targets.base import TargetRegistry

__all__ = ["TargetRegistry"]
