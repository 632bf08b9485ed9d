"""Module-scoped fixtures of the tests that list and delete in real registries (the admin
contract, cleanup): a docker-registry with deletes on, one with deletes off, and a moto ECR.
A test module takes them with ``from admin_fixtures import moto, registry, ...``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto_ecr import MotoServer, running_moto
from registry_process import Registry, running_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry with deletes on and an access log (to count requests)."""
    with running_registry(tmp_path_factory.mktemp("registry"), access_log=True) as reg:
        yield reg


@pytest.fixture(scope="module")
def registry_without_deletes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry without ``storage.delete.enabled``: every delete answered 405."""
    workdir = tmp_path_factory.mktemp("registry-no-deletes")
    with running_registry(workdir, delete_enabled=False, access_log=True) as reg:
        yield reg


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with running_moto() as server:
        yield server
