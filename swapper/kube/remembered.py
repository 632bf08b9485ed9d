"""The source-access check's public answers in a ConfigMap: remembered across restarts and shared
by replicas. The protocol and the in-memory copy are :mod:`swapper.access.remembered`'s; this
module is the Kubernetes store behind them.

Before swapping a pod's image to the mirror, swapper checks that the source image is readable
(anonymously, or with the pod's own pull secrets). "Readable anonymously" (public) is the same
answer for every pod, so it is remembered here: after a restart during a source outage, a public
image already in the mirror is still swapped, and replicas do not each ask the source.

:class:`PublicAnswers` is what the access check uses. Nothing on the admission path does I/O:
:meth:`~PublicAnswers.confirmed_at` reads an in-memory copy; :meth:`~PublicAnswers.remember` and
:meth:`~PublicAnswers.forget` change that copy and queue the change; the background task
:meth:`~PublicAnswers.run` does the rest.

- :class:`MemoryPublicAnswers`: this process only (no ConfigMap configured).
- :class:`ConfigMapPublicAnswers`: one ConfigMap in swapper's own namespace (the chart creates
  ``<fullname>-source-access`` without data, and grants get, list, watch, update and patch on
  that one object only; swapper never creates, deletes or lists any other ConfigMap).

Only repository names are taken, never credentials: answers tied to a pod's pull secrets stay
in the access check's own memory and never reach this module, so they are never written.

The ConfigMap holds one data key, ``public.json`` (ConfigMap keys cannot hold ``/`` or ``:``):
a JSON object of repository name -> unix seconds it was last confirmed public, e.g.
``{"docker.io/library/nginx": 1764590000}``. It is bounded by ``max_entries`` and by
``max_bytes`` of JSON (512 KiB by default, well under the API server's 1 MiB per object), the
oldest stamps dropped first. A repository confirmed again is written only once its stamp is
older than ``refresh`` (10 minutes), so a hot image does not write on every pod.

- **Load**: at start, a list of that one object (a ``metadata.name`` field selector, which RBAC
  authorises against the rule's ``resourceNames``); then a watch from the list's
  resourceVersion, in a thread, so every replica sees the others' writes: both are the one
  :class:`~swapper.kube.informer.Informer` every watch of swapper uses (a watch that ends
  resumes from the last resourceVersion seen; 410 Gone lists again; failures back off).
- **Write**: every ``flush_interval`` seconds, the queued changes in one batch: a PUT of the
  object as last read (its labels and annotations, e.g. Helm's, kept), with its
  ``metadata.resourceVersion``, so a concurrent write is a 409 Conflict, not a lost update. On
  a conflict the object is read again and the batch merged into it again (per repository the
  newest stamp wins; a forget removes a stamp no newer than itself), at most ``ATTEMPTS`` times
  per flush; what is not written stays queued for the next one.
- **Ordering**: the watch may deliver an older version after this replica's own write was
  applied; a version older than the one held is ignored (resourceVersions compared as integers,
  as KEP-5504 made them comparable; when one is not an integer the newer arrival wins).
- **Failures** never block anything: when the ConfigMap is missing (404, or a list without
  it), or RBAC forbids it, or the API server cannot be reached, one warning is logged per kind
  of problem until it is over, answers are kept (and queued) in memory, and the watch retries
  with a backoff (a ConfigMap created later is picked up by the watch). :meth:`ready` is true
  once the start-up load was tried, whatever its outcome.

The ``kubernetes`` client is synchronous: every call runs in a thread (``asyncio.to_thread``, or
the watch's own thread) with a timeout (:data:`swapper.kube.REQUEST_TIMEOUT`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from swapper.errors import Conflict, NotFound
from swapper.kube import api_error, call_json
from swapper.kube.informer import Informer
from swapper.logs import get_logger
from swapper.stamps import MAX_ENTRIES, REFRESH, StampMap, Stamps

log = get_logger("swapper.kube")

DATA_KEY = "public.json"
MAX_BYTES = 512 * 1024
ATTEMPTS = 5
FINAL_FLUSH_TIMEOUT = 5.0  # seconds the last write may hold a shutdown


def bounded(
    stamps: Mapping[str, int], max_entries: int, max_bytes: int | None = None
) -> dict[str, int]:
    """The newest ``max_entries`` stamps, and of those the newest that fit in ``max_bytes`` of
    :func:`encode`'s JSON; the oldest are dropped first (ties: by repository name)."""
    newest = sorted(stamps.items(), key=lambda item: (-item[1], item[0]))[:max_entries]
    if max_bytes is not None:
        size, kept = 2, 0  # the braces
        for repository, stamp in newest:
            size += len(json.dumps(repository)) + 1 + len(str(stamp)) + (1 if kept else 0)
            if size > max_bytes:
                break
            kept += 1
        newest = newest[:kept]
    return dict(newest)


def encode(stamps: Mapping[str, int]) -> str:
    """The ``public.json`` text: compact, ASCII, sorted by repository (a stable diff)."""
    return json.dumps(dict(sorted(stamps.items())), separators=(",", ":"))


def decode(text: str | None) -> Stamps:
    """Stamps from ``public.json`` (none for a missing key); raises ValueError when unreadable.
    Entries that are not a repository name and a non-negative number are skipped."""
    if not text:
        return {}
    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise ValueError("public.json is not a JSON object")
    return {
        key: int(value)
        for key, value in parsed.items()
        if isinstance(key, str)
        and key
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    }


def newer(version: str, than: str) -> bool:
    """Whether resourceVersion ``version`` is newer than ``than`` (KEP-5504: positive integers
    without leading zeros compare by value). Not comparable: True, the newer arrival wins."""
    if not than:
        return True
    if not (version.isdigit() and than.isdigit()) or "0" in (version[:1], than[:1]):
        return version != than
    return (len(version), version) > (len(than), than)


class ConfigMapPublicAnswers(StampMap):
    """Public answers kept in the ConfigMap ``namespace/name`` (see the module docstring).

    Counters, for metrics and tests: ``loads`` (the object read by a list), ``writes``,
    ``conflicts`` (409s met, each followed by a read and a retry), ``failures`` (failed lists or
    watches, retried after a backoff); ``warnings`` holds the event of every warning logged, in
    order.
    """

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        name: str,
        max_entries: int = MAX_ENTRIES,
        *,
        max_bytes: int = MAX_BYTES,
        refresh: float = REFRESH,
        flush_interval: float = 1.0,
        watch_timeout: int = 300,
        max_backoff: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from kubernetes import client

        super().__init__(max_entries, refresh, clock)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.max_bytes = max_bytes
        self.flush_interval = flush_interval
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.loads = 0
        self.writes = 0
        self.conflicts = 0
        self.warnings: list[str] = []
        # All below under self._lock.
        self._object: dict[str, Any] | None = None  # the ConfigMap as last seen; None: missing
        self._stored: Stamps = {}  # its public.json
        self._version = ""  # its resourceVersion
        self._pending: Stamps = {}  # remembered here, not written yet
        self._forgets: Stamps = {}  # forgotten here (when), not written yet
        self._problems: dict[str, str] = {}  # kind -> message, warned once until it is over
        self._tried = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flushing = asyncio.Lock()
        # The ConfigMap, listed and followed as any other object (a list of one, by name).
        self.informer: Informer[dict[str, Any]] = Informer(
            f"ConfigMap {self.where}",
            functools.partial(self.core.list_namespaced_config_map, namespace),
            lambda obj: obj,
            field_selector=f"metadata.name={name}",
            watch_timeout=watch_timeout,
            max_backoff=max_backoff,
            on_listed=self._listed,
            on_event=self._changed,
            on_failure=self._failed,
        )

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def loaded(self) -> bool:
        """Whether the ConfigMap is known (read at least once and not deleted since)."""
        with self._lock:
            return self._object is not None

    def ready(self) -> bool:
        return self._tried.is_set()

    def stored(self) -> Stamps:
        """The ConfigMap's answers as last seen (a copy)."""
        with self._lock:
            return dict(self._stored)

    # -- the in-memory copy -----------------------------------------------------------------------

    def _queued(self, repository: str, stamp: int) -> None:
        self._pending[repository] = stamp
        self._forgets.pop(repository, None)

    def _unqueued(self, repository: str, stamp: int) -> None:
        self._pending.pop(repository, None)
        self._forgets[repository] = stamp
        if len(self._forgets) > self.max_entries:
            self._forgets = bounded(self._forgets, self.max_entries)

    def _dropped(self, repository: str) -> None:
        self._pending.pop(repository, None)

    @staticmethod
    def _merge(base: Stamps, pending: Stamps, forgets: Stamps) -> Stamps:
        merged = dict(base)
        for repository, when in forgets.items():
            if repository in merged and merged[repository] <= when:
                del merged[repository]
        for repository, stamp in pending.items():
            if merged.get(repository, -1) < stamp:
                merged[repository] = stamp
        return merged

    def _rebuild(self) -> None:
        """The copy: the stored answers with this replica's queued changes (lock held)."""
        view = self._merge(self._stored, self._pending, self._forgets)
        if len(view) > self.max_entries:
            view = bounded(view, self.max_entries)
        self._pending = {
            repository: stamp
            for repository, stamp in self._pending.items()
            if view.get(repository) == stamp and self._stored.get(repository) != stamp
        }
        self._view = view

    def _observe(self, obj: dict[str, Any]) -> None:
        """Take the ConfigMap as the API server holds it (unless an older version)."""
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        try:
            stamps = decode((obj.get("data") or {}).get(DATA_KEY))
        except ValueError as exc:
            self._problem("unreadable", f"{DATA_KEY} of ConfigMap {self.where}: {exc}")
            stamps = {}  # rewritten whole with the next write
        else:
            self._over("unreadable")
        with self._lock:
            if self._object is not None and not newer(version, self._version):
                return
            self._object, self._stored, self._version = obj, stamps, version
            self._rebuild()
        self._over("missing")

    def _missing(self) -> None:
        with self._lock:
            self._object, self._version = None, ""
        self._problem(
            "missing",
            f"ConfigMap {self.where} does not exist (the chart creates it): "
            "public answers are kept in memory until it does",
        )

    # -- reporting ----------------------------------------------------------------------------

    def _problem(self, kind: str, message: str) -> None:
        with self._lock:
            if kind in self._problems:
                return
            self._problems[kind] = message
        event = f"remembered_answers_{kind}"
        self.warnings.append(event)
        log.warning(event, config_map=self.where, error=message[:300])

    def _over(self, kind: str) -> None:
        with self._lock:
            if self._problems.pop(kind, None) is None:
                return
        log.info(f"remembered_answers_{kind}_over", config_map=self.where)

    # -- reading --------------------------------------------------------------------------------

    def _listed(self) -> None:
        """The informer listed the ConfigMap (at start-up, or again after a 410)."""
        found = self.informer.items.get((self.namespace, self.name))
        self._over("read")
        if found is None:
            self._missing()
            return
        self.loads += 1
        self._observe(found)

    def _changed(self, kind: str, obj: dict[str, Any]) -> None:
        """A watch event of the ConfigMap."""
        if kind == "DELETED":
            self._missing()
        else:
            self._observe(obj)

    def _failed(self, exc: BaseException) -> None:
        self._problem("read", str(api_error(exc, f"following ConfigMap {self.where}")))

    async def load(self) -> bool:
        """The start-up read; returns whether the ConfigMap was read. Never raises."""
        try:
            version = await asyncio.to_thread(self.informer.list)
            self.informer.resource_version = version
        except Exception as exc:
            self._problem("read", str(api_error(exc, f"reading ConfigMap {self.where}")))
        finally:
            self._tried.set()
        return self.loaded

    @property
    def failures(self) -> int:
        """Failed lists or watches, retried after a backoff."""
        return self.informer.failures

    # -- writing --------------------------------------------------------------------------------

    def _body(self, obj: dict[str, Any], stamps: Stamps) -> dict[str, Any]:
        body = copy.deepcopy(obj)
        body.setdefault("apiVersion", "v1")
        body.setdefault("kind", "ConfigMap")
        body.get("metadata", {}).pop("managedFields", None)  # kept by the server as they are
        body["data"] = {**(body.get("data") or {}), DATA_KEY: encode(stamps)}
        return body

    def _flush(self) -> bool:
        """Write the queued changes (in a thread); returns whether they are in the ConfigMap.
        Raises a KubeError when the API server refuses (NotFound, Forbidden, ...)."""
        with self._lock:
            if not self._pending and not self._forgets:
                return True
            if self._object is None:
                return False  # not known (missing, forbidden, unreachable): kept in memory
            pending, forgets = dict(self._pending), dict(self._forgets)
            obj, base = self._object, self._stored
        for _ in range(ATTEMPTS):
            merged = bounded(self._merge(base, pending, forgets), self.max_entries, self.max_bytes)
            if merged != base:
                action = f"writing ConfigMap {self.where}"
                try:
                    written = call_json(
                        self.core.replace_namespaced_config_map,
                        self.name,
                        self.namespace,
                        self._body(obj, merged),
                        action=action,
                    )
                except Conflict:
                    self.conflicts += 1
                    self._observe(
                        call_json(
                            self.core.read_namespaced_config_map,
                            self.name,
                            self.namespace,
                            action=action,
                        )
                    )
                    with self._lock:
                        if self._object is None:
                            return False
                        obj, base = self._object, self._stored
                    continue
                self.writes += 1
                self._observe(written)
            with self._lock:
                for repository, stamp in pending.items():
                    if self._pending.get(repository) == stamp:
                        del self._pending[repository]
                for repository, when in forgets.items():
                    if self._forgets.get(repository) == when:
                        del self._forgets[repository]
                self._rebuild()
            self._over("write")
            return True
        self._problem(
            "write", f"ConfigMap {self.where}: still conflicting after {ATTEMPTS} attempts"
        )
        return False

    async def flush(self) -> bool:
        """Write the queued changes now; returns whether they are stored. Never raises."""
        async with self._flushing:
            try:
                return await asyncio.to_thread(self._flush)
            except NotFound:
                self._missing()
            except Exception as exc:
                self._problem("write", str(api_error(exc, f"writing ConfigMap {self.where}")))
            return False

    # -- the background task ------------------------------------------------------------------

    def start(self) -> None:
        """Start the watch thread (after :meth:`load`): the informer watches from the list
        :meth:`load` read, or lists again (after a backoff) when that failed."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.informer.run,
            args=(self._stop,),
            name=f"remembered-{self.name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the watch thread (interrupting its watch) and wait for it."""
        self._stop.set()
        self.informer.interrupt()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    async def run(self) -> None:
        """Load, follow the object, write queued changes every ``flush_interval`` seconds;
        on cancellation, one last write (bounded), then stop."""
        await self.load()
        self.start()
        try:
            while True:
                await asyncio.sleep(self.flush_interval)
                await self.flush()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(), FINAL_FLUSH_TIMEOUT)
            await asyncio.to_thread(self.stop)
