"""Fixtures of the supply-chain tests: the real cosign and oras, a registry that serves the OCI
1.1 referrers API (all built by :mod:`supply.tools` into a cache outside the work tree), and
Debian's docker-registry, which does not (the referrers tag fallback).

Registries live for the session; each test uses repositories of its own (``fresh_repo``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from registries import Registry, start_registry
from supply import tools

_counter = itertools.count()


@pytest.fixture
def fresh_repo() -> str:
    """A repository path no other test uses."""
    return f"supply/t{next(_counter)}/app"


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
    whole session (it keeps everything in memory)."""
    with tools.running_referrers_registry(tmp_path_factory.mktemp("referrers-registry")) as running:
        yield running


@pytest.fixture(scope="session")
def referrers_target(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tools.RunningRegistry]:
    """A second referrers registry: a mirror that has the referrers API."""
    with tools.running_referrers_registry(tmp_path_factory.mktemp("referrers-target")) as running:
        yield running


@pytest.fixture(scope="session")
def plain_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry (no referrers API), with its access log on."""
    registry = start_registry(tmp_path_factory.mktemp("plain-source"), access_log=True)
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def plain_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Debian's docker-registry as the mirror: the referrers tag fallback is kept there."""
    registry = start_registry(tmp_path_factory.mktemp("plain-target"), access_log=True)
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def lenient_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tools.RunningRegistry]:
    """go-containerregistry's registry with the referrers API off: it answers 404 there like
    docker-registry, but stores a malformed index it is given (docker-registry refuses one),
    so the bad-input tests can serve one."""
    workdir = tmp_path_factory.mktemp("lenient-registry")
    with tools.running_referrers_registry(workdir, referrers_api=False) as running:
        yield running
