"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import binaries
from e2e.cluster import Cluster, running_cluster
from helpers import FIXTURES


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real etcd and kube-apiserver on loopback for the whole session (tests/e2e/cluster.py).

    The binaries are built by ``make kube-binaries`` (which ``make test`` calls); when they are
    missing, the first test that asks for this builds them (see tests/e2e/binaries.py).
    """
    built = binaries.ensure()
    with running_cluster(tmp_path_factory.mktemp("cluster"), built) as running:
        yield running
