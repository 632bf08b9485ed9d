"""``swapper serve``: the process that puts the two halves together.

It builds the backends from the config (:mod:`swapper.wiring`), the admission app over TLS
(:mod:`swapper.admission`), and runs them until a signal.
"""

from __future__ import annotations

import uvicorn

from swapper.admission.app import create_app
from swapper.admission.server import uvicorn_server
from swapper.backends import Backends
from swapper.config import Config
from swapper.metrics import Metrics
from swapper.mirror.queue import CopyQueue
from swapper.targets.base import TargetRegistry
from swapper.tls import CertificateReloader, server_context
from swapper.wiring import build_backends


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


def serve(config: Config, target: TargetRegistry, reload_interval: float = 10.0) -> None:
    build_server(config, target, reload_interval=reload_interval).run()
