"""Kubernetes Events swapper leaves on objects (core/v1 Events, ``source.component: swapper``).

Best effort: an Event that cannot be written is one log line, never a failure of what it
reports on. The message is cut at 1,000 characters and never carries a credential.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Literal, Protocol

from swapper.kube import call_json
from swapper.logs import get_logger

log = get_logger("swapper.kube")

EventType = Literal["Normal", "Warning"]


def event_body(
    kind: str,
    namespace: str,
    name: str,
    reason: str,
    message: str,
    event_type: EventType = "Warning",
    uid: str = "",
) -> dict[str, Any]:
    """A core/v1 Event on the object ``kind`` ``namespace/name`` (``uid`` if known)."""
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    involved: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": kind,
        "name": name,
        "namespace": namespace,
    }
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.swapper-", "namespace": namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message[:1000],
        "type": event_type,
        "source": {"component": "swapper"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def create_event(core: Any, body: dict[str, Any]) -> bool:
    """Write ``body`` with a ``CoreV1Api``; whether it was written (a failure is logged)."""
    namespace = str(body["metadata"]["namespace"])
    try:
        call_json(core.create_namespaced_event, namespace, body)
    except Exception as exc:
        log.warning("event_failed", namespace=namespace, error=f"{type(exc).__name__}")
        return False
    return True


class PodEvents(Protocol):
    """Where Events on pods go: :class:`EventRecorder`, or the memory double of tests."""

    async def pod_event(
        self,
        namespace: str,
        name: str,
        uid: str,
        reason: str,
        message: str,
        event_type: EventType = "Normal",
    ) -> bool: ...


class EventRecorder:
    """Writes Events through an API client, off the event loop (a :class:`PodEvents`)."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)

    async def pod_event(
        self,
        namespace: str,
        name: str,
        uid: str,
        reason: str,
        message: str,
        event_type: EventType = "Normal",
    ) -> bool:
        body = event_body("Pod", namespace, name, reason, message, event_type, uid)
        return await asyncio.to_thread(create_event, self.core, body)
