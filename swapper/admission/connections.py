"""The HTTPS server's connections, from accept to close, each with a deadline, all under a cap.

uvicorn creates its HTTP protocol only once a connection's TLS handshake is done, and gives no
deadline to the handshake nor to the first request: a client that connects and sends nothing
holds a file descriptor for ever, and about a thousand of them (the usual soft limit is 1024)
leave none for anyone else. Here each accepted socket gets its own TLS layer (uvloop's
``SSLProtocol``, the one ``create_server(ssl=...)`` uses, with ``server.handshakeTimeout``)
around uvicorn's httptools protocol, which gets:

- a deadline for the request line and headers (``server.headerTimeout``), for the first request
  from the end of the handshake and for each later one from its first byte, and a size limit
  (``server.maxHeaderBytes``: 431, counted before the parser buffers the bytes);
- ``server.keepAliveTimeout`` between requests;
- a cap on open connections (:class:`Connections`), below the open-file limit (raised to its hard
  limit at start): a new connection beyond it closes the oldest one that has not sent a request
  yet (in its handshake, silent, or still sending its headers), else the oldest idle keep-alive
  one; with none idle, the new one is answered 503.

Each connection closed this way is counted (``swapper_connections_closed_total``) and logged, at
most one line per reason every 10 s, with the count.

**What this relies on that is not public.** uvicorn's settings have no handshake or header
deadline (``timeout_keep_alive`` and ``limit_concurrency`` are all it offers, and the latter
refuses with 503 rather than shedding idle connections), so this module builds on internals,
listed in :data:`INTERNALS` and checked by :func:`missing_internals` (a test fails naming what an
upgrade removed), with the versions pinned in pyproject.toml to the range they were checked on:

- uvloop: ``uvloop.loop.SSLProtocol`` (not in its stubs; imported through ``importlib``), and
  its constructor's ``ssl_handshake_timeout`` and ``ssl_shutdown_timeout`` keywords;
- uvicorn's ``HttpToolsProtocol``: its constructor ``(config, server_state, app_state, loop)``,
  ``_start_asgi_task(cycle, app)`` (the 503 at the cap), ``timeout_keep_alive`` and
  ``timeout_keep_alive_handler``, ``cycle`` (with ``response_complete``), ``pipeline``,
  ``transport``, ``loop``, and its parser callbacks (``on_headers_complete``,
  ``on_message_complete``, ``on_response_complete``); ``STATUS_LINE``;
- uvicorn's ``Server``: ``lifespan``, ``server_state``, ``servers``, ``started`` and
  ``_log_started_message(sockets)``; ``uvicorn.config.STARTUP_FAILURE``.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import resource
import socket
import ssl
import sys
from typing import Any

import orjson
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from swapper import logs
from swapper.config import ServerSettings
from swapper.metrics import Metrics

log = logs.get_logger("swapper.connections")

# uvloop's TLS protocol, the one create_server(ssl=...) wraps each connection in (it is not in
# uvloop's type stubs). The server runs on uvloop only.
_SSLProtocol: Any = importlib.import_module("uvloop.loop").SSLProtocol

INTERNALS: tuple[tuple[str, str], ...] = (
    ("uvloop.loop", "SSLProtocol"),
    ("uvicorn.protocols.http.httptools_impl", "STATUS_LINE"),
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol._start_asgi_task"),
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol.timeout_keep_alive_handler"),
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol.on_headers_complete"),
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol.on_message_complete"),
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol.on_response_complete"),
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol.__init__(server_state)"),
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol.__init__(app_state)"),
    ("uvicorn.server", "Server._log_started_message"),
    ("uvicorn.config", "STARTUP_FAILURE"),
)
"""The private names of uvicorn and uvloop this module uses: ``module``, ``Class.attribute``
or ``Class.method(parameter)`` (see the module docstring). What cannot be looked up without
serving (instance attributes set in constructors: ``cycle``, ``pipeline``, ``lifespan``...; the
keywords of uvloop's compiled ``SSLProtocol``) is exercised by the tests that serve."""


def missing_internals() -> list[str]:
    """Which of :data:`INTERNALS` the installed uvicorn and uvloop no longer have."""
    import inspect

    missing = []
    for module_name, path in INTERNALS:
        name, _, parameter = path.partition("(")
        try:
            found: Any = importlib.import_module(module_name)
            for part in name.split("."):
                found = getattr(found, part)
            if parameter:
                parameters = inspect.signature(found).parameters
                if parameter.rstrip(")") not in parameters:
                    raise AttributeError(parameter)
        except (ImportError, AttributeError, TypeError, ValueError):
            missing.append(f"{module_name}.{path}")
    return missing


FD_RESERVE = 64  # descriptors kept below the open-file limit for swapper's own use
OVERFLOW = 16  # of those, new connections at the cap with none idle, held to be answered 503
LOG_INTERVAL = 10.0  # at most one log line per reason this often
_LOGGED = frozenset({"shed", "refused", "handshake-timeout", "header-timeout"})
_JSON = b"application/json"


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard one; the soft limit in force after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):  # e.g. above the kernel's nr_open: keep the soft limit
            pass
    return soft


def connection_cap(max_connections: int, open_files: int) -> int:
    """``server.maxConnections``, lowered to leave :data:`FD_RESERVE` descriptors free."""
    if open_files == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, open_files - FD_RESERVE))


class Report:
    """Connections closed and requests refused before the handler: counted at once, logged at
    most once per reason every ``interval`` seconds (the first at once, then the count)."""

    def __init__(self, metrics: Metrics, interval: float = LOG_INTERVAL) -> None:
        self._closed = functools.cache(metrics.connections_closed.labels)
        self._refused = functools.cache(metrics.requests_refused.labels)
        self._interval = interval
        self._quiet_until: dict[str, float] = {}
        self._pending: dict[str, int] = {}
        self.context: dict[str, Any] = {}  # added to each line (the limits)

    def closed(self, reason: str) -> None:
        self._closed(reason).inc()
        if reason in _LOGGED:
            self._log("connections_closed", reason)

    def refused(self, reason: str) -> None:
        self._refused(reason).inc()
        self._log("requests_refused", reason)

    def _log(self, event: str, reason: str) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        key = f"{event}:{reason}"
        until = self._quiet_until.get(key, 0.0)
        if now >= until and key not in self._pending:
            self._write(event, reason, 1)
            self._quiet_until[key] = now + self._interval
            return
        if key not in self._pending:
            loop.call_at(until, self._flush, event, reason)
        self._pending[key] = self._pending.get(key, 0) + 1

    def flush(self) -> None:
        """Log the counts still waiting for their line (at shutdown)."""
        for key in list(self._pending):
            event, _, reason = key.partition(":")
            self._flush(event, reason)

    def _flush(self, event: str, reason: str) -> None:
        key = f"{event}:{reason}"
        count = self._pending.pop(key, 0)
        if count:
            self._write(event, reason, count)
            self._quiet_until[key] = asyncio.get_running_loop().time() + self._interval

    def _write(self, event: str, reason: str, count: int) -> None:
        log.warning(event, reason=reason, count=count, interval=self._interval, **self.context)


class Connections:
    """Every open connection, oldest first, in three groups: ``fresh`` (no request yet: in its
    TLS handshake, silent, or sending its first headers), ``idle`` (kept alive between requests,
    oldest idle first) and ``busy`` (a request in progress, or one refused and owed a 503)."""

    def __init__(self, cap: int, report: Report) -> None:
        self.cap = cap
        self.report = report
        self._fresh: dict[TLSConnection, None] = {}
        self._idle: dict[TLSConnection, None] = {}
        self._busy: set[TLSConnection] = set()

    def __len__(self) -> int:
        return len(self._fresh) + len(self._idle) + len(self._busy)

    def accepted(self, conn: TLSConnection) -> bool:
        """Take in a new connection; False: it is to be closed at once."""
        if len(self) >= self.cap:
            oldest = next(iter(self._fresh or self._idle), None)
            if oldest is not None:
                self.closed(oldest)
                oldest.abort()
                self.report.closed("shed")
            elif len(self) >= self.cap + OVERFLOW:
                self.report.closed("refused")
                return False
            else:  # its request gets 503; it is never shed before that
                conn.refused = True
                self._busy.add(conn)
                return True
        self._fresh[conn] = None
        return True

    def busy(self, conn: TLSConnection) -> None:
        self._fresh.pop(conn, None)
        self._idle.pop(conn, None)
        self._busy.add(conn)

    def idle(self, conn: TLSConnection) -> None:
        self._busy.discard(conn)
        self._fresh.pop(conn, None)
        self._idle.pop(conn, None)
        self._idle[conn] = None  # the most recently idle last

    def closed(self, conn: TLSConnection) -> None:
        self._fresh.pop(conn, None)
        self._idle.pop(conn, None)
        self._busy.discard(conn)

    def close_fresh(self) -> None:
        """Close every connection that has not sent a request (at shutdown)."""
        for conn in list(self._fresh):
            self.closed(conn)
            conn.abort()


class TLSConnection(_SSLProtocol):  # type: ignore[misc]
    """One accepted socket: uvloop's TLS layer over it, the socket kept so the connection can be
    closed at once, even in its handshake (a TLS close waits for the client's reply)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        http: LimitedHttp,
        context: ssl.SSLContext,
        connections: Connections,
        settings: ServerSettings,
    ) -> None:
        waiter = loop.create_future()
        super().__init__(
            loop,
            http,
            context,
            waiter,
            server_side=True,
            ssl_handshake_timeout=settings.handshake_timeout,
            ssl_shutdown_timeout=settings.handshake_timeout,
        )
        waiter.add_done_callback(self._handshake_done)
        self.connections = connections
        self.refused = False
        self.socket: asyncio.Transport | None = None
        http.tls = self

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.socket = transport
        if self.connections.accepted(self):
            super().connection_made(transport)
        else:
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.closed(self)
        super().connection_lost(exc)

    def abort(self) -> None:
        if self.socket is not None and not self.socket.is_closing():
            self.socket.abort()

    def _handshake_done(self, waiter: asyncio.Future[None]) -> None:
        exc = None if waiter.cancelled() else waiter.exception()
        if exc is None:
            return
        # uvloop ends a handshake past its deadline with ConnectionAbortedError; anything else
        # is a client that gave up or does not speak TLS (port scans, TCP probes).
        timed_out = isinstance(exc, ConnectionAbortedError)
        self.connections.report.closed("handshake-timeout" if timed_out else "handshake-failed")
        self.abort()


def _error(status: int, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    head = b"content-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
    return STATUS_LINE[status] + head % (_JSON, len(body)) + body


class LimitedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit for each request's head."""

    tls: TLSConnection  # set by the TLSConnection made around it

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: Any,
        app_state: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        settings: ServerSettings,
    ) -> None:
        super().__init__(config, server_state, app_state, loop)
        # uvicorn's own keep-alive timer; its Config takes whole seconds, call_later any.
        self.timeout_keep_alive = settings.keep_alive_timeout  # type: ignore[assignment]
        self._settings = settings
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # the next bytes are a request line and headers
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            super().data_received(data)
            return
        if self._head_timer is None and self._response_done():
            self._start_head_timer()  # a later request on a kept-alive connection
        room = self._settings.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # The head may end within the bytes still allowed: parse those, then look.
        self._head_bytes += room
        if room > 0:
            super().data_received(data[:room])
        if self.transport.is_closing():
            return
        if self._in_head:
            self._refuse_head()
        else:
            self.data_received(data[room:])

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        self.tls.connections.busy(self.tls)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self.tls.connections.idle(self.tls)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        super()._start_asgi_task(cycle, self._too_many_connections if self.tls.refused else app)

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self.tls.connections.report.closed("keep-alive-timeout")
        super().timeout_keep_alive_handler()

    def _response_done(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self._settings.header_timeout, self._head_late)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._in_head and self._response_done() and not self.transport.is_closing():
            self.tls.connections.report.closed("header-timeout")
            self.tls.abort()

    def _refuse_head(self) -> None:
        self._stop_head_timer()
        self.tls.connections.report.refused("headers-too-large")
        if self._response_done():
            limit = self._settings.max_header_bytes
            message = f"request line and headers are larger than server.maxHeaderBytes ({limit})"
            self.transport.write(_error(431, message))
            self.transport.close()
        else:  # a response is still being written on this connection
            self.tls.abort()

    async def _too_many_connections(self, scope: Any, receive: Any, send: Any) -> None:
        self.tls.connections.report.refused("too-many-connections")
        body = orjson.dumps({"error": "too many connections; try again"})
        headers = [
            (b"content-type", _JSON),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class LimitedServer(uvicorn.Server):
    """uvicorn's server, listening with :class:`TLSConnection` s under :class:`Connections`.

    ``config.ssl`` is the serving context (see ``swapper.admission.server.TLSServerConfig``).
    """

    def __init__(self, config: uvicorn.Config, settings: ServerSettings, metrics: Metrics) -> None:
        super().__init__(config)
        self.settings = settings
        self.report = Report(metrics)
        self.connections = Connections(settings.max_connections, self.report)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up for a host and port, with this module's connections."""
        if sockets is not None:
            raise ValueError("LimitedServer listens on config.host and config.port only")
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        settings, config = self.settings, self.config
        open_files = raise_open_file_limit()
        self.connections.cap = connection_cap(settings.max_connections, open_files)
        self.report.context = {"max_connections": self.connections.cap}
        log.info(
            "connection_limits",
            max_connections=self.connections.cap,
            open_files=open_files,
            handshake_timeout=settings.handshake_timeout,
            header_timeout=settings.header_timeout,
            keep_alive_timeout=settings.keep_alive_timeout,
            max_header_bytes=settings.max_header_bytes,
            max_request_bytes=settings.max_request_bytes,
        )
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                functools.partial(self._accept, loop),
                host=config.host,
                port=config.port,
                backlog=config.backlog,
            )
        except OSError as exc:
            logging.getLogger("uvicorn.error").error(exc)
            await self.lifespan.shutdown()
            sys.exit(STARTUP_FAILURE)
        self.servers = [server]
        self._log_started_message(server.sockets)
        self.started = True

    def _accept(self, loop: asyncio.AbstractEventLoop) -> TLSConnection:
        http = LimitedHttp(self.config, self.server_state, self.lifespan.state, loop, self.settings)
        context = self.config.ssl
        assert isinstance(context, ssl.SSLContext)
        return TLSConnection(loop, http, context, self.connections, self.settings)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.connections.close_fresh()  # nothing to wait for on those
        await super().shutdown(sockets)
        self.report.flush()
        logs.flush()  # the loop is done: nothing else writes out what was logged since
