"""One TCP (or TLS) connection as an asyncio protocol: received chunks, flow control, deadlines."""

# ruff: noqa: ASYNC109 (per-wait timeouts are timers, cheaper than asyncio.timeout per chunk)
from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

from swapper.errors import (
    Disconnected,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    TimeoutException,
    WriteError,
    WriteTimeout,
)

_READ_HIGH = 1024 * 1024  # stop reading the socket when this much is received and not consumed


_READ_LOW = 256 * 1024


WRITE_HIGH = 1024 * 1024  # wait for the peer when this much is queued for sending


_MAX_HEAD = 64 * 1024


def expire(
    waiter: asyncio.Future[None], error: type[TimeoutException], what: str, seconds: float
) -> None:
    if not waiter.done():
        waiter.set_exception(error(f"{what} after {seconds:g}s"))


class Connection(asyncio.Protocol):
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
                    timeout, expire, waiter, ReadTimeout, "read timed out", timeout
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
                    timeout, expire, drain, WriteTimeout, "write timed out", timeout
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
