"""Target registries: where mirrored images live.

:class:`TargetRegistry` is the protocol every backend implements; :class:`MemoryTarget` is the
in-package implementation for tests (like httpx's ``MockTransport``). One contract test in
``tests/targets/`` runs over every implementation.
"""

from swapper.credentials import Credentials
from swapper.targets.base import TargetRegistry
from swapper.targets.memory import MemoryTarget

__all__ = ["Credentials", "MemoryTarget", "TargetRegistry"]
