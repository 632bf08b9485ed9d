"""Google's side of the Artifact Registry target, faked at the wire level on loopback.

There is no Artifact Registry emulator, so the tests talk to these with the real libraries:

- :class:`FakeArtifactRegistry`: a gRPC server (a generic handler, grpcio) speaking the
  ``google.devtools.artifactregistry.v1.ArtifactRegistry`` methods swapper uses
  (``GetRepository``, ``CreateRepository``) and ``google.longrunning.Operations/GetOperation``
  with the real protobuf messages, so ``google-cloud-artifact-registry``'s client is the one
  under test. It listens with gRPC *local* credentials (loopback only, no TLS) and, like
  Google, refuses calls without a bearer token it issued (UNAUTHENTICATED). Errors can be
  injected per method (``fail``), creation can leave the operation pending until it is polled.
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
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import grpc
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud import artifactregistry_v1
from google.longrunning import operations_pb2
from google.protobuf import any_pb2

SERVICE = "google.devtools.artifactregistry.v1.ArtifactRegistry"
OPERATIONS = "google.longrunning.Operations"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth addresses every assertion to Google's token endpoint, whatever token_uri says.
AUDIENCE = "https://oauth2.googleapis.com/token"
Repository = artifactregistry_v1.Repository


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
    ``valid_token`` decides which bearer tokens are accepted.
    """

    def __init__(self, valid_token: Callable[[str], bool]) -> None:
        self.valid_token = valid_token
        self.repositories: dict[str, Repository] = {}
        self.fail: dict[str, list[grpc.StatusCode]] = {}
        self.pending_creations = 0
        self.calls: list[Call] = []
        self._operations: dict[str, tuple[bool, Repository]] = {}
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
