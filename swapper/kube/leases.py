"""Leases (``coordination.k8s.io/v1``) of one namespace: what leader election and the copies
shared across replicas write.

:class:`LeaseStore` is the protocol; :class:`KubeLeaseStore` keeps Leases on the API server and
:class:`MemoryLeaseStore` in this process (tests, and a single replica without an API).

Writes are optimistic: :meth:`~LeaseStore.update` sends the ``resourceVersion`` the record was
read at, so a concurrent write is a :class:`~swapper.errors.Conflict`, never a lost update;
:meth:`~LeaseStore.create` of a Lease that exists is one too. Every other failure is a
:class:`~swapper.errors.KubeError`. An update of a Lease deleted since it was read writes it
again: the API server creates Leases on update.

:func:`identity` is this replica's name as a holder (``$POD_NAME``, else the host name).

Times are ``MicroTime``: RFC 3339 with six fractional digits, in UTC. The store never judges
whether a Lease expired: remote clocks are not trusted, so the caller measures a Lease's age on
its own clock from when it saw the record change (as client-go does).

The ``kubernetes`` client is synchronous: every call runs in a thread (``asyncio.to_thread``)
with a timeout, and objects are read and written as raw JSON.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from swapper.errors import Conflict, KubeError, NotFound
from swapper.kube import call_json

__all__ = [
    "Conflict",
    "KubeLeaseStore",
    "LeaseRecord",
    "LeaseStore",
    "MemoryLeaseStore",
    "format_micro_time",
    "identity",
    "parse_micro_time",
]

REQUEST_TIMEOUT = 10.0
"""Seconds for one Lease call: shorter than the API's usual, a Lease is renewed every few
seconds and a hung call must not hold a thread for long."""
MAX_LEASES = 10_000
"""The bound on the Leases a :class:`MemoryLeaseStore` holds."""


def identity() -> str:
    """This replica's name as a Lease holder: ``$POD_NAME`` (the chart sets it from the
    downward API), else the host name."""
    return os.environ.get("POD_NAME", "").strip() or socket.gethostname()


def format_micro_time(moment: datetime) -> str:
    """``moment`` as a Kubernetes ``MicroTime``: ``2026-01-02T03:04:05.123456Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: object) -> datetime | None:
    """A ``MicroTime`` (or ``Time``) as an aware datetime; None when missing or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _micro(moment: datetime | None) -> datetime | None:
    """``moment`` as a MicroTime holds it: UTC, microseconds."""
    return None if moment is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """One Lease: its spec, its labels and annotations, and the ``resourceVersion`` it was read
    at (empty for a record not yet written)."""

    name: str
    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    lease_transitions: int = 0
    resource_version: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def replace(self, **changes: Any) -> LeaseRecord:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def to_json(self, namespace: str) -> dict[str, Any]:
        """The Lease object as the API takes it."""
        metadata: dict[str, Any] = {"name": self.name, "namespace": namespace}
        if self.resource_version:
            metadata["resourceVersion"] = self.resource_version
        if self.labels:
            metadata["labels"] = dict(self.labels)
        if self.annotations:
            metadata["annotations"] = dict(self.annotations)
        spec: dict[str, Any] = {
            "holderIdentity": self.holder_identity,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.lease_transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = format_micro_time(self.acquire_time)
        if self.renew_time is not None:
            spec["renewTime"] = format_micro_time(self.renew_time)
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LeaseRecord:
        """A record from a Lease object read from the API."""
        metadata = data.get("metadata") or {}
        spec = data.get("spec") or {}

        def number(value: object) -> int:
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        def strings(value: object) -> dict[str, str]:
            if not isinstance(value, dict):
                return {}
            return {str(k): str(v) for k, v in value.items()}

        return cls(
            name=str(metadata.get("name") or ""),
            holder_identity=str(spec.get("holderIdentity") or ""),
            lease_duration_seconds=number(spec.get("leaseDurationSeconds")),
            acquire_time=parse_micro_time(spec.get("acquireTime")),
            renew_time=parse_micro_time(spec.get("renewTime")),
            lease_transitions=number(spec.get("leaseTransitions")),
            resource_version=str(metadata.get("resourceVersion") or ""),
            labels=strings(metadata.get("labels")),
            annotations=strings(metadata.get("annotations")),
        )


@runtime_checkable
class LeaseStore(Protocol):
    """Leases of one namespace."""

    async def get(self, name: str) -> LeaseRecord | None:
        """The Lease ``name``, or None when there is none."""
        ...

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        """Create ``record``; returns it as written. :class:`Conflict` when it exists."""
        ...

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        """Write ``record`` over the Lease as read at ``record.resource_version``; returns it as
        written. :class:`Conflict` when the Lease changed since. A Lease deleted since is
        written again (the API server creates Leases on update)."""
        ...

    async def delete(self, name: str, resource_version: str = "") -> None:
        """Delete the Lease, only if still at ``resource_version`` (when given). A Lease that is
        gone already is no failure; :class:`Conflict` when it changed since."""
        ...


class MemoryLeaseStore:
    """Leases in this process. ``clock`` stamps :attr:`writes`, the log of every write as
    ``(clock(), verb, name, holder)``, kept to the last ``MAX_LEASES``. Set :attr:`failure` to
    an exception to make every call raise it (an API that cannot be asked)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_leases: int = MAX_LEASES
    ) -> None:
        self.clock = clock
        self.max_leases = max_leases
        self.failure: BaseException | None = None
        self.writes: list[tuple[float, str, str, str]] = []
        self._leases: dict[str, LeaseRecord] = {}
        self._version = 0

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _written(self, verb: str, record: LeaseRecord) -> LeaseRecord:
        self._version += 1
        stored = record.replace(
            resource_version=str(self._version),
            acquire_time=_micro(record.acquire_time),
            renew_time=_micro(record.renew_time),
            labels=dict(record.labels),
            annotations=dict(record.annotations),
        )
        self._leases[record.name] = stored
        self._log(verb, record.name, record.holder_identity)
        return stored

    def _log(self, verb: str, name: str, holder: str) -> None:
        self.writes.append((self.clock(), verb, name, holder))
        del self.writes[: -self.max_leases]

    async def get(self, name: str) -> LeaseRecord | None:
        self._check()
        return self._leases.get(name)

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        self._check()
        if record.name in self._leases:
            raise Conflict(f"Lease {record.name} exists already")
        if len(self._leases) >= self.max_leases:
            raise KubeError(f"create Lease {record.name}: more than {self.max_leases} Leases")
        return self._written("create", record)

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        self._check()
        current = self._leases.get(record.name)
        if current is not None and current.resource_version != record.resource_version:
            raise Conflict(f"Lease {record.name} changed since it was read")
        return self._written("update", record)

    async def delete(self, name: str, resource_version: str = "") -> None:
        self._check()
        current = self._leases.get(name)
        if current is None:
            return
        if resource_version and current.resource_version != resource_version:
            raise Conflict(f"Lease {name} changed since it was read")
        del self._leases[name]
        self._log("delete", name, current.holder_identity)

    def names(self) -> list[str]:
        """The names of the Leases held now."""
        return list(self._leases)


class KubeLeaseStore:
    """Leases of ``namespace`` on the API server (verbs: get, create, update, delete)."""

    def __init__(self, api_client: Any, namespace: str, timeout: float = REQUEST_TIMEOUT) -> None:
        from kubernetes import client

        self.namespace = namespace
        self.timeout = timeout
        self._api = client.CoordinationV1Api(api_client)

    def _call(self, action: str, method: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """``method`` with a timeout, its body as JSON; API failures as :class:`KubeError`,
        409 as :class:`Conflict`; a 404 returns None."""
        try:
            return call_json(method, *args, action=action, request_timeout=self.timeout, **kw)
        except NotFound:
            return None

    def _record(self, data: Any, action: str) -> LeaseRecord:
        if not isinstance(data, dict):
            raise KubeError(f"{action}: unexpected API response")
        return LeaseRecord.from_json(data)

    async def get(self, name: str) -> LeaseRecord | None:
        action = f"read Lease {self.namespace}/{name}"
        data = await asyncio.to_thread(
            self._call, action, self._api.read_namespaced_lease, name, self.namespace
        )
        return None if data is None else self._record(data, action)

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        action = f"create Lease {self.namespace}/{record.name}"
        body = record.replace(resource_version="").to_json(self.namespace)
        data = await asyncio.to_thread(
            self._call, action, self._api.create_namespaced_lease, self.namespace, body
        )
        if data is None:  # the namespace is gone
            raise KubeError(f"{action}: HTTP 404 NotFound")
        return self._record(data, action)

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        action = f"update Lease {self.namespace}/{record.name}"
        if not record.resource_version:
            raise Conflict(f"{action}: the record was never read")
        data = await asyncio.to_thread(
            self._call,
            action,
            self._api.replace_namespaced_lease,
            record.name,
            self.namespace,
            record.to_json(self.namespace),
        )
        if data is None:  # the namespace is gone
            raise KubeError(f"{action}: HTTP 404 NotFound")
        return self._record(data, action)

    async def delete(self, name: str, resource_version: str = "") -> None:
        action = f"delete Lease {self.namespace}/{name}"
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if resource_version:
            options["preconditions"] = {"resourceVersion": resource_version}
        await asyncio.to_thread(
            self._call,
            action,
            self._api.delete_namespaced_lease,
            name,
            self.namespace,
            body=options,
        )
