"""The client: a request sent to any origin, redirects followed, through the pools."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, Mapping
from typing import Protocol
from urllib.parse import SplitResult, urljoin, urlsplit

from swapper.errors import (
    ConnectError,
    Disconnected,
    RedirectError,
    WriteError,
)
from swapper.oci._http.connection import Connection
from swapper.oci._http.framing import (
    BODY_HEADERS,
    MAX_REDIRECTS,
    REDIRECTS,
    Response,
    Timeout,
    discard,
    send_body,
)
from swapper.oci._http.pool import Origin, Pool
from swapper.oci._http.proxy import environment_proxy_url, host_port, parse_proxy


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
        self._pools: dict[Origin, Pool] = {}

    def _pool(self, origin: Origin) -> Pool:
        pool = self._pools.get(origin)
        if pool is None:
            scheme, host, port = origin
            proxy_url = (
                environment_proxy_url(scheme, host_port(host, port)) if self.trust_env else None
            )
            proxy = parse_proxy(proxy_url) if proxy_url else None
            pool = self._pools[origin] = Pool(
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
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._send_once(method, url, request_headers, content)
            status = response.status_code
            location = response.headers.get("location")
            if not (follow_redirects and status in REDIRECTS and location):
                return response
            await discard(response)
            target = urljoin(url, location)
            if _origin(target) != _origin(url):
                request_headers = {
                    k: v for k, v in request_headers.items() if k.lower() != "authorization"
                }
            if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                method, content = "GET", None
                request_headers = {
                    k: v for k, v in request_headers.items() if k.lower() not in BODY_HEADERS
                }
            elif content is not None and not isinstance(content, bytes):
                raise RedirectError(
                    f"{status} redirect of {method} {_no_query(url)} to {_no_query(target)}: "
                    "the request body was streamed and cannot be sent again"
                )
            url = target
        raise RedirectError(f"more than {MAX_REDIRECTS} redirects")

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
        lines.append(host_port(host, port) if port != default_port else _bracket(host))
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
        pool: Pool,
        connection: Connection,
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
                    await send_body(connection, content, chunked, timeout.write)
        except WriteError:
            # The server may have answered and closed early (a refusal): read that answer.
            if not connection.has_unread:
                raise
        status, version, headers = await connection.read_head(timeout.read)
        return Response(pool, connection, method, url, status, version, headers, timeout.read)


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
