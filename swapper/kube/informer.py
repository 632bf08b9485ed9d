"""A list-then-watch cache of one kind of object across all namespaces (an informer).

Admission must not GET a Secret per request: the objects it needs are listed once and then
followed with a watch, in a thread (the ``kubernetes`` client is synchronous).

- The list is read in pages (``limit``, 500 objects by default, following ``continue``): every
  page is served from the first page's snapshot, and the cache is replaced whole, in one
  assignment, only once the last page is in. The watch starts from that snapshot's
  resourceVersion. When a continue token expires mid-list (410 Gone: etcd compacted that
  snapshot away), the list starts over from its first page.
- When the watch ends (its ``timeoutSeconds``) or fails (a dropped connection, an unreachable
  or failing API server) it resumes from the last resourceVersion it saw, without listing
  again. Only 410 Gone (that version is too old), answered as the watch request's HTTP status
  or as an ``ERROR`` event in its stream, lists again, at once, and replaces the cache whole.
- Failures back off exponentially (with jitter) and never end the thread.

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

from swapper.errors import Gone, KubeError
from swapper.kube import REQUEST_TIMEOUT, api_error, call_json, status_of
from swapper.logs import get_logger

log = get_logger("swapper.kube")

T = TypeVar("T")
Key = tuple[str, str]


def watch_lines(response: Any) -> Iterator[bytes]:
    """The lines of a watch response as they arrive (one JSON event each)."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def open_watch(
    list_call: Callable[..., Any], version: str, timeout: int, action: str = "", **kwargs: Any
) -> Any:
    """The streaming response of a watch from ``version`` (``list_call`` is a generated
    ``list_*`` method, ``kwargs`` its selectors); a failure raises :func:`api_error`'s
    KubeError: :class:`Gone` for a 410 (list again)."""
    try:
        return list_call(
            watch=True,
            resource_version=version,
            timeout_seconds=timeout,
            allow_watch_bookmarks=True,
            _preload_content=False,
            _request_timeout=(REQUEST_TIMEOUT, timeout + REQUEST_TIMEOUT),
            **kwargs,
        )
    except Exception as exc:
        what = action or f"watch {getattr(list_call, '__name__', 'objects')}"
        raise api_error(exc, what) from None


def watch_events(response: Any, what: str) -> Iterator[dict[str, Any]]:
    """The events of a watch response, as they arrive. An ``ERROR`` event raises: code 410 as
    :class:`Gone` (list again), any other as :class:`KubeError` naming ``what``."""
    for line in watch_lines(response):
        event: dict[str, Any] = json.loads(line)
        if event.get("type") == "ERROR":
            status = event.get("object") or {}
            if status.get("code") == 410:
                raise Gone()
            raise KubeError(f"watch of {what}: {str(status.get('message', ''))[:200]}")
        yield event


class Informer(Generic[T]):
    """Keeps ``items`` equal to the API server's objects, through ``transform``.

    ``list_all`` is a generated ``list_*_for_all_namespaces`` method of the client (or a
    namespaced ``list_*`` with its namespace bound). ``transform(obj)`` returns what to keep,
    or None to keep nothing for that object. Hooks, called in the informer's thread:
    ``on_listed()`` after a full list replaced :attr:`items`, ``on_event(type, obj)`` after a
    watch event was applied, ``on_failure(exc)`` after a failure (before the backoff).
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
        page_size: int = 500,
        on_listed: Callable[[], None] = lambda: None,
        on_event: Callable[[str, dict[str, Any]], None] = lambda _type, _obj: None,
        on_failure: Callable[[BaseException], None] = lambda _exc: None,
    ) -> None:
        self.name = name
        self.on_listed = on_listed
        self.on_event = on_event
        self.on_failure = on_failure
        self.list_all = list_all
        self.transform = transform
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.page_size = page_size
        self.items: dict[Key, T] = {}
        self.synced = threading.Event()
        self.resource_version = ""  # the last one seen, watched from; "" until listed, or Gone
        self.lists = 0  # full lists done (the first, and one after every 410 Gone of a watch)
        self.expired = 0  # watches answered 410 Gone: relisted at once, not a failure
        self.restarts = 0  # lists started over: a continue token expired (410) mid-list
        self.failures = 0  # errors that were retried after a backoff
        self.generation = 0  # bumped by every change to items: readers poll it cheaply
        self._response: Any = None

    @staticmethod
    def key(obj: dict[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return str(meta.get("namespace") or ""), str(meta.get("name") or "")

    def _keep(self, obj: dict[str, Any]) -> tuple[Key, T | None]:
        return self.key(obj), self.transform(obj)

    def _selector(self) -> dict[str, Any]:
        return {"field_selector": self.field_selector} if self.field_selector else {}

    def _page(self, token: str) -> dict[str, Any]:
        more: dict[str, Any] = {"_continue": token} if token else {}
        action = f"list {self.name}"
        return call_json(
            self.list_all, limit=self.page_size, action=action, **more, **self._selector()
        )

    def list(self) -> str:
        """Replace the cache with a fresh list, read in pages; returns its resourceVersion."""
        fresh: dict[Key, T] = {}
        token = ""
        while True:
            try:
                body = self._page(token)
            except Gone:
                if not token:
                    raise
                # The snapshot the first pages were read at is compacted away: the rest of it
                # cannot be read, and pages of two snapshots are no list. Start over.
                self.restarts += 1
                log.info("informer_list_restarted", resource=self.name, reason="continue_expired")
                fresh, token = {}, ""
                continue
            for obj in body.get("items") or []:
                key, kept = self._keep(obj)
                if kept is not None:
                    fresh[key] = kept
            meta = body.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                break
        self.items = fresh  # one assignment: readers see the old or the new cache, whole
        self.generation += 1
        self.lists += 1
        self.synced.set()
        self.on_listed()
        # Every page carries the first page's snapshot resourceVersion; this is the last one's.
        return str(meta.get("resourceVersion") or "")

    def _apply(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        obj = event.get("object") or {}
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            key, kept = self._keep(obj)
            if kept is None:
                self.items.pop(key, None)
            else:
                self.items[key] = kept
            self.generation += 1
        elif kind == "DELETED":
            self.items.pop(self.key(obj), None)
            self.generation += 1
        else:
            return str(version) if version else None  # a bookmark: nothing changed
        self.on_event(str(kind), obj)
        return str(version) if version else None

    def watch(self, stop: threading.Event) -> None:
        """Follow changes from :attr:`resource_version` until the watch ends, advancing it
        with every event (a bookmark too), so a failed watch resumes where it was."""
        response = open_watch(
            self.list_all,
            self.resource_version,
            self.watch_timeout,
            action=f"watch {self.name}",
            **self._selector(),
        )
        self._response = response
        try:
            if stop.is_set():  # interrupt() ran before the response could be shut down
                return
            for event in watch_events(response, self.name):
                if stop.is_set():
                    break
                seen = self._apply(event)
                if seen:
                    self.resource_version = seen
        finally:
            self._response = None
            response.release_conn()

    def run(self, stop: threading.Event) -> None:
        """List, then watch, until ``stop`` is set. Never raises.

        A failure is logged as a warning when its message differs from the previous one, and
        at debug level while it repeats (a permission the API server keeps refusing is reported
        once, not every backoff)."""
        failures = 0
        last_error = ""
        while not stop.is_set():
            try:
                if not self.resource_version:
                    self.resource_version = self.list()
                self.watch(stop)
                failures = 0
                last_error = ""
            except Gone:
                self.expired += 1
                self.resource_version = ""  # list again, at once: not a failure
            except Exception as exc:
                if stop.is_set():
                    break  # the watch was interrupted to stop: not a failure
                # A failed list is listed again; a failed watch resumes from the last
                # resourceVersion it saw (if that is too old by then, the API server says 410).
                failures += 1
                self.failures += 1
                delay = min(self.max_backoff, 0.5 * 2**failures) * random.uniform(0.5, 1.0)  # noqa: S311
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
                # An API error's text carries its response headers (a date, an audit id): the
                # same refusal is told apart by its status, anything else by its text.
                status = status_of(exc)
                kind = f"{type(exc).__name__} {status}" if status is not None else error
                report = log.warning if kind != last_error else log.debug
                report("informer_failed", resource=self.name, error=error, retry_in=round(delay, 1))
                last_error = kind
                self.on_failure(exc)
                stop.wait(delay)

    def interrupt(self) -> None:
        """Unblock a watch waiting for data (used on shutdown)."""
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # best effort on shutdown
                response.shutdown()
