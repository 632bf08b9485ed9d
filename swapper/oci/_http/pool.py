"""Keep-alive connections per origin, under a cap, opened directly or through a proxy."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from typing import TYPE_CHECKING, cast

from swapper.errors import (
    ConnectError,
    ConnectTimeout,
    TransportError,
)
from swapper.oci._http.connection import WRITE_HIGH, Connection
from swapper.oci._http.proxy import Proxy, host_port

if TYPE_CHECKING:
    from swapper.oci._http.framing import Timeout


KEEPALIVE_EXPIRY = 5.0


Origin = tuple[str, str, int]  # scheme, host (without brackets), port


class Pool:
    """Keep-alive connections to one origin (directly or through one proxy)."""

    def __init__(
        self,
        origin: Origin,
        context: ssl.SSLContext,
        proxy: Proxy | None,
        limit: int,
        timeout: Timeout,
    ) -> None:
        self.origin = origin
        self.context = context
        self.proxy = proxy
        self.timeout = timeout
        self.idle: list[Connection] = []
        self.connections: set[Connection] = set()
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._opening: set[asyncio.Task[None]] = set()

    async def acquire(self) -> Connection:
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

    def release(self, connection: Connection, *, reuse: bool) -> None:
        if reuse and connection.reusable:
            connection.idle_since = time.monotonic()
            self.idle.append(connection)
        else:
            self._drop(connection)
        self._slots.release()

    def _drop(self, connection: Connection) -> None:
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

    async def _open(self) -> Connection:
        scheme, host, port = self.origin
        loop = asyncio.get_running_loop()
        connection = Connection(loop)
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
        transport.set_write_buffer_limits(high=WRITE_HIGH)
        self.connections.add(connection)
        return connection

    async def _tunnel(self, connection: Connection, tls: ssl.SSLContext) -> None:
        _, host, port = self.origin
        assert self.proxy is not None
        authority = host_port(host, port)
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
