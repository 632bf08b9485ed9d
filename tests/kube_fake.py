"""An in-process fake of the Kubernetes API server, for faults a real one cannot be made to show.

Tests of swapper's Kubernetes code run on a real kube-apiserver and etcd (the ``cluster``
fixture, tests/e2e/cluster.py). A few need what a real server cannot be made to do at a chosen
moment, and use this fake instead, through the real ``kubernetes`` client
(:meth:`FakeKubeAPI.api_client`, plain HTTP on loopback):

- **an injected error status** (500, 503, ...) answered to the next matching request
  (:meth:`FakeKubeAPI.fail`);
- **a callback run between a read and a write**, e.g. a concurrent writer just before
  swapper's PUT, PATCH or create, so its write meets a 409 (:meth:`FakeKubeAPI.before`);
- **exact request recording**: method, path, query, content type and body of every request
  (:attr:`FakeKubeAPI.requests`, :meth:`FakeKubeAPI.writes`), to count API calls or read the
  patch swapper sent.

To support those tests, and nothing more, it serves core/v1 ``secrets`` and ``serviceaccounts``
and admissionregistration.k8s.io/v1 ``mutatingwebhookconfigurations``: GET one, LIST (one
namespace or all; ``fieldSelector`` ``type=`` only), create (409 AlreadyExists), PUT (409
Conflict on a stale ``metadata.resourceVersion``), JSON patch (``add``, ``remove``,
``replace``), and ``?watch=true`` streams of the writes after a ``resourceVersion`` (or after
now), ending at ``timeoutSeconds``. Errors are ``Status`` objects. :meth:`FakeKubeAPI.put` and
:meth:`FakeKubeAPI.get` reach the store directly.

Covered by the real API server instead (tests/e2e/cluster.py), not modelled here:

- the admission chain (ServiceAccount, NamespaceLifecycle, ResourceQuota, PodSecurity,
  mutating webhooks) and namespaces as objects;
- authentication and RBAC (a 403 comes from a ServiceAccount without the permission);
- field validation and defaulting, ``creationTimestamp``, ``uid``, ``generateName``, dry runs;
- Secret validation: immutable ``type``, ``kubernetes.io/tls`` needing ``tls.crt`` and
  ``tls.key``, pull-secret content, base64 ``data``, ``stringData``, ``immutable``;
- strategic merge patch and JSON merge patch, the JSON patch ``test``, ``copy`` and ``move``
  operations, DELETE, label selectors and other field selectors;
- no-op writes that keep the ``resourceVersion``, and etcd revisions as resourceVersions;
- watches: initial ADDED events, bookmarks, DELETED events, and 410 Gone after etcd compaction
  (tests/e2e/test_informer.py); paging; every other resource (pods, events, ...).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from webhook_process import free_port

JSON = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES: dict[tuple[str, str, str], Resource] = {
    (r.group, r.version, r.plural): r
    for r in (
        Resource("", "v1", "secrets", "Secret", True),
        Resource("", "v1", "serviceaccounts", "ServiceAccount", True),
        Resource(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            False,
        ),
    )
}


class APIError(Exception):
    """A failure answered as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def status(self) -> JSON:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def not_found(resource: Resource, name: str) -> APIError:
    return APIError(404, "NotFound", f'{resource.plural} "{name}" not found')


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any


@dataclass
class _Injection:
    method: str
    path: str
    times: int
    error: APIError | None = None
    callback: Callable[[], None] | None = None


@dataclass
class _Event:
    rv: int
    type: str
    resource: Resource
    namespace: str
    obj: JSON


def _type_selected(selector: str, obj: JSON) -> bool:
    """A ``fieldSelector`` of ``type=...`` requirements (what swapper's informers send)."""
    for requirement in filter(None, (r.strip() for r in selector.split(","))):
        key, _, value = requirement.partition("=")
        if key != "type":
            raise APIError(400, "BadRequest", f'field label not supported: "{key}"')
        if obj.get("type") != value:
            return False
    return True


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KeyError(path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc: JSON, operations: list[JSON]) -> JSON:
    """RFC 6902 ``add``, ``remove`` and ``replace`` of map keys, through lists by index (what
    swapper sends)."""
    doc = copy.deepcopy(doc)
    for op in operations:
        try:
            parts = _pointer(str(op.get("path", "")))
            parent: Any = doc
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            last = parts[-1]
            if not isinstance(parent, dict):
                raise KeyError(last)
            kind = op.get("op")
            if kind not in ("add", "replace", "remove") or (kind != "add" and last not in parent):
                raise KeyError(last)
            if kind == "remove":
                del parent[last]
            else:
                parent[last] = copy.deepcopy(op.get("value"))
        except (KeyError, IndexError, TypeError, ValueError):
            raise APIError(
                422, "Invalid", f"the server rejected our request: {op} cannot be applied"
            ) from None
    return doc


class FakeKubeAPI:
    """The fake API server; :meth:`start` it (or use :func:`running_fake_kube_api`)."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self._objects: dict[tuple[Resource, str, str], JSON] = {}
        self._rv = 100
        self._history: list[_Event] = []
        self._changed = threading.Condition()
        self._injections: list[_Injection] = []
        self._stopping = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeKubeAPI:
        self.port = free_port()
        api = self

        class Handler(_Handler):
            fake = api

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-kube-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def api_client(self) -> Any:
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.host
        return client.ApiClient(configuration)

    # -- for tests ------------------------------------------------------------------------------

    def put(self, plural: str, obj: JSON, group: str = "") -> JSON:
        """Create or overwrite an object directly (as another writer would); returns it."""
        resource = RESOURCES[(group, "v1", plural)]
        obj = copy.deepcopy(obj)
        namespace = obj["metadata"].get("namespace", "") if resource.namespaced else ""
        with self._changed:
            return self._store(resource, namespace, obj)

    def get(self, plural: str, name: str, namespace: str = "", group: str = "") -> JSON | None:
        resource = RESOURCES[(group, "v1", plural)]
        with self._changed:
            found = self._objects.get((resource, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def writes(self) -> list[RecordedRequest]:
        """Recorded requests that change something."""
        return [r for r in self.requests if r.method in ("POST", "PUT", "PATCH")]

    def fail(self, method: str, path: str, code: int, reason: str, times: int = 1) -> None:
        """Answer the next ``times`` requests ``method path`` with this error instead."""
        error = APIError(code, reason, f"injected {reason}")
        with self._changed:
            self._injections.append(_Injection(method.upper(), path, times, error=error))

    def before(self, method: str, path: str, callback: Callable[[], None], times: int = 1) -> None:
        """Run ``callback`` before the next ``times`` requests ``method path`` are handled."""
        with self._changed:
            self._injections.append(_Injection(method.upper(), path, times, callback=callback))

    # -- the store (lock held) --------------------------------------------------------------------

    def _store(self, resource: Resource, namespace: str, obj: JSON) -> JSON:
        """Persist ``obj`` with a new resourceVersion and record the event."""
        meta = obj["metadata"]
        if resource.namespaced:
            meta["namespace"] = namespace
        key = (resource, namespace, meta["name"])
        kind = "MODIFIED" if key in self._objects else "ADDED"
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        self._objects[key] = obj
        self._history.append(_Event(self._rv, kind, resource, namespace, copy.deepcopy(obj)))
        self._changed.notify_all()
        return copy.deepcopy(obj)

    def _existing(self, resource: Resource, namespace: str, name: str) -> JSON:
        found = self._objects.get((resource, namespace, name))
        if found is None:
            raise not_found(resource, name)
        return found

    def _selected(self, resource: Resource, namespace: str, query: dict[str, str]) -> list[JSON]:
        return [
            obj
            for (kind, ns, _), obj in self._objects.items()
            if kind == resource
            and (not namespace or ns == namespace)
            and _type_selected(query.get("fieldSelector", ""), obj)
        ]

    def _injected(self, method: str, path: str) -> _Injection | None:
        with self._changed:
            for injection in self._injections:
                if injection.method == method and injection.path == path and injection.times > 0:
                    injection.times -= 1
                    return injection
        return None

    def handle(
        self, method: str, path: str, query: dict[str, str], content_type: str, body: Any
    ) -> tuple[int, JSON]:
        """One request (not a watch) -> (HTTP status, JSON body)."""
        resource, namespace, name = _route(path)
        with self._changed:
            if method == "GET" and name:
                return 200, copy.deepcopy(self._existing(resource, namespace, name))
            if method == "GET":
                return 200, {
                    "kind": f"{resource.kind}List",
                    "apiVersion": resource.api_version,
                    "metadata": {"resourceVersion": str(self._rv)},
                    "items": copy.deepcopy(self._selected(resource, namespace, query)),
                }
            if not isinstance(body, dict | list):
                raise APIError(400, "BadRequest", "the body of the request is not JSON")
            if method == "POST" and not name:
                obj = copy.deepcopy(body)
                if (resource, namespace, obj["metadata"]["name"]) in self._objects:
                    raise APIError(
                        409,
                        "AlreadyExists",
                        f'{resource.plural} "{obj["metadata"]["name"]}" already exists',
                    )
                obj["metadata"].pop("resourceVersion", None)
                return 201, self._store(resource, namespace, obj)
            if method == "PUT" and name:
                return 200, self._update(resource, namespace, name, copy.deepcopy(body))
            if method == "PATCH" and name:
                if content_type.split(";")[0].strip() != "application/json-patch+json":
                    raise APIError(
                        415, "UnsupportedMediaType", f"the fake takes JSON patches only: {path}"
                    )
                old = self._existing(resource, namespace, name)
                patched = json_patch(old, body if isinstance(body, list) else [])
                return 200, self._update(resource, namespace, name, patched)
        raise APIError(405, "MethodNotAllowed", f"{method} is not supported on {path}")

    def _update(self, resource: Resource, namespace: str, name: str, obj: JSON) -> JSON:
        old = self._existing(resource, namespace, name)
        wanted = obj.setdefault("metadata", {}).get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise APIError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.plural} "{name}": the object has '
                "been modified; please apply your changes to the latest version and try again",
            )
        obj["metadata"]["name"] = name
        return self._store(resource, namespace, obj)

    def watch_events(
        self, resource: Resource, namespace: str, query: dict[str, str]
    ) -> Iterator[JSON]:
        """The writes after ``resourceVersion`` (or now), until ``timeoutSeconds`` or stop."""
        deadline = threading.Event()
        timer = threading.Timer(float(query.get("timeoutSeconds") or 60), deadline.set)
        timer.daemon = True
        timer.start()
        try:
            with self._changed:
                last = int(query.get("resourceVersion") or 0) or self._rv
            while True:
                with self._changed:
                    while not self._stopping and not deadline.is_set():
                        pending = [e for e in self._history if e.rv > last]
                        if pending:
                            break
                        self._changed.wait(timeout=0.05)
                    if self._stopping or deadline.is_set():
                        return
                    events = []
                    for event in pending:
                        last = event.rv
                        if (
                            event.resource == resource
                            and (not namespace or event.namespace == namespace)
                            and _type_selected(query.get("fieldSelector", ""), event.obj)
                        ):
                            events.append({"type": event.type, "object": copy.deepcopy(event.obj)})
                yield from events
        finally:
            timer.cancel()


def _route(path: str) -> tuple[Resource, str, str]:
    """URL path -> (resource, namespace, name); raises 404 for anything not served."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis" and parts[2] == "v1":
        group, rest = parts[1], parts[3:]
    else:
        group, rest = "", []
    namespace, plural, name = "", "", ""
    if len(rest) in (3, 4) and rest[0] == "namespaces":
        namespace, plural, name = rest[1], rest[2], rest[3] if len(rest) == 4 else ""
    elif len(rest) in (1, 2):
        plural, name = rest[0], rest[1] if len(rest) == 2 else ""
    resource = RESOURCES.get((group, "v1", plural))
    if resource is None or (namespace and not resource.namespaced):
        raise APIError(404, "NotFound", "the server could not find the requested resource")
    return resource, namespace, name


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKubeAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read fake.requests instead

    def handle(self) -> None:
        with suppress(ConnectionError):  # a client that drops a kept-alive connection
            super().handle()

    def _send(self, code: int, body: JSON) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type") or ""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.fake.requests.append(RecordedRequest(method, url.path, query, content_type, body))
        injection = self.fake._injected(method, url.path)
        if injection is not None and injection.callback is not None:
            injection.callback()
        try:
            if injection is not None and injection.error is not None:
                raise injection.error
            if method == "GET" and query.get("watch") in ("true", "1"):
                resource, namespace, _ = _route(url.path)
                self._watch(resource, namespace, query)
                return
            code, answer = self.fake.handle(method, url.path, query, content_type, body)
        except APIError as exc:
            code, answer = exc.code, exc.status()
        except Exception as exc:  # a request the fake cannot take: say so, do not hang up
            code, answer = 500, APIError(500, "InternalError", f"fake: {exc!r}").status()
        self._send(code, answer)

    def _watch(self, resource: Resource, namespace: str, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        # The connection ends with the stream: say so, or the client pools it and its next
        # request meets a closed socket (urllib3 then retries it as RemoteDisconnected).
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for event in self.fake.watch_events(resource, namespace, query):
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


@contextmanager
def running_fake_kube_api() -> Iterator[FakeKubeAPI]:
    """A started fake API server, always stopped on exit."""
    fake = FakeKubeAPI().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def kube_api() -> Iterator[FakeKubeAPI]:
    """A fresh fake API server per test (import this fixture into a ``conftest.py``)."""
    with running_fake_kube_api() as fake:
        yield fake
