"""Copying images into the target, and who may be swapped to them.
Imported by mutation, backends, wiring and the CLI; imports kube, targets, oci and below.

The copy-queue protocol (``queue``), the worker queue (``workers``), the engine copier
(``engine``), the source-access protocol and its answers (``verdicts``, imported by the pure
core) and the registry-backed check (``access``), ``swapper mirror`` (``command``), and
in-memory doubles for tests (``memory``).
"""

from swapper.mirror.queue import CopyJob, CopyQueue

__all__ = ["CopyJob", "CopyQueue"]
