"""Real registries on loopback for the copy tests and ``benchmarks/copy.py``.

- :func:`start_registry`: a Debian ``docker-registry`` (distribution 2.8) process, plain HTTP or
  TLS (a CA made by :mod:`swapper.certs`), anonymous, htpasswd basic auth (bcrypt) or bearer
  tokens from a :class:`TokenServer`.
- :class:`TokenServer`: a token endpoint in a thread. distribution 2.8 trusts a token's signing
  key when the JWT header carries it as an ``x5c`` chain that verifies against
  ``auth.token.rootcertbundle`` (a ``kid`` would have to be a libtrust fingerprint, and ``jwks``
  only arrived in 3.0), and checks ``iss``, ``aud`` (the service), ``exp``/``nbf`` and that the
  ``access`` claim lists every action the request needs.
- Image builders: real tar+gzip layers, OCI and Docker manifests, indexes and manifest lists,
  written as files (a 100 MiB layer is generated streaming, never held in memory), and a small
  pusher that is not the engine under test.
- :class:`FaultProxy`: an HTTP/1.1 proxy (asyncio and h11) that resets, stalls, slows down,
  corrupts or answers 429/500/503 for chosen requests, and logs every request.
- :func:`skopeo_raw` and :func:`assert_same_image`: checks of a copy against its source.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import random
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tarfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

import bcrypt
import h11
import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from webhook_process import free_port

from swapper import certs
from swapper.oci import HostConfig, RetryPolicy

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO_BIN = shutil.which("skopeo") or "/usr/bin/skopeo"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
MiB = 1024 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- token server -------------------------------------------------------------------------


@dataclass
class TokenRequest:
    user: str | None
    scopes: list[str]
    granted: list[str]


class TokenServer:
    """Issues registry tokens. Users in ``users`` get every action they ask for; anonymous
    callers get ``pull`` on repositories under ``public`` prefixes (all when ``"*"``), nothing
    else. A wrong password gets 401. ``requests`` records every token asked for."""

    issuer = "swapper-test-issuer"
    service = "swapper-test-registry"

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str] | None = None,
        public: tuple[str, ...] = (),
        ttl: int = 300,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.users = dict(users or {})
        self.public = public
        self.ttl = ttl
        self.requests: list[TokenRequest] = []
        generated = certs.generate("token-signer", "test", ["localhost"])
        self.root_bundle = workdir / "token-root.crt"
        self.root_bundle.write_bytes(generated.ca_cert_pem)
        self._key = serialization.load_pem_private_key(generated.key_pem, password=None)
        leaf = x509.load_pem_x509_certificate(generated.cert_pem)
        self._x5c = [base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode()]
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def realm(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def start(self) -> TokenServer:
        server_ref = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server_ref._answer(self)

            def log_message(self, *_: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def mint(self, subject: str, access: list[dict[str, Any]], ttl: int | None = None) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + (ttl or self.ttl),
            "nbf": now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": self._x5c})  # type: ignore[arg-type]

    def _grant(self, user: str | None, scope: str) -> dict[str, Any] | None:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name:
            return None
        wanted = [a for a in actions.split(",") if a]
        if user is None:
            public = any(p == "*" or name.startswith(p) for p in self.public)
            wanted = [a for a in wanted if a == "pull"] if public else []
        return {"type": kind, "name": name, "actions": wanted}

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlparse(handler.path).query)
        user = None
        header = handler.headers.get("Authorization", "")
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(name) != password:
                handler.send_response(401)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            user = name
        scopes = query.get("scope", [])
        access = [g for g in (self._grant(user, s) for s in scopes) if g]
        with self._lock:
            granted = [f"{g['name']}:{','.join(g['actions'])}" for g in access]
            self.requests.append(TokenRequest(user, scopes, granted))
        token = self.mint(user or "", access)
        body = json.dumps({"token": token, "access_token": token, "expires_in": self.ttl})
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body.encode())


# -- registry processes -------------------------------------------------------------------


class _AdminTokenAuth(httpx.Auth):
    """Full access tokens minted straight from the token server, for fixtures and checks."""

    _NAME = re.compile(r"^/v2/(?P<name>.+)/(?:manifests|blobs|tags)/")

    def __init__(self, server: TokenServer) -> None:
        self.server = server

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        match = self._NAME.match(request.url.path)
        access = []
        if match is not None:
            name = match["name"]
            access = [{"type": "repository", "name": name, "actions": ["pull", "push"]}]
        request.headers["Authorization"] = f"Bearer {self.server.mint('admin', access)}"
        yield request


@dataclass
class Registry:
    """A running ``docker-registry``; ``host`` is ``127.0.0.1:PORT``."""

    host: str
    workdir: Path
    process: subprocess.Popen[bytes]
    scheme: str = "http"
    ca_file: Path | None = None
    users: dict[str, str] = field(default_factory=dict)
    token_server: TokenServer | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def cert_dir(self) -> Path | None:
        """A folder holding only the CA, as ``skopeo --cert-dir`` wants it."""
        return self.ca_file.parent if self.ca_file else None

    def client(self, *, timeout: float = 60) -> httpx.Client:
        """An httpx client with full access (fixtures and checks, not the engine)."""
        auth: httpx.Auth | None = None
        if self.token_server is not None:
            auth = _AdminTokenAuth(self.token_server)
        elif self.users:
            user, password = next(iter(self.users.items()))
            auth = httpx.BasicAuth(user, password)
        return httpx.Client(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True,
            auth=auth,
            timeout=timeout,
        )

    def logs(self) -> str:
        return (self.workdir / "registry.log").read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_registry(
    workdir: Path,
    *,
    tls: bool = False,
    users: dict[str, str] | None = None,
    token_server: TokenServer | None = None,
    access_log: bool = False,
    read_only: bool = False,
) -> Registry:
    """Start ``docker-registry`` on a free loopback port and wait until it answers.

    ``access_log``: one line per request in :meth:`Registry.logs` (to count requests).
    ``read_only``: pulls and deletes answer, pushes are refused (its maintenance mode)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    http: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": "swapper-tests"}
    ca_file = None
    if tls:
        generated = certs.generate("registry", "test", ["localhost", "127.0.0.1"])
        (workdir / "ca").mkdir(exist_ok=True)
        ca_file = workdir / "ca" / "ca.crt"
        ca_file.write_bytes(generated.ca_cert_pem)
        (workdir / "tls.crt").write_bytes(generated.cert_pem)
        (workdir / "tls.key").write_bytes(generated.key_pem)
        http["tls"] = {
            "certificate": str(workdir / "tls.crt"),
            "key": str(workdir / "tls.key"),
        }
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": not access_log}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "delete": {"enabled": True},
            "maintenance": {
                "uploadpurging": {"enabled": False},
                "readonly": {"enabled": read_only},
            },
        },
        "http": http,
    }
    if users:
        lines = [
            f"{name}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}"
            for name, pw in users.items()
        ]
        (workdir / "htpasswd").write_text("\n".join(lines) + "\n")
        config["auth"] = {"htpasswd": {"realm": "swapper-test", "path": str(workdir / "htpasswd")}}
    if token_server is not None:
        config["auth"] = {
            "token": {
                "realm": token_server.realm,
                "service": token_server.service,
                "issuer": token_server.issuer,
                "rootcertbundle": str(token_server.root_bundle),
            }
        }
    (workdir / "registry.yml").write_text(json.dumps(config))
    with (workdir / "registry.log").open("wb") as log:
        process = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(workdir / "registry.yml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    registry = Registry(
        f"127.0.0.1:{port}",
        workdir,
        process,
        "https" if tls else "http",
        ca_file,
        dict(users or {}),
        token_server,
    )
    deadline = time.monotonic() + 15
    verify = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
    while True:
        try:
            status = httpx.get(f"{registry.url}/v2/", timeout=1, verify=verify).status_code
            if status in (200, 401):
                return registry
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            registry.stop()
            raise RuntimeError(registry.logs())
        time.sleep(0.05)


# -- images -------------------------------------------------------------------------------


@dataclass
class Blob:
    digest: str
    size: int
    media_type: str
    data: bytes | None = None  # small blobs
    path: Path | None = None  # large blobs, streamed from disk
    diff_id: str = ""

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    def chunks(self, size: int = MiB) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
            return
        assert self.path is not None
        with self.path.open("rb") as file:
            while chunk := file.read(size):
                yield chunk


@dataclass
class Image:
    """One manifest with its config and layers."""

    data: bytes
    media_type: str
    config: Blob
    layers: list[Blob]
    platform: str = "linux/amd64"

    @property
    def digest(self) -> str:
        return sha256(self.data)

    @property
    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers]


@dataclass
class Index:
    """An OCI index or a Docker manifest list and its images."""

    data: bytes
    media_type: str
    images: list[Image]

    @property
    def digest(self) -> str:
        return sha256(self.data)


def _tar_gz(files: dict[str, bytes], media_type: str) -> Blob:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    diff_id = sha256(raw.getvalue())
    data = gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
    return Blob(sha256(data), len(data), media_type, data=data, diff_id=diff_id)


def make_layer(seed: str, size: int = 4096, media_type: str = OCI_LAYER) -> Blob:
    """A small layer: a tar.gz with one file of ``size`` pseudo-random bytes."""
    content = random.Random(seed).randbytes(size)  # noqa: S311 (test data)
    return _tar_gz({f"data/{seed}.bin": content}, media_type)


def make_big_layer(path: Path, size: int, seed: int = 0, media_type: str = OCI_LAYER) -> Blob:
    """A layer of ``size`` bytes of random data (it does not compress) written streaming.

    Deflate runs at level 0 (stored blocks): still a valid tar+gzip, generated at disk speed.
    """
    rng = random.Random(seed)  # noqa: S311 (test data)
    digest, diff = hashlib.sha256(), hashlib.sha256()
    compressor = zlib.compressobj(0, zlib.DEFLATED, 31)
    header = tarfile.TarInfo("data/big.bin")
    header.size = size
    header.mtime = 0
    total = 0

    with path.open("wb") as out:

        def emit(raw: bytes) -> None:
            nonlocal total
            diff.update(raw)
            packed = compressor.compress(raw)
            digest.update(packed)
            out.write(packed)
            total += len(packed)

        emit(header.tobuf(format=tarfile.PAX_FORMAT))
        remaining = size
        while remaining:
            n = min(MiB, remaining)
            emit(rng.randbytes(n))
            remaining -= n
        padding = (512 - size % 512) % 512
        emit(b"\0" * (padding + 1024))  # end of archive: two zero blocks
        tail = compressor.flush()
        digest.update(tail)
        out.write(tail)
        total += len(tail)
    return Blob(
        "sha256:" + digest.hexdigest(),
        total,
        media_type,
        path=path,
        diff_id="sha256:" + diff.hexdigest(),
    )


def make_image(
    layers: list[Blob],
    platform: str = "linux/amd64",
    kind: Literal["oci", "docker"] = "oci",
    extra: dict[str, Any] | None = None,
) -> Image:
    os_name, arch, *variant = platform.split("/")
    config_doc: dict[str, Any] = {
        "architecture": arch,
        "os": os_name,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "config": {"Env": ["PATH=/usr/bin"]},
    }
    if variant:
        config_doc["variant"] = variant[0]
    config_data = json.dumps(config_doc, separators=(",", ":")).encode()
    config_type = OCI_CONFIG if kind == "oci" else DOCKER_CONFIG
    config = Blob(sha256(config_data), len(config_data), config_type, data=config_data)
    media_type = OCI_MANIFEST if kind == "oci" else DOCKER_MANIFEST
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    manifest.update(extra or {})
    data = json.dumps(manifest, indent=3).encode()  # not compact: digests must follow bytes
    return Image(data, media_type, config, layers, platform)


def make_index(
    images: list[Image],
    kind: Literal["oci", "docker"] = "oci",
    extra_manifests: list[dict[str, Any]] | None = None,
) -> Index:
    media_type = OCI_INDEX if kind == "oci" else DOCKER_LIST
    entries = []
    for image in images:
        os_name, arch, *variant = image.platform.split("/")
        platform = {"architecture": arch, "os": os_name}
        if variant:
            platform["variant"] = variant[0]
        entries.append(
            {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": len(image.data),
                "platform": platform,
            }
        )
    entries.extend(extra_manifests or [])
    document = {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    return Index(json.dumps(document, indent=2).encode(), media_type, images)


def multi_arch(
    name: str,
    platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64"),
    layers: int = 3,
    kind: Literal["oci", "docker"] = "oci",
    layer_size: int = 4096,
) -> Index:
    layer_type = OCI_LAYER if kind == "oci" else DOCKER_LAYER
    images = [
        make_image(
            [make_layer(f"{name}-{p}-{i}", layer_size, layer_type) for i in range(layers)],
            p,
            kind,
        )
        for p in platforms
    ]
    return make_index(images, kind)


# -- pushing fixtures (not with the engine under test) ------------------------------------


def push_blob(client: httpx.Client, repo: str, blob: Blob) -> None:
    if client.head(f"/v2/{repo}/blobs/{blob.digest}").status_code == 200:
        return
    start = client.post(f"/v2/{repo}/blobs/uploads/")
    start.raise_for_status()
    location = httpx.URL(str(client.base_url)).join(start.headers["location"])
    done = client.put(
        location.copy_merge_params({"digest": blob.digest}),
        content=blob.chunks(),
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)},
    )
    done.raise_for_status()


def push_manifest(client: httpx.Client, repo: str, ref: str, data: bytes, media_type: str) -> str:
    response = client.put(
        f"/v2/{repo}/manifests/{ref}", content=data, headers={"Content-Type": media_type}
    )
    response.raise_for_status()
    return sha256(data)


def push_image(registry: Registry, repo: str, image: Image, tag: str | None = None) -> str:
    with registry.client() as client:
        for blob in image.blobs:
            push_blob(client, repo, blob)
        return push_manifest(client, repo, tag or image.digest, image.data, image.media_type)


def push_index(registry: Registry, repo: str, index: Index, tag: str | None = None) -> str:
    with registry.client() as client:
        for image in index.images:
            for blob in image.blobs:
                push_blob(client, repo, blob)
            push_manifest(client, repo, image.digest, image.data, image.media_type)
        return push_manifest(client, repo, tag or index.digest, index.data, index.media_type)


# -- checks -------------------------------------------------------------------------------


def get_manifest(registry: Registry, repo: str, ref: str) -> tuple[bytes, str] | None:
    """Raw bytes and media type of a manifest, straight from the registry; None if absent."""
    with registry.client() as client:
        response = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.content, response.headers["content-type"]


def blob_exists(registry: Registry, repo: str, digest: str) -> bool:
    with registry.client() as client:
        return client.head(f"/v2/{repo}/blobs/{digest}").status_code == 200


def tree(registry: Registry, repo: str, ref: str) -> dict[str, Any]:
    """Digest, media type, children and blob digests of a manifest, recursively; every blob
    is checked to be present."""
    with registry.client() as client:
        return _tree(client, repo, ref)


def _tree(client: httpx.Client, repo: str, ref: str) -> dict[str, Any]:
    response = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    assert response.status_code == 200, f"{client.base_url}{repo}:{ref} is missing"
    document = json.loads(response.content)
    node: dict[str, Any] = {
        "digest": sha256(response.content),
        "mediaType": response.headers["content-type"],
    }
    if "manifests" in document:
        node["children"] = [_tree(client, repo, m["digest"]) for m in document["manifests"]]
    else:
        blobs = [document["config"], *document.get("layers", [])]
        node["blobs"] = [b["digest"] for b in blobs]
        for digest in node["blobs"]:
            found = client.head(f"/v2/{repo}/blobs/{digest}").status_code == 200
            assert found, f"blob {digest} missing in {repo}"
    return node


def skopeo_raw(registry: Registry, reference: str) -> bytes:
    """``skopeo inspect --raw`` of ``docker://<registry>/<reference>``."""
    command = [SKOPEO_BIN, "inspect", "--raw", "--retry-times", "0"]
    if registry.scheme == "http":
        command.append("--tls-verify=false")
    elif registry.cert_dir is not None:
        command += ["--cert-dir", str(registry.cert_dir)]
    if registry.users:
        user, password = next(iter(registry.users.items()))
        command += ["--creds", f"{user}:{password}"]
    elif registry.token_server is not None and registry.token_server.users:
        user, password = next(iter(registry.token_server.users.items()))
        command += ["--creds", f"{user}:{password}"]
    command.append(f"docker://{registry.host}/{reference}")
    return subprocess.run(command, capture_output=True, check=True, timeout=60).stdout


def assert_same_image(
    source: Registry,
    source_repo: str,
    target: Registry,
    target_repo: str,
    ref: str,
    expected_digest: str | None = None,
    target_ref: str | None = None,
) -> dict[str, Any]:
    """The target has what the source has at ``ref`` (at ``target_ref`` on the target when it
    differs): same digests all the way down, every blob present, and ``skopeo inspect --raw``
    on the target returns the source's bytes."""
    target_ref = target_ref or ref
    src = tree(source, source_repo, ref)
    dst = tree(target, target_repo, target_ref)
    assert dst == src
    if expected_digest is not None:
        assert dst["digest"] == expected_digest
    raw = get_manifest(source, source_repo, ref)
    assert raw is not None
    separator = "@" if ":" in target_ref else ":"
    assert skopeo_raw(target, f"{target_repo}{separator}{target_ref}") == raw[0]
    return dst


# -- fault injection ----------------------------------------------------------------------


@contextmanager
def hanging_server() -> Iterator[str]:
    """A TLS-less TCP endpoint that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


FaultKind = Literal["status", "reset", "stall", "delay", "corrupt"]


@dataclass
class Fault:
    """What to do to matching requests (``method`` and a substring of the path).

    ``status``: answer ``status`` with ``headers`` instead of forwarding. ``reset``: forward, then
    reset the connection after ``after`` bytes of the response body (``0``: before the response
    headers; the upstream has handled the request), or of the request body when
    ``request_body``. ``stall``: like reset, but stop sending and hold the connection
    open. ``delay``: wait ``seconds`` before forwarding. ``corrupt``: flip one byte of the
    response body at offset ``after``. ``times`` matching requests are affected (then the
    fault is spent); ``hits`` counts them.
    """

    kind: FaultKind
    path: str
    method: str | None = None
    times: int = 1
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0
    request_body: bool = False
    seconds: float = 0.0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.hits < self.times
            and (self.method is None or self.method == method)
            and self.path in path
        )


@dataclass
class Logged:
    method: str
    path: str
    status: int | str  # the status sent, or "reset"/"stall"
    request_length: int
    started: float
    finished: float


class FaultProxy:
    """Forwards HTTP/1.1 from ``127.0.0.1:<port>`` to ``upstream`` (``host:port``, plain).

    The Host header is passed unchanged, so the registry's ``Location`` URLs point back at the
    proxy and whole uploads go through it.
    """

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.faults: list[Fault] = []
        self.log: list[Logged] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.hits += 1
                return fault
        return None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection] | None = None
        client = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await _next_event(client, reader)
                if not isinstance(request, h11.Request):
                    return
                method = request.method.decode()
                path = request.target.decode()
                started = time.monotonic()
                fault = self._fault(method, path)
                if fault is not None and fault.kind == "delay":
                    await asyncio.sleep(fault.seconds)
                if fault is not None and fault.kind == "status":
                    length = await _drain(client, reader)
                    await self._answer(client, writer, fault)
                    self.log.append(
                        Logged(method, path, fault.status, length, started, time.monotonic())
                    )
                    if client.our_state is h11.MUST_CLOSE:
                        return
                    client.start_next_cycle()
                    continue
                if upstream is None:
                    up_reader, up_writer = await asyncio.open_connection(*self.upstream)
                    upstream = (up_reader, up_writer, h11.Connection(h11.CLIENT))
                up_reader, up_writer, server = upstream
                up_writer.write(server.send(request))
                length = 0
                cut = fault if fault is not None and fault.request_body else None
                while True:
                    event = await _next_event(client, reader)
                    if isinstance(event, h11.Data):
                        length += len(event.data)
                        if cut is not None and length > cut.after:
                            self.log.append(
                                Logged(method, path, cut.kind, length, started, time.monotonic())
                            )
                            await _break(writer, cut.kind)
                            return
                        up_writer.write(server.send(event))
                        await up_writer.drain()
                    elif isinstance(event, h11.EndOfMessage):
                        up_writer.write(server.send(event))
                        await up_writer.drain()
                        break
                    else:
                        return
                response = await _next_event(server, up_reader)
                if not isinstance(response, h11.Response):
                    return
                if (
                    fault is not None
                    and fault.kind in ("reset", "stall")
                    and not fault.request_body
                    and fault.after == 0
                ):
                    self.log.append(
                        Logged(method, path, fault.kind, length, started, time.monotonic())
                    )
                    await _break(writer, fault.kind)
                    return
                writer.write(client.send(response))
                sent = 0
                body_fault = fault if fault is not None and not fault.request_body else None
                while True:
                    event = await _next_event(server, up_reader)
                    if isinstance(event, h11.Data):
                        data = bytes(event.data)
                        if body_fault is not None and body_fault.kind == "corrupt":
                            offset = body_fault.after - sent
                            if 0 <= offset < len(data):
                                data = (
                                    data[:offset]
                                    + bytes([data[offset] ^ 0xFF])
                                    + data[offset + 1 :]
                                )
                        if (
                            body_fault is not None
                            and body_fault.kind in ("reset", "stall")
                            and sent + len(data) > body_fault.after
                        ):
                            writer.write(
                                client.send(h11.Data(data=data[: body_fault.after - sent]))
                            )
                            await writer.drain()
                            self.log.append(
                                Logged(
                                    method, path, body_fault.kind, length, started, time.monotonic()
                                )
                            )
                            await _break(writer, body_fault.kind)
                            return
                        sent += len(data)
                        writer.write(client.send(h11.Data(data=data)))
                        await writer.drain()
                    elif isinstance(event, h11.EndOfMessage):
                        writer.write(client.send(event))
                        await writer.drain()
                        break
                    else:
                        return
                self.log.append(
                    Logged(method, path, response.status_code, length, started, time.monotonic())
                )
                if server.our_state is h11.DONE and server.their_state is h11.DONE:
                    server.start_next_cycle()
                else:
                    up_writer.close()
                    upstream = None
                if client.our_state is not h11.DONE or client.their_state is not h11.DONE:
                    return
                client.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            return
        finally:
            self._tasks.discard(task)
            if upstream is not None:
                upstream[1].close()
            writer.close()

    async def _answer(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, fault: Fault
    ) -> None:
        body = json.dumps(
            {"errors": [{"code": "UNAVAILABLE", "message": "injected fault", "detail": None}]}
        ).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        headers += list(fault.headers.items())
        writer.write(conn.send(h11.Response(status_code=fault.status, headers=headers)))
        writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(256 * 1024))
            continue
        return event


async def _drain(conn: h11.Connection, reader: asyncio.StreamReader) -> int:
    length = 0
    while True:
        event = await _next_event(conn, reader)
        if isinstance(event, h11.Data):
            length += len(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return length
        else:
            raise ConnectionError("client went away")


async def _break(writer: asyncio.StreamWriter, kind: str) -> None:
    if kind == "stall":
        # Hold the connection open, sending nothing: the client has to time out. The proxy's
        # aclose() cancels this.
        await asyncio.sleep(3600)
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# -- engine settings for tests ------------------------------------------------------------

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2, max_retry_after=5)


def plain_hosts(*servers: Registry | FaultProxy | str) -> dict[str, HostConfig]:
    """``HostConfig(plain_http=True)`` for each registry, proxy or ``host:port``."""
    hosts = (s if isinstance(s, str) else s.host for s in servers)
    return {host: HostConfig(plain_http=True) for host in hosts}
