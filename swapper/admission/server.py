"""uvicorn over TLS for the admission app: swapper's runtime tuning, connection limits, and an SSL
context the certificate reloader can swap pairs in (:mod:`swapper.serve` builds the process)."""

from __future__ import annotations

import gc
import ssl
from typing import Any

import uvicorn

from swapper.admission.connections import LimitedServer
from swapper.config import ServerSettings, split_address
from swapper.metrics import Metrics


class TLSServerConfig(uvicorn.Config):
    """uvicorn builds its SSL context from file names once; hand it ours instead, so the
    reloader can load a rotated pair into the same context that serves new handshakes
    (:class:`~swapper.admission.connections.LimitedServer` wraps each connection in it)."""

    def __init__(self, app: Any, context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._context = context

    def load(self) -> None:
        super().load()
        self.ssl = self._context


def tune_runtime() -> None:
    """Garbage-collector settings for a request-per-millisecond server.

    Everything allocated at start-up (modules, config, compiled filters) is moved out of the
    collector's sight with ``gc.freeze()``, and the young generation is collected every 10,000
    allocations instead of 700: each admission allocates a few thousand short-lived objects,
    and the default threshold ran a collection several times per request (about a quarter of
    the handler's time in ``make bench``). Reference counting still frees almost everything at
    once; only cycles wait a little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


def uvicorn_server(
    app: Any,
    context: ssl.SSLContext,
    listen_address: str,
    settings: ServerSettings | None = None,
    metrics: Metrics | None = None,
) -> uvicorn.Server:
    """The uvicorn settings swapper runs with (also used by the benchmark's bare endpoint):
    the connection deadlines, the header limit and the connection cap of ``settings``
    (``server`` in the config; the defaults when not given), counted in ``metrics``."""
    tune_runtime()
    host, port = split_address(listen_address)
    config = TLSServerConfig(
        app,
        context,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=15,
    )
    return LimitedServer(config, settings or ServerSettings(), metrics or Metrics())
