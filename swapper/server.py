"""Run the app on uvicorn over TLS, with the certificate pair reloaded when it changes on disk."""

from __future__ import annotations

import gc
import ssl
from typing import Any

import uvicorn

from swapper.app import create_app
from swapper.backends import Backends
from swapper.config import Config, ServerSettings, split_address
from swapper.connections import LimitedServer
from swapper.metrics import Metrics
from swapper.mirror.queue import CopyQueue
from swapper.targets.base import TargetRegistry
from swapper.tls import CertificateReloader, server_context
from swapper.wiring import build_backends


class TLSServerConfig(uvicorn.Config):
    """uvicorn builds its SSL context from file names once; hand it ours instead, so the
    reloader can load a rotated pair into the same context that serves new handshakes
    (:class:`~swapper.connections.LimitedServer` wraps each connection in it)."""

    def __init__(self, app: Any, context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._context = context

    def load(self) -> None:
        super().load()
        self.ssl = self._context


def build_server(
    config: Config,
    target: TargetRegistry,
    queue: CopyQueue | None = None,
    reload_interval: float = 10.0,
    metrics: Metrics | None = None,
) -> uvicorn.Server:
    context = server_context(config.tls_cert_file, config.tls_key_file)
    metrics = metrics or Metrics()
    reloader = CertificateReloader(
        context, config.tls_cert_file, config.tls_key_file, interval=reload_interval
    )

    def on_reload() -> None:
        metrics.certificate_reloads.inc()
        if reloader.not_after is not None:
            metrics.certificate_expiry.set(reloader.not_after.timestamp())

    reloader.on_reload = on_reload
    if reloader.not_after is not None:
        metrics.certificate_expiry.set(reloader.not_after.timestamp())
    if queue is None:
        backends = build_backends(config, target, metrics)
        backends.background.insert(0, reloader)
    else:
        backends = Backends(target=target, queue=queue, metrics=metrics, background=[reloader])
    return uvicorn_server(
        create_app(config, backends), context, config.listen_address, config.server, metrics
    )


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


def serve(config: Config, target: TargetRegistry, reload_interval: float = 10.0) -> None:
    build_server(config, target, reload_interval=reload_interval).run()
