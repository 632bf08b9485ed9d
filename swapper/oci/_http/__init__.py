"""A small HTTP/1.1 client on asyncio: what registry traffic needs, and nothing per byte.

Why not httpx (which the engine used first): a blob went through five layers (asyncio streams,
httpcore, h11, httpx, the engine), each with its own buffer copy or Python round trip per chunk,
and importing httpx costs about 75 ms of the ``swapper mirror`` start-up (its command-line
module pulls in click and rich when they are installed). Here a response body is the chunks the
event loop hands to :class:`Connection` (a plain :class:`asyncio.Protocol`), passed on as they
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

Modules: :mod:`.framing` (timeouts, headers, bodies, :class:`Response`), :mod:`.connection`
(one connection as an asyncio protocol), :mod:`.pool` (keep-alive connections per origin),
:mod:`.proxy` (proxies from the environment), :mod:`.client` (:class:`HTTPClient` and the
:class:`Transport` protocol :class:`~swapper.oci.RegistryClient` sends through).
"""

from swapper.oci._http.client import HTTPClient, Transport
from swapper.oci._http.framing import Headers, Response, Timeout
from swapper.oci._http.pool import KEEPALIVE_EXPIRY
from swapper.oci._http.proxy import environment_proxy_url

__all__ = [
    "KEEPALIVE_EXPIRY",
    "HTTPClient",
    "Headers",
    "Response",
    "Timeout",
    "Transport",
    "environment_proxy_url",
]
