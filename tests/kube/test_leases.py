"""Lease stores: one contract, run over the memory store and over Leases on the real API server.

The Kube store runs as a ServiceAccount allowed exactly what the README asks for swapper's own
namespace (leases: get, create, update, delete), so the contract also checks that RBAC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from e2e.cluster import Cluster
from helpers import Clock

from swapper.errors import KubeError
from swapper.kube.leases import (
    Conflict,
    KubeLeaseStore,
    LeaseRecord,
    LeaseStore,
    MemoryLeaseStore,
    format_micro_time,
    parse_micro_time,
)

LEASE_RULES = [
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "update", "delete"],
    }
]
MOMENT = datetime(2026, 12, 4, 3, 4, 5, 123456, tzinfo=UTC)


@pytest.fixture(params=["memory", "kube"])
async def store(
    request: pytest.FixtureRequest,
) -> AsyncIterator[LeaseStore]:
    if request.param == "memory":
        yield MemoryLeaseStore(Clock())
        return
    cluster: Cluster = request.getfixturevalue("cluster")
    namespaces: Callable[[str], str] = request.getfixturevalue("namespaces")
    account: Callable[..., Path] = request.getfixturevalue("account")
    namespace = namespaces("store")
    kubeconfig = account(namespace, "swapper", rules=LEASE_RULES)
    yield KubeLeaseStore(cluster.api_client(kubeconfig), namespace)


def lease(name: str = "one", holder: str = "a", **changes: object) -> LeaseRecord:
    return LeaseRecord(
        name=name,
        holder_identity=holder,
        lease_duration_seconds=15,
        acquire_time=MOMENT,
        renew_time=MOMENT,
        **changes,  # type: ignore[arg-type]
    )


async def test_a_missing_lease_reads_as_none(store: LeaseStore) -> None:
    assert await store.get("missing") is None


async def test_a_created_lease_reads_back_as_written_to_the_microsecond(
    store: LeaseStore,
) -> None:
    written = await store.create(
        lease(lease_transitions=3, labels={"app": "swapper"}, annotations={"note": "n"})
    )
    assert written.resource_version
    read = await store.get("one")
    assert read == written
    assert read is not None
    assert (read.holder_identity, read.lease_duration_seconds, read.lease_transitions) == (
        "a",
        15,
        3,
    )
    assert read.acquire_time == MOMENT and read.renew_time == MOMENT
    assert (dict(read.labels), dict(read.annotations)) == ({"app": "swapper"}, {"note": "n"})


async def test_creating_a_lease_that_exists_is_a_conflict(store: LeaseStore) -> None:
    await store.create(lease())
    with pytest.raises(Conflict):
        await store.create(lease(holder="b"))
    read = await store.get("one")
    assert read is not None and read.holder_identity == "a"


async def test_an_update_at_the_version_read_is_written_and_a_stale_one_is_a_conflict(
    store: LeaseStore,
) -> None:
    first = await store.create(lease(annotations={"note": "kept"}))
    later = MOMENT + timedelta(seconds=2, microseconds=7)
    second = await store.update(first.replace(renew_time=later))
    assert second.resource_version != first.resource_version
    assert second.renew_time == later
    assert dict(second.annotations) == {"note": "kept"}
    with pytest.raises(Conflict):
        await store.update(first.replace(holder_identity="b"))
    read = await store.get("one")
    assert read is not None and read.holder_identity == "a" and read.renew_time == later


async def test_an_update_of_a_deleted_lease_writes_it_again_as_the_api_server_does(
    store: LeaseStore,
) -> None:
    first = await store.create(lease())
    await store.delete("one")
    again = await store.update(first.replace(holder_identity="b"))
    read = await store.get("one")
    assert read == again and read is not None and read.holder_identity == "b"


async def test_a_released_lease_keeps_an_empty_holder(store: LeaseStore) -> None:
    first = await store.create(lease())
    await store.update(first.replace(holder_identity="", lease_duration_seconds=1))
    read = await store.get("one")
    assert read is not None and (read.holder_identity, read.lease_duration_seconds) == ("", 1)


async def test_a_delete_at_a_stale_version_is_a_conflict_and_at_the_current_one_deletes(
    store: LeaseStore,
) -> None:
    first = await store.create(lease())
    second = await store.update(first.replace(renew_time=MOMENT + timedelta(seconds=1)))
    with pytest.raises(Conflict):
        await store.delete("one", first.resource_version)
    assert await store.get("one") is not None
    await store.delete("one", second.resource_version)
    assert await store.get("one") is None
    await store.delete("one", second.resource_version)  # gone already: no failure


async def test_a_failure_that_is_no_conflict_is_a_kube_error(store: LeaseStore) -> None:
    if isinstance(store, MemoryLeaseStore):
        store.failure = KubeError("read Lease: connection refused")
        name = "one"
    else:
        name = "Not_A_Valid_Name"  # the API server refuses it (422)
    with pytest.raises(KubeError) as raised:
        await store.create(lease(name))
    assert not isinstance(raised.value, Conflict)


async def test_the_service_account_may_not_touch_leases_of_another_namespace(
    cluster: Cluster, namespaces: Callable[[str], str], account: Callable[..., Path]
) -> None:
    own, other = namespaces("own"), namespaces("other")
    kubeconfig = account(own, "swapper", rules=LEASE_RULES)
    store = KubeLeaseStore(cluster.api_client(kubeconfig), other)
    with pytest.raises(KubeError, match="403"):
        await store.get("one")


def test_micro_time_is_written_with_six_digits_in_utc_and_read_back() -> None:
    east = MOMENT.astimezone(timezone(timedelta(hours=2)))
    assert format_micro_time(east) == "2026-12-04T03:04:05.123456Z"
    assert parse_micro_time("2026-12-04T03:04:05.123456Z") == MOMENT
    assert parse_micro_time("2026-12-04T03:04:05Z") == MOMENT.replace(microsecond=0)
    assert parse_micro_time("") is None and parse_micro_time("yesterday") is None


async def test_the_memory_store_logs_each_write_with_its_clock() -> None:
    clock = Clock(100.0)
    store = MemoryLeaseStore(clock)
    first = await store.create(lease())
    clock.advance(2)
    await store.update(first.replace(holder_identity="b"))
    clock.advance(1)
    await store.delete("one")
    assert store.writes == [
        (100.0, "create", "one", "a"),
        (102.0, "update", "one", "b"),
        (103.0, "delete", "one", "b"),
    ]
