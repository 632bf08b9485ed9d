"""Tests of ``swapper.kube`` run the real ``kubernetes`` client against the fake API server."""

from __future__ import annotations

from kube_fake import kube_api

__all__ = ["kube_api"]
