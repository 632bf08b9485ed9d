"""Google's side of the Artifact Registry target, faked at the wire level on loopback.

There is no Artifact Registry emulator, so the tests talk to these with the real libraries:

- :class:`FakeArtifactRegistry`: a gRPC server (a generic handler, grpcio) speaking the
  ``google.devtools.artifactregistry.v1.ArtifactRegistry`` methods swapper uses
  (``GetRepository``, ``CreateRepository``; for the admin protocol ``ListPackages``,
  ``ListTags``, ``ListVersions``, ``DeleteTag`` and ``DeleteVersion``, over images seeded with
  :meth:`FakeArtifactRegistry.add_image`, paged by ``page_size``/``page_token``) and
  ``google.longrunning.Operations/GetOperation`` with the real protobuf messages, so
  ``google-cloud-artifact-registry``'s client is the one under test. It listens with gRPC
  *local* credentials (loopback only, no TLS) and, like Google, refuses calls without a
  bearer token it issued (UNAUTHENTICATED). Errors can be injected per method (``fail``),
  creation can leave the operation pending until it is polled.
- :class:`TokenEndpoint`: an OAuth2 token endpoint (the JWT-bearer grant a service account
  uses) in a thread. It checks the assertion's signature with the service account's public
  key, issues ``ya29.swapper-test-<n>`` tokens with a chosen lifetime, counts fetches, and can
  hold its answers (``hold``) so concurrent refreshes can be observed without sleeping.
- :func:`service_account_file`: a service-account JSON key (RSA key made with
  ``cryptography``) whose ``token_uri`` is the endpoint above, for
  ``GOOGLE_APPLICATION_CREDENTIALS``.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote

import grpc
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud import artifactregistry_v1
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2

SERVICE = "google.devtools.artifactregistry.v1.ArtifactRegistry"
OPERATIONS = "google.longrunning.Operations"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth addresses every assertion to Google's token endpoint, whatever token_uri says.
AUDIENCE = "https://oauth2.googleapis.com/token"
Repository = artifactregistry_v1.Repository
Package = artifactregistry_v1.Package
Version = artifactregistry_v1.Version
Tag = artifactregistry_v1.Tag
DEFAULT_PAGE_SIZE = 50  # what the fake answers a request without page_size with
_T = TypeVar("_T")


def token_for(n: int) -> str:
    """The ``n``-th access token a :class:`TokenEndpoint` issues (1-based)."""
    return f"ya29.swapper-test-{n}"


# -- OAuth2 token endpoint ----------------------------------------------------------------


@cache
def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_info(
    token_uri: str, email: str = "swapper@proj.iam.gserviceaccount.com"
) -> dict[str, str]:
    pem = _key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "type": "service_account",
        "project_id": "proj",
        "private_key_id": "test-key-1",
        "private_key": pem.decode(),
        "client_email": email,
        "client_id": "1",
        "token_uri": token_uri,
    }


def service_account_file(path: Path, token_uri: str) -> Path:
    path.write_text(json.dumps(service_account_info(token_uri)))
    return path


@dataclass
class TokenEndpoint:
    """``POST /token`` for the JWT-bearer grant. ``ttl``: ``expires_in`` of issued tokens."""

    ttl: int = 3600
    issued: list[str] = field(default_factory=list)
    assertions: list[dict[str, Any]] = field(default_factory=list)
    error: tuple[int, str] | None = None  # answer (status, OAuth error) instead of a token
    hold: threading.Event | None = None  # when set: answers wait until it is set
    waiting: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    @property
    def fetches(self) -> int:
        return len(self.issued)

    def start(self) -> TokenEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                endpoint._answer(self)

            def log_message(self, *_: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        form = parse_qs(handler.rfile.read(length).decode())
        if self.hold is not None:
            self.waiting.release()
            self.hold.wait(timeout=30)
        status, body = self._grant(form)
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _grant(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if self.error is not None:
            status, error = self.error
            return status, {"error": error, "error_description": "refused by the test"}
        if form.get("grant_type") != [JWT_BEARER] or "assertion" not in form:
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(
                form["assertion"][0],
                _key().public_key(),
                algorithms=["RS256"],
                audience=AUDIENCE,
            )
        except jwt.InvalidTokenError as exc:
            return 400, {"error": "invalid_grant", "error_description": str(exc)}
        with self._lock:
            self.assertions.append(claims)
            token = token_for(len(self.issued) + 1)
            self.issued.append(token)
        return 200, {"access_token": token, "expires_in": self.ttl, "token_type": "Bearer"}


# -- Artifact Registry API ----------------------------------------------------------------


@dataclass
class Call:
    method: str
    name: str  # the resource the call named
    token: str | None  # the bearer token it carried


class FakeArtifactRegistry:
    """The Artifact Registry API methods swapper calls, over gRPC on ``127.0.0.1``.

    ``repositories`` maps full names (``projects/p/locations/l/repositories/r``) to their
    :class:`Repository`. ``fail[method]`` is a list of status codes the next calls of that
    method answer with, in order (then it behaves again). ``pending_creations``: how many
    creations answer a not-yet-done operation, completed by the first ``GetOperation``.
    ``valid_token`` decides which bearer tokens are accepted. ``packages``, ``versions`` and
    ``tags`` map full resource names to the messages listed (seed with :meth:`add_image`).
    """

    def __init__(self, valid_token: Callable[[str], bool]) -> None:
        self.valid_token = valid_token
        self.repositories: dict[str, Repository] = {}
        self.fail: dict[str, list[grpc.StatusCode]] = {}
        self.pending_creations = 0
        self.calls: list[Call] = []
        self._operations: dict[str, tuple[bool, Repository]] = {}
        self.packages: dict[str, Package] = {}
        self.versions: dict[str, Version] = {}
        self.tags: dict[str, Tag] = {}
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        """What ``target.gcp.endpoint`` is set to."""
        return f"http://127.0.0.1:{self.port}"

    def add_repository(self, name: str, **fields: Any) -> Repository:
        repository = Repository(name=name, **({"format_": Repository.Format.DOCKER} | fields))
        self.repositories[name] = repository
        return repository

    def add_image(
        self,
        repository: str,
        package: str,
        digest: str,
        tags: list[str] | tuple[str, ...] = (),
        created: datetime | None = None,
    ) -> str:
        """Seed a version ``digest`` of the Docker image ``package`` (``docker.io/library/x``,
        its slashes written ``%2F`` as Google does) in ``repository`` (a full name), with
        ``tags`` pointing to it. Returns the version's name."""
        package_name = f"{repository}/packages/{quote(package, safe='')}"
        version_name = f"{package_name}/versions/{digest}"
        when = created or datetime.now(UTC)
        with self._lock:
            self.packages.setdefault(
                package_name, Package(name=package_name, create_time=when, update_time=when)
            )
            self.versions[version_name] = Version(
                name=version_name, create_time=when, update_time=when
            )
            for tag in tags:
                tag_name = f"{package_name}/tags/{tag}"
                self.tags[tag_name] = Tag(name=tag_name, version=version_name)
        return version_name

    def count(self, method: str) -> int:
        return sum(1 for call in self.calls if call.method == method)

    def start(self) -> FakeArtifactRegistry:
        def unary(
            handler: Callable[[Any, grpc.ServicerContext], Any],
            request: type[Any],
            response: Callable[[Any], bytes],
        ) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                handler, request_deserializer=request, response_serializer=response
            )

        handlers = [
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "GetRepository": unary(
                        self._get_repository,
                        artifactregistry_v1.GetRepositoryRequest.deserialize,
                        Repository.serialize,
                    ),
                    "CreateRepository": unary(
                        self._create_repository,
                        artifactregistry_v1.CreateRepositoryRequest.deserialize,
                        operations_pb2.Operation.SerializeToString,
                    ),
                    "ListPackages": unary(
                        self._list_packages,
                        artifactregistry_v1.ListPackagesRequest.deserialize,
                        artifactregistry_v1.ListPackagesResponse.serialize,
                    ),
                    "ListTags": unary(
                        self._list_tags,
                        artifactregistry_v1.ListTagsRequest.deserialize,
                        artifactregistry_v1.ListTagsResponse.serialize,
                    ),
                    "ListVersions": unary(
                        self._list_versions,
                        artifactregistry_v1.ListVersionsRequest.deserialize,
                        artifactregistry_v1.ListVersionsResponse.serialize,
                    ),
                    "DeleteTag": unary(
                        self._delete_tag,
                        artifactregistry_v1.DeleteTagRequest.deserialize,
                        empty_pb2.Empty.SerializeToString,
                    ),
                    "DeleteVersion": unary(
                        self._delete_version,
                        artifactregistry_v1.DeleteVersionRequest.deserialize,
                        operations_pb2.Operation.SerializeToString,
                    ),
                },
            ),
            grpc.method_handlers_generic_handler(
                OPERATIONS,
                {
                    "GetOperation": unary(
                        self._get_operation,
                        operations_pb2.GetOperationRequest.FromString,
                        operations_pb2.Operation.SerializeToString,
                    )
                },
            ),
        ]
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=handlers)
        credentials = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(timeout=5)

    # -- handlers ------------------------------------------------------------------------

    def _enter(self, method: str, name: str, context: grpc.ServicerContext) -> None:
        """Record the call; abort it when its token is not valid or a failure is queued."""
        metadata = dict(context.invocation_metadata())
        header = str(metadata.get("authorization", ""))
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        with self._lock:
            self.calls.append(Call(method, name, token))
            queued = self.fail.get(method)
            failure = queued.pop(0) if queued else None
        if token is None or not self.valid_token(token):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "Request had invalid credentials.")
        if failure is not None:
            context.abort(failure, f"{method} {name}: {failure.name} (injected by the test)")

    def _get_repository(
        self, request: artifactregistry_v1.GetRepositoryRequest, context: grpc.ServicerContext
    ) -> Repository:
        self._enter("GetRepository", request.name, context)
        with self._lock:
            repository = self.repositories.get(request.name)
        if repository is None:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"Requested entity was not found: {request.name}"
            )
        return repository

    def _create_repository(
        self, request: artifactregistry_v1.CreateRepositoryRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        name = f"{request.parent}/repositories/{request.repository_id}"
        self._enter("CreateRepository", name, context)
        repository = Repository(request.repository)
        repository.name = name
        with self._lock:
            if name in self.repositories:
                context.abort(
                    grpc.StatusCode.ALREADY_EXISTS, f"the repository already exists: {name}"
                )
            self.repositories[name] = repository
            done = self.pending_creations <= 0
            self.pending_creations -= 1
            operation = f"{request.parent}/operations/{uuid.uuid4()}"
            self._operations[operation] = (done, repository)
        return self._operation(operation)

    def _get_operation(
        self, request: operations_pb2.GetOperationRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        self._enter("GetOperation", request.name, context)
        with self._lock:
            if request.name not in self._operations:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no operation {request.name}")
            _, repository = self._operations[request.name]
            self._operations[request.name] = (True, repository)  # done once it is polled
        return self._operation(request.name)

    def _operation(self, name: str) -> operations_pb2.Operation:
        done, repository = self._operations[name]
        operation = operations_pb2.Operation(name=name, done=done)
        if done:
            packed = any_pb2.Any()
            packed.Pack(Repository.pb(repository))
            operation.response.CopyFrom(packed)
        return operation

    # -- packages, versions and tags -----------------------------------------------------

    @staticmethod
    def _page(
        items: dict[str, _T],
        prefix: str,
        request: Any,
        context: grpc.ServicerContext,
    ) -> tuple[list[_T], str]:
        """The page of ``items`` (by name, under ``prefix``) a request's ``page_size`` and
        ``page_token`` ask for, and the next page's token ("" after the last)."""
        try:
            start = int(request.page_token or 0)
        except ValueError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid page token")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, 1000)
        names = sorted(name for name in items if name.startswith(prefix))
        chosen = names[start : start + size]
        following = str(start + size) if start + size < len(names) else ""
        return [items[name] for name in chosen], following

    def _require_package(self, name: str, context: grpc.ServicerContext) -> None:
        if name not in self.packages:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Requested entity was not found: {name}")

    def _list_packages(
        self, request: artifactregistry_v1.ListPackagesRequest, context: grpc.ServicerContext
    ) -> artifactregistry_v1.ListPackagesResponse:
        self._enter("ListPackages", request.parent, context)
        with self._lock:
            if request.parent not in self.repositories:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no repository {request.parent}")
            found, following = self._page(
                self.packages, f"{request.parent}/packages/", request, context
            )
        return artifactregistry_v1.ListPackagesResponse(packages=found, next_page_token=following)

    def _list_tags(
        self, request: artifactregistry_v1.ListTagsRequest, context: grpc.ServicerContext
    ) -> artifactregistry_v1.ListTagsResponse:
        self._enter("ListTags", request.parent, context)
        with self._lock:
            self._require_package(request.parent, context)
            found, following = self._page(self.tags, f"{request.parent}/tags/", request, context)
        return artifactregistry_v1.ListTagsResponse(tags=found, next_page_token=following)

    def _list_versions(
        self, request: artifactregistry_v1.ListVersionsRequest, context: grpc.ServicerContext
    ) -> artifactregistry_v1.ListVersionsResponse:
        self._enter("ListVersions", request.parent, context)
        full = request.view == artifactregistry_v1.VersionView.FULL
        with self._lock:
            self._require_package(request.parent, context)
            found, following = self._page(
                self.versions, f"{request.parent}/versions/", request, context
            )
            answer = []
            for version in found:
                copy = Version(version)
                if full:
                    copy.related_tags = [t for t in self.tags.values() if t.version == copy.name]
                answer.append(copy)
        return artifactregistry_v1.ListVersionsResponse(versions=answer, next_page_token=following)

    def _delete_tag(
        self, request: artifactregistry_v1.DeleteTagRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        self._enter("DeleteTag", request.name, context)
        with self._lock:
            if self.tags.pop(request.name, None) is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no tag {request.name}")
        return empty_pb2.Empty()

    def _delete_version(
        self, request: artifactregistry_v1.DeleteVersionRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        """Deletes at once and answers a finished operation (Google's finishes later)."""
        self._enter("DeleteVersion", request.name, context)
        with self._lock:
            if request.name not in self.versions:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no version {request.name}")
            tagged = [name for name, tag in self.tags.items() if tag.version == request.name]
            if tagged and not request.force:
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"version {request.name} is tagged; delete its tags or set force",
                )
            del self.versions[request.name]
            for name in tagged:
                del self.tags[name]
        operation = operations_pb2.Operation(
            name=f"{request.name}/operations/{uuid.uuid4()}", done=True
        )
        operation.response.Pack(empty_pb2.Empty())
        return operation
