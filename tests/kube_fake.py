"""An in-process fake of the Kubernetes API server, at the wire level, for the real client.

There is no API server in the test environment, so tests point the official ``kubernetes``
client at this one (``Configuration(host="http://127.0.0.1:PORT")``, or a kubeconfig written by
:meth:`FakeKubeAPI.write_kubeconfig` for a ``swapper`` subprocess). It speaks the same HTTP/JSON
the client sends and expects, so what is tested is swapper's real use of the client: URLs, verbs,
patch content types, Status errors turned into ``ApiException``.

What it serves (a table, :data:`RESOURCES`, adding a resource is one line):

- core/v1 ``secrets``, ``serviceaccounts``, ``events``, ``configmaps``, ``pods`` (namespaced),
  ``namespaces`` (cluster); events.k8s.io/v1 ``events``; admissionregistration.k8s.io/v1
  ``mutatingwebhookconfigurations`` (cluster).
- GET one, LIST (namespaced or across namespaces, ``labelSelector`` with ``=``, ``==``, ``!=``,
  ``in``, ``notin``, ``key``, ``!key``; ``fieldSelector`` on ``metadata.name`` and
  ``metadata.namespace``), CREATE (``generateName`` too), REPLACE (PUT), PATCH (JSON patch,
  JSON merge patch, strategic merge patch with the merge keys of the lists swapper touches),
  DELETE; ``dryRun=All`` persists nothing.
- A global ``resourceVersion`` that increments on every write; a PUT or patch that carries a
  stale ``metadata.resourceVersion`` gets 409 Conflict, a create of an existing name 409
  AlreadyExists, a missing object 404 NotFound, all as ``Status`` objects.
- Secrets behave like the real ones where swapper depends on it: ``type`` is immutable,
  ``kubernetes.io/tls`` needs ``tls.crt`` and ``tls.key``, ``data`` must be base64,
  ``stringData`` is merged into ``data``, ``immutable: true`` freezes ``data``.
- ``?watch=true``: a chunked stream of ``{"type": ADDED|MODIFIED|DELETED, "object": …}`` lines,
  from the current state (no ``resourceVersion``) or from a given ``resourceVersion`` (410
  Expired when it is older than the kept history), ending after ``timeoutSeconds``.

For tests: :meth:`put`/:meth:`get` reach the store directly, :attr:`requests` records every
request (method, path, query, content type, body), and :meth:`fail` / :meth:`before` inject an
error or run a callback (a concurrent writer) before a matching request is handled.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
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
        Resource("", "v1", "events", "Event", True),
        Resource("", "v1", "configmaps", "ConfigMap", True),
        Resource("", "v1", "pods", "Pod", True),
        Resource("", "v1", "namespaces", "Namespace", False),
        Resource("events.k8s.io", "v1", "events", "Event", True),
        Resource(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            False,
        ),
    )
}

# Lists that a strategic merge patch merges by a key instead of replacing (the patchMergeKey of
# the Kubernetes Go types, for the fields swapper and its tests touch).
MERGE_KEYS = {
    "webhooks": "name",
    "imagePullSecrets": "name",
    "secrets": "name",
    "ownerReferences": "uid",
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}

HISTORY_LIMIT = 1000


class APIError(Exception):
    """A failure answered as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> JSON:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def not_found(resource: Resource, name: str) -> APIError:
    return APIError(
        404,
        "NotFound",
        f'{resource.plural} "{name}" not found',
        {"name": name, "group": resource.group, "kind": resource.plural},
    )


def conflict(resource: Resource, name: str) -> APIError:
    return APIError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource.plural} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {"name": name, "group": resource.group, "kind": resource.plural},
    )


def invalid(resource: Resource, name: str, cause: str) -> APIError:
    return APIError(
        422,
        "Invalid",
        f'{resource.kind} "{name}" is invalid: {cause}',
        {"name": name, "group": resource.group, "kind": resource.kind},
    )


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


# ---------------------------------------------------------------------------------------------
# Selectors and patches


_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9_.-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes label selector syntax (equality- and set-based)."""
    for requirement in _split_selector(selector):
        match = _REQUIREMENT.match(requirement)
        if match is None:
            raise APIError(400, "BadRequest", f"unable to parse requirement: {requirement!r}")
        key = match.group("key")
        if match.group("op"):
            equal = labels.get(key) == match.group("value")
            if (match.group("op") == "!=") == equal:
                return False
        elif match.group("setop"):
            values = {v.strip() for v in match.group("values").split(",") if v.strip()}
            inside = key in labels and labels[key] in values
            if match.group("setop") == "in" and not inside:
                return False
            if match.group("setop") == "notin" and inside:
                return False
        elif bool(match.group("neg")) == (key in labels):
            return False
    return True


def field_selector_matches(selector: str, obj: JSON) -> bool:
    meta = obj.get("metadata", {})
    fields = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace")}
    if "type" in obj:  # secrets: the API server selects on their type
        fields["type"] = obj["type"]
    for requirement in selector.split(","):
        if not requirement.strip():
            continue
        negate = "!=" in requirement
        key, _, value = requirement.replace("!=", "=").replace("==", "=").partition("=")
        key = key.strip()
        if key not in fields:
            raise APIError(400, "BadRequest", f'field label not supported: "{key}"')
        if (fields[key] == value.strip()) == negate:
            return False
    return True


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, key: str = "") -> Any:
    """Kubernetes strategic merge: maps merge, null deletes, keyed lists merge by their key."""
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: v for k, v in patch.items() if k != "$patch"}
        result = copy.deepcopy(target) if isinstance(target, dict) else {}
        for name, value in patch.items():
            if name.startswith("$"):
                continue
            if value is None:
                result.pop(name, None)
            else:
                result[name] = strategic_merge_patch(result.get(name), value, name)
        return result
    if isinstance(patch, list) and key in MERGE_KEYS and all(isinstance(i, dict) for i in patch):
        merge_key = MERGE_KEYS[key]
        result_list = copy.deepcopy(target) if isinstance(target, list) else []
        for item in patch:
            position = next(
                (
                    i
                    for i, old in enumerate(result_list)
                    if isinstance(old, dict) and old.get(merge_key) == item.get(merge_key)
                ),
                None,
            )
            if item.get("$patch") == "delete":
                if position is not None:
                    result_list.pop(position)
            elif position is None:
                result_list.append({k: v for k, v in item.items() if not k.startswith("$")})
            else:
                result_list[position] = strategic_merge_patch(result_list[position], item, key)
        return result_list
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise APIError(422, "Invalid", f"JSON pointer {path!r} does not start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            doc = doc[part]
        else:
            raise KeyError(part)
    return doc


def json_patch(doc: Any, operations: list[JSON]) -> Any:
    """RFC 6902: add, remove, replace, test, copy, move."""
    doc = copy.deepcopy(doc)
    for op in operations:
        kind, parts = op.get("op"), _pointer(str(op.get("path", "")))
        try:
            if kind == "test":
                if _walk(doc, parts) != op.get("value"):
                    raise APIError(
                        422, "Invalid", f"the server rejected our request: test of {op} failed"
                    )
                continue
            value: Any
            if kind in ("copy", "move"):
                source = _pointer(str(op.get("from", "")))
                value = copy.deepcopy(_walk(doc, source))
                if kind == "move":
                    parent = _walk(doc, source[:-1])
                    del parent[int(source[-1]) if isinstance(parent, list) else source[-1]]
                kind = "add"
            else:
                value = op.get("value")
            if not parts:
                if kind in ("add", "replace"):
                    doc = copy.deepcopy(value)
                    continue
                raise APIError(422, "Invalid", f"cannot {kind} the whole document")
            parent, last = _walk(doc, parts[:-1]), parts[-1]
            if isinstance(parent, list):
                if kind == "add":
                    parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(value))
                elif kind == "remove":
                    parent.pop(int(last))
                elif kind == "replace":
                    parent[int(last)] = copy.deepcopy(value)
                else:
                    raise APIError(422, "Invalid", f"unknown JSON patch op {kind!r}")
            elif isinstance(parent, dict):
                if kind == "add":
                    parent[last] = copy.deepcopy(value)
                elif kind in ("remove", "replace"):
                    if last not in parent:
                        raise KeyError(last)
                    if kind == "remove":
                        del parent[last]
                    else:
                        parent[last] = copy.deepcopy(value)
                else:
                    raise APIError(422, "Invalid", f"unknown JSON patch op {kind!r}")
            else:
                raise KeyError(last)
        except (KeyError, IndexError, ValueError, TypeError):
            raise APIError(
                422, "Invalid", f"the server rejected our request: {op} cannot be applied"
            ) from None
    return doc


# ---------------------------------------------------------------------------------------------
# Per-kind rules


def _check_base64(resource: Resource, name: str, where: str, value: Any) -> None:
    try:
        base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise APIError(
            400,
            "BadRequest",
            f"{resource.kind} in version {resource.version!r} cannot be handled as a "
            f"{resource.kind}: illegal base64 data at {where}",
        ) from None


def _normalise(resource: Resource, obj: JSON, old: JSON | None) -> None:
    """Apply what the real API server does to a written object, or raise its error."""
    name = obj["metadata"]["name"]
    if resource.kind == "Secret":
        obj.setdefault("type", "Opaque")
        data = obj.get("data") or {}
        for key, value in (obj.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        for key, value in data.items():
            _check_base64(resource, name, f"data[{key}]", value)
        if data:
            obj["data"] = data
        if old is not None:
            if old.get("type", "Opaque") != obj["type"]:
                raise invalid(
                    resource, name, f'type: Invalid value: "{obj["type"]}": field is immutable'
                )
            if old.get("immutable") and old.get("data") != obj.get("data"):
                raise invalid(
                    resource, name, "data: Forbidden: field is immutable when `immutable` is set"
                )
        if obj["type"] == "kubernetes.io/tls":
            missing = [k for k in ("tls.crt", "tls.key") if k not in data]
            if missing:
                raise invalid(resource, name, f"data[{missing[0]}]: Required value")
    if resource.kind == "MutatingWebhookConfiguration":
        for i, hook in enumerate(obj.get("webhooks") or []):
            bundle = (hook.get("clientConfig") or {}).get("caBundle")
            if bundle is not None:
                _check_base64(resource, name, f"webhooks[{i}].clientConfig.caBundle", bundle)


# ---------------------------------------------------------------------------------------------
# The server


class FakeKubeAPI:
    """The fake API server; :meth:`start` it (or use :func:`running_fake_kube_api`)."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self._objects: dict[tuple[tuple[str, str, str], str, str], JSON] = {}
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

    def configuration(self) -> Any:
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.host
        return configuration

    def api_client(self) -> Any:
        from kubernetes import client

        return client.ApiClient(self.configuration())

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig that points a client (or a subprocess) at this server."""
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.host}}],
                    "users": [{"name": "fake", "user": {"token": "fake-token"}}],
                    "contexts": [
                        {
                            "name": "fake",
                            "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                        }
                    ],
                    "current-context": "fake",
                }
            ),
            encoding="utf-8",
        )
        return path

    # -- direct store access for tests -------------------------------------------------------

    def resource(self, plural: str, group: str = "", version: str = "v1") -> Resource:
        return RESOURCES[(group, version, plural)]

    def put(self, plural: str, obj: JSON, group: str = "", version: str = "v1") -> JSON:
        """Create or overwrite an object directly (as another writer would); returns it."""
        resource = self.resource(plural, group, version)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace", "") if resource.namespaced else ""
        with self._changed:
            old = self._objects.get(self._key(resource, namespace, meta["name"]))
            _normalise(resource, obj, None)
            return self._store(resource, namespace, obj, old)

    def get(
        self, plural: str, name: str, namespace: str = "", group: str = "", version: str = "v1"
    ) -> JSON | None:
        resource = self.resource(plural, group, version)
        with self._changed:
            found = self._objects.get(self._key(resource, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def writes(self) -> list[RecordedRequest]:
        """Recorded requests that change something."""
        return [r for r in self.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")]

    def fail(
        self, method: str, path: str, code: int, reason: str, message: str = "", times: int = 1
    ) -> None:
        """Answer the next ``times`` requests ``method path`` with this error instead."""
        error = APIError(code, reason, message or f"injected {reason}")
        with self._changed:
            self._injections.append(_Injection(method.upper(), path, times, error=error))

    def before(self, method: str, path: str, callback: Callable[[], None], times: int = 1) -> None:
        """Run ``callback`` before the next ``times`` requests ``method path`` are handled."""
        with self._changed:
            self._injections.append(_Injection(method.upper(), path, times, callback=callback))

    # -- internals ---------------------------------------------------------------------------

    @staticmethod
    def _key(resource: Resource, namespace: str, name: str) -> tuple[Any, str, str]:
        return ((resource.group, resource.version, resource.plural), namespace, name)

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _store(self, resource: Resource, namespace: str, obj: JSON, old: JSON | None) -> JSON:
        """Persist ``obj`` (lock held): fills in server-owned metadata, records the event."""
        meta = obj["metadata"]
        if resource.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        meta["resourceVersion"] = str(self._next_rv())
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        self._objects[self._key(resource, namespace, meta["name"])] = obj
        self._record("ADDED" if old is None else "MODIFIED", resource, namespace, obj)
        return copy.deepcopy(obj)

    def _record(self, kind: str, resource: Resource, namespace: str, obj: JSON) -> None:
        self._history.append(
            _Event(int(obj["metadata"]["resourceVersion"]), kind, resource, namespace, obj)
        )
        del self._history[:-HISTORY_LIMIT]
        self._changed.notify_all()

    def _delete(self, resource: Resource, namespace: str, name: str) -> JSON:
        key = self._key(resource, namespace, name)
        obj = self._objects.pop(key, None)
        if obj is None:
            raise not_found(resource, name)
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._next_rv())
        self._record("DELETED", resource, namespace, obj)
        return obj

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
        """One request (not watch) -> (HTTP status, JSON body)."""
        resource, namespace, name = _route(path)
        dry_run = query.get("dryRun") == "All"
        with self._changed:
            if method == "GET":
                return 200, self._get_or_list(resource, namespace, name, query)
            if method == "POST" and not name:
                return 201, self._create(resource, namespace, body, dry_run)
            if method == "PUT" and name:
                return 200, self._replace(resource, namespace, name, body, dry_run)
            if method == "PATCH" and name:
                return 200, self._patch(resource, namespace, name, content_type, body, dry_run)
            if method == "DELETE" and name:
                old = self._objects.get(self._key(resource, namespace, name))
                if old is None:
                    raise not_found(resource, name)
                uid = old["metadata"]["uid"]
                if not dry_run:
                    self._delete(resource, namespace, name)
                return 200, {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {"name": name, "kind": resource.plural, "uid": uid},
                }
        raise APIError(405, "MethodNotAllowed", f"{method} is not supported on {path}")

    def _get_or_list(
        self, resource: Resource, namespace: str, name: str, query: dict[str, str]
    ) -> JSON:
        if name:
            found = self._objects.get(self._key(resource, namespace, name))
            if found is None:
                raise not_found(resource, name)
            return copy.deepcopy(found)
        items = []
        for obj in self._matching(resource, namespace, query):
            item = copy.deepcopy(obj)
            item.pop("apiVersion", None)  # list items carry no kind/apiVersion on the wire
            item.pop("kind", None)
            items.append(item)
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _matching(self, resource: Resource, namespace: str, query: dict[str, str]) -> list[JSON]:
        found = []
        for (rkey, ns, _), obj in self._objects.items():
            if rkey != (resource.group, resource.version, resource.plural):
                continue
            if namespace and ns != namespace:
                continue
            if self._selected(obj, query):
                found.append(obj)
        return found

    @staticmethod
    def _selected(obj: JSON, query: dict[str, str]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        if query.get("labelSelector") and not label_selector_matches(
            query["labelSelector"], labels
        ):
            return False
        return not (
            query.get("fieldSelector") and not field_selector_matches(query["fieldSelector"], obj)
        )

    def _body_object(self, resource: Resource, body: Any) -> JSON:
        if not isinstance(body, dict):
            raise APIError(400, "BadRequest", "the body of the request is not a JSON object")
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if (kind and kind != resource.kind) or (
            api_version and api_version != resource.api_version
        ):
            raise APIError(
                400,
                "BadRequest",
                f"the API version in the data ({api_version}) or kind ({kind}) does not match "
                f"the expected {resource.api_version}, {resource.kind}",
            )
        obj = copy.deepcopy(body)
        obj.setdefault("metadata", {})
        return obj

    def _create(self, resource: Resource, namespace: str, body: Any, dry_run: bool) -> JSON:
        obj = self._body_object(resource, body)
        meta = obj["metadata"]
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(resource, "", "metadata.name: Required value: name is required")
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if resource.namespaced and meta.get("namespace") not in (None, "", namespace):
            raise APIError(400, "BadRequest", "the namespace of the provided object does not match")
        meta.pop("resourceVersion", None)
        if self._key(resource, namespace, meta["name"]) in self._objects:
            raise APIError(
                409,
                "AlreadyExists",
                f'{resource.plural} "{meta["name"]}" already exists',
                {"name": meta["name"], "group": resource.group, "kind": resource.plural},
            )
        _normalise(resource, obj, None)
        if dry_run:
            return obj
        return self._store(resource, namespace, obj, None)

    def _replace(
        self, resource: Resource, namespace: str, name: str, body: Any, dry_run: bool
    ) -> JSON:
        obj = self._body_object(resource, body)
        if obj["metadata"].get("name", name) != name:
            raise APIError(
                400, "BadRequest", "the name of the object does not match the name on the URL"
            )
        obj["metadata"]["name"] = name
        return self._update(resource, namespace, name, obj, dry_run)

    def _update(
        self, resource: Resource, namespace: str, name: str, obj: JSON, dry_run: bool
    ) -> JSON:
        old = self._objects.get(self._key(resource, namespace, name))
        if old is None:
            raise not_found(resource, name)
        wanted_rv = obj["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise conflict(resource, name)
        _normalise(resource, obj, old)
        if dry_run:
            return obj
        comparable = copy.deepcopy(obj)
        comparable["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        for key in ("uid", "creationTimestamp", "namespace"):
            comparable["metadata"][key] = old["metadata"].get(key)
        comparable["apiVersion"], comparable["kind"] = old["apiVersion"], old["kind"]
        if comparable == old:  # a no-op write keeps the resourceVersion, like the real server
            return copy.deepcopy(old)
        return self._store(resource, namespace, obj, old)

    def _patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        content_type: str,
        body: Any,
        dry_run: bool,
    ) -> JSON:
        old = self._objects.get(self._key(resource, namespace, name))
        if old is None:
            raise not_found(resource, name)
        media = content_type.split(";")[0].strip()
        if media == "application/json-patch+json":
            if not isinstance(body, list):
                raise APIError(400, "BadRequest", "a JSON patch must be a list of operations")
            patched = json_patch(old, body)
        elif media == "application/merge-patch+json":
            patched = json_merge_patch(old, body)
        elif media == "application/strategic-merge-patch+json":
            patched = strategic_merge_patch(old, body)
        else:
            raise APIError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format: {media}",
            )
        if not isinstance(patched, dict) or patched.get("metadata", {}).get("name") != name:
            raise APIError(400, "BadRequest", "a patch cannot change the object's name")
        return self._update(resource, namespace, name, patched, dry_run)

    def watch_events(
        self, resource: Resource, namespace: str, query: dict[str, str]
    ) -> Iterator[JSON]:
        """The events of one watch request, ending at ``timeoutSeconds`` or server stop."""
        timeout = float(query.get("timeoutSeconds") or 60)
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.daemon = True
        timer.start()
        try:
            with self._changed:
                start = query.get("resourceVersion") or ""
                if start in ("", "0"):
                    initial = [copy.deepcopy(o) for o in self._matching(resource, namespace, query)]
                    last = self._rv
                else:
                    last = int(start)
                    oldest = self._history[0].rv if self._history else self._rv + 1
                    if len(self._history) >= HISTORY_LIMIT and last < oldest - 1:
                        yield {
                            "type": "ERROR",
                            "object": APIError(
                                410, "Expired", f"too old resource version: {last} ({oldest})"
                            ).status(),
                        }
                        return
                    initial = []
            for obj in initial:
                yield {"type": "ADDED", "object": obj}
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
                        if event.resource != resource or (
                            namespace and event.namespace != namespace
                        ):
                            continue
                        if self._selected(event.obj, query):
                            events.append({"type": event.type, "object": copy.deepcopy(event.obj)})
                for event in events:
                    yield event
        finally:
            timer.cancel()


def _route(path: str) -> tuple[Resource, str, str]:
    """URL path -> (resource, namespace, name); raises 404 for anything not served."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        rest, group, version = [], "", ""
    namespace, name, plural = "", "", ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, plural, name = rest[1], rest[2], rest[3] if len(rest) == 4 else ""
        if len(rest) > 4:
            plural = ""
    elif 1 <= len(rest) <= 2:
        plural, name = rest[0], rest[1] if len(rest) == 2 else ""
    resource = RESOURCES.get((group, version, plural))
    if resource is None or (namespace and not resource.namespaced):
        raise APIError(404, "NotFound", "the server could not find the requested resource")
    return resource, namespace, name


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKubeAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read fake.requests instead

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
            self._send(400, APIError(400, "BadRequest", "the body is not JSON").status())
            return
        self.fake.requests.append(RecordedRequest(method, url.path, query, content_type, body))
        injection = self.fake._injected(method, url.path)
        if injection is not None and injection.callback is not None:
            injection.callback()
        try:
            if injection is not None and injection.error is not None:
                raise injection.error
            if method == "GET" and query.get("watch") in ("true", "1", "True"):
                resource, namespace, _ = _route(url.path)
                self._watch(resource, namespace, query)
                return
            code, answer = self.fake.handle(method, url.path, query, content_type, body)
        except APIError as exc:
            code, answer = exc.code, exc.status()
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
