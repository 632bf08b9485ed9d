"""The HTTP/1.1 client under the engine (``swapper.oci._http``), against small scripted servers
on loopback: body framings, decoding, keep-alive, redirects, timeouts, responses closed by
``async with``, the blob idle timeout (a fault proxy in front of a real registry), and an HTTP
proxy (``CONNECT``) in front of a real TLS registry. The table of exact-bytes cases is in
``test_http_conformance.py``."""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from registries import (
    FAST_RETRY,
    Fault,
    FaultProxy,
    Registry,
    assert_same_image,
    blob_exists,
    make_image,
    make_layer,
    plain_hosts,
    push_image,
)

from swapper.credentials import Credentials
from swapper.errors import ReadTimeout, RemoteProtocolError
from swapper.oci import CopyEngine, HostConfig, RegistryClient, static_credentials
from swapper.oci._http import HTTPClient, Timeout


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]
"""Writes an answer; returns whether to keep the connection open."""


class Server:
    """HTTP/1.1 on ``127.0.0.1``: parses requests (``Content-Length`` bodies), lets ``handler``
    answer, records requests and counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def aclose(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, target, headers, body)
                self.requests.append(request)
                keep = await self.handler(request, writer)
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[Server] = []

    async def start(handler: Handler) -> Server:
        server = await Server(handler).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.aclose()


@pytest.fixture
async def http() -> AsyncIterator[HTTPClient]:
    client = HTTPClient(
        ssl.create_default_context(),
        timeout=Timeout(connect=2, read=2, write=2),
        max_connections=4,
        trust_env=False,
    )
    yield client
    await client.aclose()


def answer(status: int, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} X"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_a_chunked_body_with_extensions_and_trailers_is_read_and_the_connection_kept(
    serve: Callable[[Handler], Awaitable[Server]], http: HTTPClient
) -> None:
    async def chunked(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(200, Transfer_Encoding="chunked"))
        writer.write(b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n")
        return True

    server = await serve(chunked)

    first = await http.send("GET", f"{server.url}/a")
    assert await first.aread() == b"hello world"
    second = await http.send("GET", f"{server.url}/b")
    assert await second.aread() == b"hello world"
    assert server.connections == 1


async def test_a_gzip_body_is_decoded_on_request_and_passed_raw_otherwise(
    serve: Callable[[Handler], Awaitable[Server]], http: HTTPClient
) -> None:
    packed = gzip.compress(b'{"errors": []}' * 100)

    async def gzipped(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(200, packed, Content_Length=str(len(packed)), Content_Encoding="gzip"))
        return True

    server = await serve(gzipped)

    decoded = await http.send("GET", f"{server.url}/m")
    assert await decoded.aread() == b'{"errors": []}' * 100
    raw = await http.send("GET", f"{server.url}/m")
    assert b"".join([chunk async for chunk in raw.aiter_raw()]) == packed


async def test_a_body_cut_short_of_its_content_length_is_an_error(
    serve: Callable[[Handler], Awaitable[Server]], http: HTTPClient
) -> None:
    async def short(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(200, b"only part", Content_Length="100"))
        return False

    server = await serve(short)

    response = await http.send("GET", f"{server.url}/blob")
    with pytest.raises(RemoteProtocolError, match="91 bytes"):
        await response.aread()


@pytest.mark.parametrize("drop", ["close", "reset"])
async def test_a_kept_alive_connection_the_server_drops_is_replaced_without_an_error(
    serve: Callable[[Handler], Awaitable[Server]], http: HTTPClient, drop: str
) -> None:
    answered: set[asyncio.StreamWriter] = set()

    async def once_per_connection(request: Request, writer: asyncio.StreamWriter) -> bool:
        if writer in answered:
            # The next request on a kept-alive connection: closed (or reset), no answer.
            if drop == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        answered.add(writer)
        writer.write(answer(200, b"ok", Content_Length="2"))
        return True

    server = await serve(once_per_connection)

    for _ in range(3):
        response = await http.send("PUT", f"{server.url}/manifest", content=b"{}")
        assert await response.aread() == b"ok"
    assert server.connections == 3
    assert len(server.requests) == 5  # two of them dropped, and sent again on a new connection


async def test_a_redirect_to_another_origin_drops_the_authorization_header(
    serve: Callable[[Handler], Awaitable[Server]], http: HTTPClient
) -> None:
    async def storage(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(200, b"blob", Content_Length="4"))
        return True

    store = await serve(storage)

    async def registry(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.target == "/v2/app/blobs/x":
            writer.write(answer(307, Location="/v2/app/blobs/y", Content_Length="0"))
        else:
            writer.write(answer(302, Location=f"{store.url}/s3/y?sig=1", Content_Length="0"))
        return True

    origin = await serve(registry)

    response = await http.send(
        "GET",
        f"{origin.url}/v2/app/blobs/x",
        headers={"Authorization": "Bearer secret"},
        follow_redirects=True,
    )

    assert await response.aread() == b"blob"
    assert [r.headers.get("authorization") for r in origin.requests] == ["Bearer secret"] * 2
    assert [(r.target, r.headers.get("authorization")) for r in store.requests] == [
        ("/s3/y?sig=1", None)
    ]


async def test_an_answer_that_never_comes_times_out(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def silent(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    server = await serve(silent)
    client = HTTPClient(
        ssl.create_default_context(),
        timeout=Timeout(connect=1, read=0.2, write=1),
        max_connections=1,
        trust_env=False,
    )
    try:
        with pytest.raises(ReadTimeout):
            await client.send("GET", f"{server.url}/v2/")
    finally:
        await client.aclose()


@pytest.fixture
async def one_connection() -> AsyncIterator[HTTPClient]:
    """A client allowed a single connection: a response never given back blocks the next."""
    client = HTTPClient(
        ssl.create_default_context(),
        timeout=Timeout(connect=2, read=2, write=2),
        max_connections=1,
        trust_env=False,
    )
    yield client
    await client.aclose()


async def large_body(request: Request, writer: asyncio.StreamWriter) -> bool:
    writer.write(answer(200, b"x" * 100_000, Content_Length="100000"))
    return True


async def test_a_response_left_unread_in_its_context_gives_its_pool_slot_back(
    serve: Callable[[Handler], Awaitable[Server]], one_connection: HTTPClient
) -> None:
    server = await serve(large_body)

    async with await one_connection.send("GET", f"{server.url}/a") as response:
        assert response.status_code == 200
    second = await asyncio.wait_for(one_connection.send("GET", f"{server.url}/b"), 2)

    assert second.status_code == 200
    assert server.connections == 2  # the unread body's connection was closed, not reused


async def test_a_response_read_to_its_end_in_its_context_keeps_its_connection(
    serve: Callable[[Handler], Awaitable[Server]], one_connection: HTTPClient
) -> None:
    server = await serve(large_body)

    for path in ("/a", "/b"):
        async with await one_connection.send("GET", f"{server.url}{path}") as response:
            assert len(await response.aread()) == 100_000

    assert server.connections == 1


def idle_client(source_proxy: FaultProxy, target: Registry) -> RegistryClient:
    """Blob bodies may idle for 0.5 s; everything else has the usual 20 s and more."""
    return RegistryClient(
        hosts=plain_hosts(source_proxy, target),
        retry=FAST_RETRY,
        timeout=Timeout(connect=5, read=20, write=20),
        blob_idle_timeout=0.5,
    )


async def test_a_blob_download_that_stalls_is_dropped_after_the_idle_timeout_and_tried_again(
    source: Registry, target: Registry, source_proxy: FaultProxy, fresh_repo: str
) -> None:
    layer = make_layer("idle-stall", size=256 * 1024)
    image = make_image([layer])
    push_image(source, fresh_repo, image, "1")
    source_proxy.add(Fault("stall", f"/blobs/{layer.digest}", method="GET", after=64 * 1024))
    kinds: list[str] = []

    started = time.monotonic()
    async with idle_client(source_proxy, target) as client:
        result = await CopyEngine(client).copy(
            f"{source_proxy.host}/{fresh_repo}:1",
            f"{target.host}/{fresh_repo}:1",
            progress=lambda event: kinds.append(event.kind),
        )
    elapsed = time.monotonic() - started

    gets = [e.status for e in source_proxy.log if e.method == "GET" and layer.digest in e.path]
    assert gets == ["stall", 200]  # the first GET stalled part-way, the second was served whole
    assert kinds.count("blob-retried") == 1
    assert elapsed < 5  # far from the 20 s read timeout
    assert result.digest == image.digest and blob_exists(target, fresh_repo, layer.digest)


async def test_a_blob_answer_slower_to_start_than_the_idle_timeout_is_not_dropped(
    source: Registry, target: Registry, source_proxy: FaultProxy, fresh_repo: str
) -> None:
    layer = make_layer("idle-slow-start")
    image = make_image([layer])
    push_image(source, fresh_repo, image, "1")
    # Held back before its headers: the read timeout applies there, not the idle timeout.
    source_proxy.add(Fault("delay", f"/blobs/{layer.digest}", method="GET", seconds=1.0))
    kinds: list[str] = []

    async with idle_client(source_proxy, target) as client:
        result = await CopyEngine(client).copy(
            f"{source_proxy.host}/{fresh_repo}:1",
            f"{target.host}/{fresh_repo}:1",
            progress=lambda event: kinds.append(event.kind),
        )

    gets = [e.status for e in source_proxy.log if e.method == "GET" and layer.digest in e.path]
    assert gets == [200] and "blob-retried" not in kinds
    assert result.digest == image.digest


@pytest.mark.parametrize(
    ("idle", "read", "allowed"),
    [
        (0.5, 20.0, 0.5),
        (15.0, 1.0, 1.0),
        (None, 20.0, 20.0),
        (15.0, None, 15.0),
        (None, None, None),
    ],
)
def test_a_blob_body_may_idle_for_the_shorter_of_the_idle_and_read_timeouts(
    idle: float | None, read: float | None, allowed: float | None
) -> None:
    client = RegistryClient(timeout=Timeout(connect=5, read=read), blob_idle_timeout=idle)

    assert client.blob_read_timeout == allowed


@pytest.mark.parametrize("seconds", [0, -1.0])
def test_a_blob_idle_timeout_that_is_not_positive_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="blob_idle_timeout"):
        RegistryClient(blob_idle_timeout=seconds)


class ConnectProxy:
    """An HTTP proxy that only tunnels (``CONNECT``), recording targets and credentials."""

    def __init__(self) -> None:
        self.tunnels: list[tuple[str, str | None]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def aclose(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, authority, _ = head[0].split(" ", 2)
        auth = next(
            (line.split(":", 1)[1].strip() for line in head if line.lower().startswith("proxy-a")),
            None,
        )
        self.tunnels.append((authority, auth))
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 No\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        host, _, port = authority.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        tasks = [
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)


async def test_https_goes_through_the_environment_proxy_in_a_connect_tunnel(
    tls_registry: Registry, target: Registry, fresh_repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = make_image([make_layer("proxied-1"), make_layer("proxied-2")])
    push_image(tls_registry, "proxied/app", image, "1")
    proxy = await ConnectProxy().start()
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://me:p%40ss@127.0.0.1:{proxy.port}")
    monkeypatch.delenv("https_proxy", raising=False)
    hosts = {
        **plain_hosts(target),
        tls_registry.host: HostConfig(ca_file=str(tls_registry.ca_file)),
    }
    credentials = static_credentials({tls_registry.host: Credentials("carol", "carol-secret")})
    try:
        async with RegistryClient(hosts=hosts, credentials=credentials, retry=FAST_RETRY) as c:
            result = await CopyEngine(c).copy(
                f"{tls_registry.host}/proxied/app:1", f"{target.host}/{fresh_repo}:1"
            )
    finally:
        await proxy.aclose()

    assert result.digest == image.digest
    expected = "Basic " + base64.b64encode(b"me:p@ss").decode()
    # Only the HTTPS registry is tunnelled; the plain-HTTP target is not proxied (no HTTP_PROXY).
    assert proxy.tunnels and set(proxy.tunnels) == {(tls_registry.host, expected)}
    monkeypatch.delenv("HTTPS_PROXY")  # the checks below go direct
    assert_same_image(tls_registry, "proxied/app", target, fresh_repo, "1", image.digest)
