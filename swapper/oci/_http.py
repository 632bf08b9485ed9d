"""A small HTTP/1.1 client on asyncio: what registry traffic needs, and nothing per byte.

Why not httpx (which the engine used first): a blob went through five layers (asyncio streams,
httpcore, h11, httpx, the engine), each with its own buffer copy or Python round trip per chunk,
and importing httpx costs about 75 ms of the ``swapper mirror`` start-up (its command-line
module pulls in click and rich when they are installed). Here a response body is the chunks the
event loop hands to :class:`_Connection` (a plain :class:`asyncio.Protocol`), passed on as they
are: no copy, no parsing, one coroutine step per chunk, and flow control by pausing the socket.
With uvloop, TLS runs in C.

What it does: keep-alive connection pools per origin with a connection limit, request bodies
as ``bytes`` or async iterables (``Content-Length`` given, else chunked), response bodies by
``Content-Length``, chunked or until close, ``gzip``/``deflate`` decoding on request, redirects
(a method turned into ``GET`` loses its body and body headers; a streamed body that a ``307`` or
``308`` asks for again raises :class:`RedirectError`), connect/read/write timeouts, ``http://``
proxies from the environment (``CONNECT`` tunnels for HTTPS, ``NO_PROXY`` honoured), and a
second try on a fresh connection when a kept-alive one turns out to have been closed by the
server before it answered. Not: HTTP/2, cookies, ``https://`` or SOCKS proxies.

Its errors are the :class:`~swapper.errors.TransportError` branch of :mod:`swapper.errors`.
"""

# ruff: noqa: ASYNC109 (per-wait timeouts are timers, cheaper than asyncio.timeout per chunk)
from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol, cast, overload
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

from swapper.errors import (
    ConnectError,
    ConnectTimeout,
    Disconnected,
    ReadError,
    ReadTimeout,
    RedirectError,
    RemoteProtocolError,
    TimeoutException,
    TransportError,
    WriteError,
    WriteTimeout,
)

_READ_HIGH = 1024 * 1024  # stop reading the socket when this much is received and not consumed
_READ_LOW = 256 * 1024
_WRITE_HIGH = 1024 * 1024  # wait for the peer when this much is queued for sending
_MAX_HEAD = 64 * 1024
_MAX_REDIRECTS = 20
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Describe the request's body: dropped with it when a redirect turns the method into GET.
_BODY_HEADERS = frozenset(
    {
        "content-length",
        "content-type",
        "content-encoding",
        "content-language",
        "content-location",
        "transfer-encoding",
        "digest",
        "last-modified",
    }
)
KEEPALIVE_EXPIRY = 5.0


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds to wait for a connection (TLS included), for data, and for the peer to take
    data; ``None`` waits for ever."""

    connect: float | None = 10.0
    read: float | None = 60.0
    write: float | None = 60.0

    @classmethod
    def of(cls, value: Timeout | float | None) -> Timeout:
        """``value`` itself, or the same seconds for all three."""
        if isinstance(value, Timeout):
            return value
        return cls(value, value, value)


class Headers:
    """Response headers; names are looked up case-insensitively, the first value wins."""

    __slots__ = ("_first", "raw")

    def __init__(self, raw: list[tuple[str, str]]) -> None:
        self.raw = raw
        first: dict[str, str] = {}
        for name, value in raw:
            first.setdefault(name.lower(), value)
        self._first = first

    @overload
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._first.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __repr__(self) -> str:
        return f"Headers({self.raw!r})"


# -- connections -----------------------------------------------------------------------------


def _expire(
    waiter: asyncio.Future[None], error: type[TimeoutException], what: str, seconds: float
) -> None:
    if not waiter.done():
        waiter.set_exception(error(f"{what} after {seconds:g}s"))


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: received chunks queue up until read, unchanged."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.requests = 0
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._error: BaseException | None = None
        self._read_paused = False
        self._write_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _READ_HIGH and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._eof = True
        self._error = exc
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _wake(self) -> None:
        for waiter in (self._waiter, self._drain):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # reading and writing

    @property
    def reusable(self) -> bool:
        """Open, idle, and nothing (an early close, stray bytes) received since the last answer."""
        return not self.closed and not self._eof and not self._chunks

    @property
    def has_unread(self) -> bool:
        """Whether bytes were received that nothing has read yet."""
        return bool(self._chunks)

    async def recv(self, timeout: float | None) -> bytes:
        """The next chunk received, as received; ``b""`` at the end of the connection."""
        while not self._chunks:
            if self._eof:
                if self._error is not None:
                    error = self._error
                    raise ReadError(str(error) or type(error).__name__) from error
                return b""
            waiter = self._waiter = self.loop.create_future()
            timer = (
                self.loop.call_later(
                    timeout, _expire, waiter, ReadTimeout, "read timed out", timeout
                )
                if timeout is not None
                else None
            )
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._read_paused and self._buffered <= _READ_LOW and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        return chunk

    def unread(self, data: bytes) -> None:
        self._chunks.appendleft(data)
        self._buffered += len(data)

    async def write(self, data: bytes, timeout: float | None) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise WriteError(self._lost())
        self.transport.write(data)
        if self._write_paused:
            await self._wait_drain(timeout)

    async def _wait_drain(self, timeout: float | None) -> None:
        while self._write_paused and not self.closed:
            drain = self._drain = self.loop.create_future()
            timer = (
                self.loop.call_later(
                    timeout, _expire, drain, WriteTimeout, "write timed out", timeout
                )
                if timeout is not None
                else None
            )
            try:
                await drain
            finally:
                self._drain = None
                if timer is not None:
                    timer.cancel()
        if self.closed:
            raise WriteError(self._lost())

    def _lost(self) -> str:
        error = self._error
        if error is None:
            return "connection closed"
        return str(error) or type(error).__name__

    def close(self) -> None:
        """At once, without a TLS close_notify exchange (no one waits for the peer)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def read_line(self, timeout: float | None) -> bytes:
        buffer = b""
        while True:
            chunk = await self.recv(timeout)
            if not chunk:
                raise RemoteProtocolError("connection closed in the middle of a line")
            buffer += chunk
            end = buffer.find(b"\r\n")
            if end >= 0:
                if end + 2 < len(buffer):
                    self.unread(buffer[end + 2 :])
                return buffer[:end]
            if len(buffer) > _MAX_HEAD:
                raise RemoteProtocolError("line too long")

    async def read_head(self, timeout: float | None) -> tuple[int, str, list[tuple[str, str]]]:
        """Status, HTTP version and headers of the next answer (1xx answers skipped)."""
        while True:
            buffer = b""
            while True:
                try:
                    chunk = await self.recv(timeout)
                except ReadError as exc:
                    if buffer:
                        raise
                    raise Disconnected(f"connection lost before an answer: {exc}") from exc
                if not chunk:
                    if buffer:
                        raise RemoteProtocolError("connection closed inside the answer's head")
                    raise Disconnected("server disconnected without sending an answer")
                buffer = buffer + chunk if buffer else chunk
                end = buffer.find(b"\r\n\r\n")
                if end >= 0:
                    break
                if len(buffer) > _MAX_HEAD:
                    raise RemoteProtocolError("answer head larger than 64 KiB")
            if end + 4 < len(buffer):
                self.unread(buffer[end + 4 :])
            lines = buffer[:end].decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/") or not code.isdigit():
                raise RemoteProtocolError(f"not an HTTP answer: {lines[0][:80]!r}")
            status = int(code)
            headers = []
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                if not colon:
                    raise RemoteProtocolError(f"malformed header line {line[:80]!r}")
                headers.append((name.strip(), value.strip()))
            if 100 <= status < 200 and status != 101:
                continue
            return status, version, headers


# -- responses -------------------------------------------------------------------------------

_LENGTH, _CHUNKED, _UNTIL_CLOSE, _NONE = range(4)


class Response:
    """An answer whose body is read as it arrives; read it to its end or close it.

    A body read to its end gives the connection back to the pool; :meth:`aclose` before that
    closes the connection. ``async with response:`` closes it on the way out, however the block
    ends. ``read_timeout`` is the seconds allowed for each read of the body (the client's read
    timeout unless changed).
    """

    def __init__(
        self,
        pool: _Pool,
        connection: _Connection,
        method: str,
        url: str,
        status: int,
        version: str,
        headers: list[tuple[str, str]],
        read_timeout: float | None,
    ) -> None:
        self.method = method
        self.url = url
        self.status_code = status
        self.headers = Headers(headers)
        self._pool = pool
        self._connection: _Connection | None = connection
        self.read_timeout = read_timeout
        self._keep = version != "HTTP/1.0" and not _has_token(
            self.headers.get("connection"), "close"
        )
        self._remaining = 0
        encoding = self.headers.get("transfer-encoding")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self._kind = _NONE
            if status == 101:
                self._keep = False  # no longer HTTP on that connection
        elif encoding is not None and _has_token(encoding, "chunked"):
            self._kind = _CHUNKED
            if "content-length" in self.headers:
                self._keep = False  # framed twice: do not trust what follows on the connection
        elif (length := _content_length(headers)) is not None:
            self._remaining = length
            self._kind = _LENGTH
        else:
            self._kind = _UNTIL_CLOSE
            self._keep = False
        if self._kind in (_NONE, _LENGTH) and self._remaining == 0:
            self._finish()

    def __repr__(self) -> str:
        return f"<Response {self.method} {self.url} {self.status_code}>"

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    @property
    def is_closed(self) -> bool:
        return self._connection is None

    def _finish(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection, reuse=self._keep)

    def _fail(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection, reuse=False)

    async def read_chunk(self) -> bytes:
        """The next part of the body as received (``b""`` at its end)."""
        connection = self._connection
        if connection is None:
            return b""
        try:
            if self._kind == _LENGTH:
                chunk = await connection.recv(self.read_timeout)
                remaining = self._remaining
                if not chunk:
                    raise RemoteProtocolError(
                        f"connection closed with {remaining} bytes of the body still to come"
                    )
                if len(chunk) >= remaining:
                    if len(chunk) > remaining:
                        connection.unread(chunk[remaining:])
                        chunk = chunk[:remaining]
                    self._remaining = 0
                    self._finish()
                else:
                    self._remaining = remaining - len(chunk)
                return chunk
            if self._kind == _CHUNKED:
                return await self._read_chunked(connection)
            chunk = await connection.recv(self.read_timeout)  # until the server closes
            if not chunk:
                self._finish()
            return chunk
        except BaseException:
            self._fail()
            raise

    async def _read_chunked(self, connection: _Connection) -> bytes:
        while True:
            if self._remaining > 0:
                chunk = await connection.recv(self.read_timeout)
                if not chunk:
                    raise RemoteProtocolError("connection closed inside a chunk")
                if len(chunk) > self._remaining:
                    connection.unread(chunk[self._remaining :])
                    chunk = chunk[: self._remaining]
                self._remaining -= len(chunk)
                if self._remaining == 0 and await connection.read_line(self.read_timeout):
                    raise RemoteProtocolError("chunk not followed by CRLF")
                return chunk
            line = await connection.read_line(self.read_timeout)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise RemoteProtocolError(f"bad chunk size {line[:40]!r}") from None
            if size < 0:
                raise RemoteProtocolError(f"bad chunk size {line[:40]!r}")
            if size == 0:
                while await connection.read_line(self.read_timeout):
                    pass  # trailers
                self._finish()
                return b""
            self._remaining = size

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as received (still encoded when it has a ``Content-Encoding``)."""
        while chunk := await self.read_chunk():
            yield chunk

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body, ``gzip``/``deflate`` decoded when the server encoded it."""
        encoding = (self.headers.get("content-encoding") or "identity").strip().lower()
        if encoding in ("identity", ""):
            async for chunk in self.aiter_raw():
                yield chunk
            return
        if encoding not in ("gzip", "x-gzip", "deflate"):
            self._fail()
            raise RemoteProtocolError(f"unsupported Content-Encoding {encoding!r}")
        decoder = zlib.decompressobj(zlib.MAX_WBITS | (16 if "gzip" in encoding else 32))
        try:
            async for chunk in self.aiter_raw():
                if data := decoder.decompress(chunk):
                    yield data
            if tail := decoder.flush():
                yield tail
        except zlib.error as exc:
            self._fail()
            raise RemoteProtocolError(f"body does not decode as {encoding}: {exc}") from None

    async def aread(self) -> bytes:
        parts = [chunk async for chunk in self.aiter_bytes()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def aclose(self) -> None:
        """Close the connection if the body was not read to its end; otherwise nothing."""
        self._fail()


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    """The body length the ``Content-Length`` headers give (None without one). Values repeated
    identically (``2, 2``) count once; values that differ, or that are not plain digits, are a
    broken answer: which one frames the body cannot be told."""
    values = {
        part.strip()
        for name, value in headers
        if name.lower() == "content-length"
        for part in value.split(",")
    }
    if not values:
        return None
    if len(values) > 1:
        raise RemoteProtocolError(f"Content-Length values differ: {', '.join(sorted(values))}")
    (value,) = values
    if not (value.isascii() and value.isdigit()):  # int() would take "+2", "-2", "0_2"
        raise RemoteProtocolError(f"bad Content-Length {value!r}")
    return int(value)


def _has_token(value: str | None, token: str) -> bool:
    return value is not None and token in (part.strip().lower() for part in value.split(","))


# -- pools and the client ---------------------------------------------------------------------

Origin = tuple[str, str, int]  # scheme, host (without brackets), port


@dataclass(frozen=True, slots=True)
class _Proxy:
    host: str
    port: int
    authorization: str | None


class _Pool:
    """Keep-alive connections to one origin (directly or through one proxy)."""

    def __init__(
        self,
        origin: Origin,
        context: ssl.SSLContext,
        proxy: _Proxy | None,
        limit: int,
        timeout: Timeout,
    ) -> None:
        self.origin = origin
        self.context = context
        self.proxy = proxy
        self.timeout = timeout
        self.idle: list[_Connection] = []
        self.connections: set[_Connection] = set()
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._opening: set[asyncio.Task[None]] = set()

    async def acquire(self) -> _Connection:
        await self._slots.acquire()
        try:
            while True:
                now = time.monotonic()
                while self.idle:
                    connection = self.idle.pop()
                    if connection.reusable and now - connection.idle_since < KEEPALIVE_EXPIRY:
                        return connection
                    self._drop(connection)
                if not self._opening:
                    return await self._open()
                # A connection is being opened ahead (warm): take it rather than a new one.
                await asyncio.wait(set(self._opening), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._slots.release()
            raise

    def warm(self, count: int) -> None:
        """Open connections in the background until ``count`` exist, so that requests about
        to come find their TLS handshakes done."""
        missing = min(count, self.limit) - len(self.connections) - len(self._opening)
        loop = asyncio.get_running_loop()
        for _ in range(max(0, missing)):
            task = loop.create_task(self._open_idle())
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)

    async def _open_idle(self) -> None:
        try:
            connection = await self._open()
        except TransportError:
            return  # a request that needs the connection will try, and report, itself
        connection.idle_since = time.monotonic()
        self.idle.append(connection)

    def release(self, connection: _Connection, *, reuse: bool) -> None:
        if reuse and connection.reusable:
            connection.idle_since = time.monotonic()
            self.idle.append(connection)
        else:
            self._drop(connection)
        self._slots.release()

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        self.connections.discard(connection)

    async def aclose(self) -> None:
        opening = list(self._opening)
        for task in opening:
            task.cancel()
        await asyncio.gather(*opening, return_exceptions=True)
        for connection in list(self.connections):
            self._drop(connection)
        self.idle.clear()

    async def _open(self) -> _Connection:
        scheme, host, port = self.origin
        loop = asyncio.get_running_loop()
        connection = _Connection(loop)
        tls = self.context if scheme == "https" else None
        try:
            async with asyncio.timeout(self.timeout.connect):
                if self.proxy is None:
                    await loop.create_connection(
                        lambda: connection,
                        host,
                        port,
                        ssl=tls,
                        server_hostname=host if tls else None,
                    )
                else:
                    await loop.create_connection(
                        lambda: connection, self.proxy.host, self.proxy.port
                    )
                    if tls is not None:
                        await self._tunnel(connection, tls)
        except TimeoutError as exc:
            connection.close()
            raise ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            connection.close()
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            connection.close()
            raise
        transport = connection.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        self.connections.add(connection)
        return connection

    async def _tunnel(self, connection: _Connection, tls: ssl.SSLContext) -> None:
        _, host, port = self.origin
        assert self.proxy is not None
        authority = _authority(host, port)
        head = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        if self.proxy.authorization:
            head += f"Proxy-Authorization: {self.proxy.authorization}\r\n"
        await connection.write((head + "\r\n").encode("latin-1"), self.timeout.write)
        status, _, _ = await connection.read_head(self.timeout.read)
        if not 200 <= status < 300:
            raise ConnectError(f"proxy refused CONNECT {authority}: {status}")
        if connection.has_unread:
            raise ConnectError("proxy sent data before the TLS handshake")
        assert connection.transport is not None
        transport = await connection.loop.start_tls(
            connection.transport, connection, tls, server_hostname=host
        )
        connection.transport = cast(asyncio.Transport, transport)


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def environment_proxy_url(scheme: str, host: str) -> str | None:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` name for ``host``, unless
    ``NO_PROXY`` exempts it; ``urllib`` is only imported when such variables are set."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url:
        return None
    if urllib.request.proxy_bypass(host.rsplit(":", 1)[0].strip("[]")):
        return None
    return url


def _parse_proxy(url: str) -> _Proxy:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise ConnectError(f"proxy {parts.scheme}://{parts.hostname}: only http:// proxies work")
    authorization = None
    if parts.username is not None:
        raw = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(raw).decode("ascii")
    return _Proxy(parts.hostname or "", parts.port or 80, authorization)


class Transport(Protocol):
    """What :class:`~swapper.oci.RegistryClient` sends its requests through, one per registry
    host: :class:`HTTPClient`, or in a test a wrapper that injects faults (as httpx's
    ``MockTransport``)."""

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        follow_redirects: bool = False,
    ) -> Response: ...

    def warm(self, url: str, count: int) -> None: ...

    async def aclose(self) -> None: ...


class HTTPClient:
    """Requests to any origin with one TLS context; each origin gets its own pool."""

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        timeout: Timeout,
        max_connections: int,
        headers: Mapping[str, str] | None = None,
        trust_env: bool = True,
    ) -> None:
        context.set_alpn_protocols(["http/1.1"])
        self.context = context
        self.timeout = timeout
        self.max_connections = max_connections
        self.headers = dict(headers or {})
        self.trust_env = trust_env
        self._pools: dict[Origin, _Pool] = {}

    def _pool(self, origin: Origin) -> _Pool:
        pool = self._pools.get(origin)
        if pool is None:
            scheme, host, port = origin
            proxy_url = (
                environment_proxy_url(scheme, _authority(host, port)) if self.trust_env else None
            )
            proxy = _parse_proxy(proxy_url) if proxy_url else None
            pool = self._pools[origin] = _Pool(
                origin, self.context, proxy, self.max_connections, self.timeout
            )
        return pool

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()

    def warm(self, url: str, count: int) -> None:
        """Have ``count`` connections to the origin of ``url`` opened in the background."""
        self._pool(_origin(url)).warm(count)

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        follow_redirects: bool = False,
    ) -> Response:
        """Send a request; the answer's body is read from the returned :class:`Response`.

        With ``follow_redirects``, a ``303`` (or a ``301``/``302`` to a ``POST``) is followed
        with a ``GET`` (a ``HEAD`` stays one) without the body and its headers; other redirects
        send the request again as it was, which a streamed ``content`` cannot be: that raises
        :class:`RedirectError`.
        """
        request_headers = {**self.headers, **(headers or {})}
        for _ in range(_MAX_REDIRECTS + 1):
            response = await self._send_once(method, url, request_headers, content)
            status = response.status_code
            location = response.headers.get("location")
            if not (follow_redirects and status in _REDIRECTS and location):
                return response
            await _discard(response)
            target = urljoin(url, location)
            if _origin(target) != _origin(url):
                request_headers = {
                    k: v for k, v in request_headers.items() if k.lower() != "authorization"
                }
            if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                method, content = "GET", None
                request_headers = {
                    k: v for k, v in request_headers.items() if k.lower() not in _BODY_HEADERS
                }
            elif content is not None and not isinstance(content, bytes):
                raise RedirectError(
                    f"{status} redirect of {method} {_no_query(url)} to {_no_query(target)}: "
                    "the request body was streamed and cannot be sent again"
                )
            url = target
        raise RedirectError(f"more than {_MAX_REDIRECTS} redirects")

    async def _send_once(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | AsyncIterable[bytes] | None,
    ) -> Response:
        parts = urlsplit(url)
        origin = _origin_of(parts)
        pool = self._pool(origin)
        scheme, host, port = origin
        if pool.proxy is not None and scheme == "http":
            target = url.split("#", 1)[0]  # absolute form, for the proxy
        else:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = 443 if scheme == "https" else 80
        lines = [f"{method} {target} HTTP/1.1\r\nHost: "]
        lines.append(_authority(host, port) if port != default_port else _bracket(host))
        lines.append("\r\n")
        names = set()
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} holds a line break")
            names.add(name.lower())
            lines.append(f"{name}: {value}\r\n")
        chunked = False
        if isinstance(content, bytes):
            if "content-length" not in names:
                lines.append(f"Content-Length: {len(content)}\r\n")
        elif content is not None:
            if "content-length" not in names:
                chunked = True
                lines.append("Transfer-Encoding: chunked\r\n")
        elif method in ("POST", "PUT", "PATCH") and "content-length" not in names:
            lines.append("Content-Length: 0\r\n")
        if pool.proxy is not None and pool.proxy.authorization and scheme == "http":
            lines.append(f"Proxy-Authorization: {pool.proxy.authorization}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        replayable = content is None or isinstance(content, bytes)
        while True:
            connection = await pool.acquire()
            reused = connection.requests > 0
            connection.requests += 1
            try:
                return await self._exchange(pool, connection, method, url, head, content, chunked)
            except (Disconnected, WriteError):
                pool.release(connection, reuse=False)
                if reused and replayable:
                    continue  # the server closed a kept-alive connection: once more, fresh
                raise
            except BaseException:
                pool.release(connection, reuse=False)
                raise

    async def _exchange(
        self,
        pool: _Pool,
        connection: _Connection,
        method: str,
        url: str,
        head: bytes,
        content: bytes | AsyncIterable[bytes] | None,
        chunked: bool,
    ) -> Response:
        timeout = self.timeout
        try:
            if isinstance(content, bytes) and len(content) < 65536:
                await connection.write(head + content, timeout.write)  # one TLS record
            else:
                await connection.write(head, timeout.write)
                if isinstance(content, bytes):
                    await connection.write(content, timeout.write)
                elif content is not None:
                    await _send_body(connection, content, chunked, timeout.write)
        except WriteError:
            # The server may have answered and closed early (a refusal): read that answer.
            if not connection.has_unread:
                raise
        status, version, headers = await connection.read_head(timeout.read)
        return Response(pool, connection, method, url, status, version, headers, timeout.read)


async def _send_body(
    connection: _Connection, content: AsyncIterable[bytes], chunked: bool, timeout: float | None
) -> None:
    if chunked:
        async for chunk in content:
            if chunk:
                await connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk), timeout)
        await connection.write(b"0\r\n\r\n", timeout)
        return
    async for chunk in content:
        await connection.write(chunk, timeout)


async def _discard(response: Response) -> None:
    """Read what is left of a small body (to keep the connection), else close it."""
    async with response:
        received = 0
        with contextlib.suppress(TransportError):
            while chunk := await response.read_chunk():
                received += len(chunk)
                if received > 65536:
                    break


def _no_query(url: str) -> str:
    """``url`` without its query (which may hold a signature) for an error message."""
    return urlsplit(url)._replace(query="", fragment="").geturl()


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _origin_of(parts: SplitResult) -> Origin:
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConnectError(f"unsupported URL scheme {scheme!r}")
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise ConnectError(f"bad port in {parts.netloc!r}") from None
    return scheme, host, port or (443 if scheme == "https" else 80)


def _origin(url: str) -> Origin:
    return _origin_of(urlsplit(url))
