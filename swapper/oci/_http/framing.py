"""HTTP/1.1 framing: timeouts, headers, request bodies, and the response read from a connection."""

# ruff: noqa: ASYNC109 (per-wait timeouts are timers, cheaper than asyncio.timeout per chunk)
from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

from swapper.errors import (
    RemoteProtocolError,
    TransportError,
)

if TYPE_CHECKING:
    from swapper.oci._http.connection import Connection
    from swapper.oci._http.pool import Pool


_LENGTH, _CHUNKED, _UNTIL_CLOSE, _NONE = range(4)


MAX_REDIRECTS = 20


REDIRECTS = frozenset({301, 302, 303, 307, 308})


# Describe the request's body: dropped with it when a redirect turns the method into GET.
BODY_HEADERS = frozenset(
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


class Response:
    """An answer whose body is read as it arrives; read it to its end or close it.

    A body read to its end gives the connection back to the pool; :meth:`aclose` before that
    closes the connection. ``async with response:`` closes it on the way out, however the block
    ends. ``read_timeout`` is the seconds allowed for each read of the body (the client's read
    timeout unless changed).
    """

    def __init__(
        self,
        pool: Pool,
        connection: Connection,
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
        self._connection: Connection | None = connection
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

    async def _read_chunked(self, connection: Connection) -> bytes:
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


async def send_body(
    connection: Connection, content: AsyncIterable[bytes], chunked: bool, timeout: float | None
) -> None:
    if chunked:
        async for chunk in content:
            if chunk:
                await connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk), timeout)
        await connection.write(b"0\r\n\r\n", timeout)
        return
    async for chunk in content:
        await connection.write(chunk, timeout)


async def discard(response: Response) -> None:
    """Read what is left of a small body (to keep the connection), else close it."""
    async with response:
        received = 0
        with contextlib.suppress(TransportError):
            while chunk := await response.read_chunk():
                received += len(chunk)
                if received > 65536:
                    break
