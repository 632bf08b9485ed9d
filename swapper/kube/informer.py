"""A list-then-watch cache of one kind of object across all namespaces (an informer).

Admission must not GET a Secret per request: the objects it needs are listed once and then
followed with a watch, in a thread (the ``kubernetes`` client is synchronous). When the watch
ends (its ``timeoutSeconds``, a dropped connection) it resumes from the last resourceVersion it
saw; when the API server answers 410 Gone (that version is too old) the cache is listed again
and replaced whole. Failures back off exponentially (with jitter) and never end the thread.

Objects are kept as what ``transform`` makes of the raw JSON, keyed by ``(namespace, name)``:
so only the small part swapper needs is held in memory, not every Secret of the cluster.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from swapper.errors import KubeError
from swapper.kube import REQUEST_TIMEOUT, call_json, status_of
from swapper.logs import get_logger

log = get_logger("swapper.kube")

T = TypeVar("T")
Key = tuple[str, str]


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


def _lines(response: Any) -> Iterator[bytes]:
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


class Informer(Generic[T]):
    """Keeps ``items`` equal to the API server's objects, through ``transform``.

    ``list_all`` is a generated ``list_*_for_all_namespaces`` method of the client.
    ``transform(obj)`` returns what to keep, or None to keep nothing for that object.
    """

    def __init__(
        self,
        name: str,
        list_all: Callable[..., Any],
        transform: Callable[[dict[str, Any]], T | None],
        *,
        field_selector: str = "",
        watch_timeout: int = 300,
        max_backoff: float = 30.0,
    ) -> None:
        self.name = name
        self.list_all = list_all
        self.transform = transform
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.items: dict[Key, T] = {}
        self.synced = threading.Event()
        self.lists = 0  # full lists done (the first, and one after every 410 or failure)
        self.expired = 0  # watches answered 410 Gone: relisted at once, not a failure
        self.failures = 0  # errors that were retried after a backoff
        self._response: Any = None

    @staticmethod
    def key(obj: dict[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return str(meta.get("namespace") or ""), str(meta.get("name") or "")

    def _keep(self, obj: dict[str, Any]) -> tuple[Key, T | None]:
        return self.key(obj), self.transform(obj)

    def _selector(self) -> dict[str, Any]:
        return {"field_selector": self.field_selector} if self.field_selector else {}

    def list(self) -> str:
        """Replace the cache with a fresh list; returns the list's resourceVersion."""
        body = call_json(self.list_all, **self._selector())
        fresh: dict[Key, T] = {}
        for obj in body.get("items") or []:
            key, kept = self._keep(obj)
            if kept is not None:
                fresh[key] = kept
        self.items = fresh  # one assignment: readers see the old or the new cache, whole
        self.lists += 1
        self.synced.set()
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _apply(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise KubeError(f"watch of {self.name}: {str(obj.get('message', ''))[:200]}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            key, kept = self._keep(obj)
            if kept is None:
                self.items.pop(key, None)
            else:
                self.items[key] = kept
        elif kind == "DELETED":
            self.items.pop(self.key(obj), None)
        return str(version) if version else None

    def watch(self, version: str, stop: threading.Event) -> str:
        """Follow changes from ``version`` until the watch ends; returns the last version."""
        try:
            response = self.list_all(
                watch=True,
                resource_version=version,
                timeout_seconds=self.watch_timeout,
                allow_watch_bookmarks=True,
                _preload_content=False,
                _request_timeout=(REQUEST_TIMEOUT, self.watch_timeout + REQUEST_TIMEOUT),
                **self._selector(),
            )
        except Exception as exc:
            if status_of(exc) == 410:
                raise Gone() from None
            raise
        self._response = response
        try:
            for line in _lines(response):
                if stop.is_set():
                    break
                seen = self._apply(json.loads(line))
                if seen:
                    version = seen
        finally:
            self._response = None
            response.release_conn()
        return version

    def run(self, stop: threading.Event) -> None:
        """List, then watch, until ``stop`` is set. Never raises."""
        failures = 0
        version = ""
        while not stop.is_set():
            try:
                if not version:
                    version = self.list()
                version = self.watch(version, stop)
                failures = 0
            except Gone:
                self.expired += 1
                version = ""  # list again, at once: an expired version is not a failure
            except Exception as exc:
                if stop.is_set():
                    break  # the watch was interrupted to stop: not a failure
                failures += 1
                self.failures += 1
                version = ""
                delay = min(self.max_backoff, 0.5 * 2**failures) * random.uniform(0.5, 1.0)  # noqa: S311
                log.warning(
                    "informer_failed",
                    resource=self.name,
                    error=f"{type(exc).__name__}: {str(exc)[:200]}",
                    retry_in=round(delay, 1),
                )
                stop.wait(delay)

    def interrupt(self) -> None:
        """Unblock a watch waiting for data (used on shutdown)."""
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # best effort on shutdown
                response.shutdown()
