"""Copying images into the target: the copy-queue protocol and its implementations."""

from swapper.mirror.queue import CopyJob, CopyQueue, MemoryCopyQueue

__all__ = ["CopyJob", "CopyQueue", "MemoryCopyQueue"]
