"""Fixtures of the supply-chain tests: the real cosign and oras, and a registry that serves the
OCI 1.1 referrers API (all built by :mod:`supply.tools` into a cache outside the work tree)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from supply import tools


@pytest.fixture(scope="session")
def cosign_bin() -> Path:
    return tools.cosign()


@pytest.fixture(scope="session")
def oras_bin() -> Path:
    return tools.oras()


@pytest.fixture(scope="session")
def referrers_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tools.RunningRegistry]:
    """go-containerregistry's registry with the referrers API, on a free loopback port, for the
    whole session (it keeps everything in memory: tests use repositories of their own)."""
    with tools.running_referrers_registry(tmp_path_factory.mktemp("referrers-registry")) as running:
        yield running
