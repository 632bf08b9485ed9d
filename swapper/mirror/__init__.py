"""Copying images into the target: the copy-queue protocol (``queue``), the worker queue
(``workers``), the engine copier (``engine``), private-image access checks (``access``),
``swapper mirror`` (``command``), and in-memory doubles for tests (``memory``)."""

from swapper.mirror.queue import CopyJob, CopyQueue

__all__ = ["CopyJob", "CopyQueue"]
