"""Target registries: where mirrored images live.

:class:`TargetRegistry` (``base``) is the protocol every backend implements; ``memory`` holds
:class:`~swapper.targets.memory.MemoryTarget`, the in-package implementation for tests (like
httpx's ``MockTransport``), imported only by what uses it. One contract test in
``tests/targets/`` runs over every implementation.
"""

from swapper.credentials import Credentials
from swapper.targets.base import TargetRegistry

__all__ = ["Credentials", "TargetRegistry"]
