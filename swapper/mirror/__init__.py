"""Copying images into the target, and who may be swapped to them.
Imported by mutation, backends, wiring and the CLI; imports kube, targets, oci and below.

The copy-queue protocol (``queue``), the worker queue (``workers``), the engine copier
(``engine``), source-access checks (``access``), ``swapper mirror`` (``command``), and
in-memory doubles for tests (``memory``).
"""

from swapper.mirror.queue import CopyJob, CopyQueue

__all__ = ["CopyJob", "CopyQueue"]
