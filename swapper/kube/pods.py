"""Pods read from the API server page by page (``swapper audit``), and a container's image
patched back (the healer's ``revert``, :class:`KubePodPatches`).

A page is at most ``limit`` pods (500 by default) and the next one is asked with the first's
``continue`` token, so a caller holds one page at a time, never the whole list. When the token
expires mid-list (410 Gone: etcd compacted the snapshot away), the API server's answer carries
a fresh token that goes on from the next pod, from a newer snapshot: a report takes the rest
from there rather than counting the first pages twice (:attr:`PodPages.inconsistent` says so).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, Protocol

from swapper.errors import Conflict, Forbidden, Gone, Invalid, NotFound
from swapper.kube import call_json

PAGE_SIZE = 500


class PodPages:
    """Iterates over the pods of one namespace ("" for all), a page (a list of raw pod JSON
    objects) at a time. A refusal (403) ends the iteration and is kept in :attr:`forbidden`;
    any other failure raises :class:`KubeError`."""

    def __init__(self, api_client: Any, namespace: str = "", limit: int = PAGE_SIZE) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.limit = limit
        self.pages = 0
        self.inconsistent = False  # a continue token expired: later pages are a newer snapshot
        self.forbidden = ""  # the API server's refusal, when it answered 403

    def _list(self, token: str, action: str) -> dict[str, Any]:
        more: dict[str, Any] = {"_continue": token} if token else {}
        more.update(limit=self.limit, action=action)
        if self.namespace:
            return call_json(self.core.list_namespaced_pod, self.namespace, **more)
        return call_json(self.core.list_pod_for_all_namespaces, **more)

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        where = f"namespace {self.namespace}" if self.namespace else "all namespaces"
        token = ""
        while True:
            try:
                body = self._list(token, f"list pods in {where}")
            except Gone as gone:
                if not (token and gone.continue_token):
                    raise
                self.inconsistent = True  # the rest comes from a newer snapshot
                token = gone.continue_token
                continue
            except Forbidden as refused:
                self.forbidden = str(refused)
                return
            self.pages += 1
            items = body.get("items")
            yield (
                [item for item in items if isinstance(item, dict)]
                if isinstance(items, list)
                else []
            )
            metadata = body.get("metadata")
            token = str(metadata.get("continue") or "") if isinstance(metadata, dict) else ""
            if not token:
                return


def namespaces(api_client: Any) -> list[str] | None:
    """The names of every namespace; None when listing them is forbidden (403)."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    names: list[str] = []
    token = ""
    while True:
        more: dict[str, Any] = {"_continue": token} if token else {}
        try:
            body = call_json(core.list_namespace, limit=PAGE_SIZE, action="list namespaces", **more)
        except Forbidden:
            return None
        for item in body.get("items") or []:
            name = (item.get("metadata") or {}).get("name") if isinstance(item, dict) else None
            if isinstance(name, str):
                names.append(name)
        token = str((body.get("metadata") or {}).get("continue") or "")
        if not token:
            return names


class PodPatches(Protocol):
    """Changes one container's image in a pod: the healer's ``revert``
    (:class:`KubePodPatches`, or the memory double of tests)."""

    async def set_image(
        self, namespace: str, name: str, uid: str, path: str, current: str, image: str
    ) -> str:
        """``patched``; ``gone`` when the pod (that uid) no longer exists; ``conflict`` when
        the container's image is no longer ``current``. Raises :class:`KubeError` otherwise."""
        ...


def image_patch(uid: str, path: str, current: str, image: str) -> list[dict[str, Any]]:
    """A JSON patch that sets the image at ``path`` only if the pod is still the one with
    ``uid`` and the image is still ``current`` (each a ``test``, so nothing else is touched)."""
    return [
        {"op": "test", "path": "/metadata/uid", "value": uid},
        {"op": "test", "path": path, "value": current},
        {"op": "replace", "path": path, "value": image},
    ]


class KubePodPatches:
    """Patches pods through an API client, off the event loop (needs ``patch`` on pods)."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)

    async def set_image(
        self, namespace: str, name: str, uid: str, path: str, current: str, image: str
    ) -> str:
        return await asyncio.to_thread(
            self._patch, namespace, name, image_patch(uid, path, current, image)
        )

    def _patch(self, namespace: str, name: str, body: list[dict[str, Any]]) -> str:
        try:
            call_json(
                self.core.patch_namespaced_pod,
                name,
                namespace,
                body,
                action=f"patch pod {namespace}/{name}",
            )
        except NotFound:
            return "gone"
        except (Conflict, Invalid):  # a failed test: another uid, or the image changed
            return "conflict"
        return "patched"
