"""``swapper serve``: the process that puts the two halves together.

It builds the backends from the config (:mod:`swapper.wiring`), the admission app over TLS
(:mod:`swapper.admission`), and runs them until a signal. Every long-running task runs under
one :class:`~swapper.supervisor.Supervisor`: the certificate reloader, the backends' tasks, and
the config reloader (:mod:`swapper.reload`) when the config came from a file; a reloaded config
goes to the :class:`~swapper.reload.Subscribers` built here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import uvicorn

from swapper import logs
from swapper.admission.app import AdmissionHandler, create_app
from swapper.admission.server import uvicorn_server
from swapper.backends import Backends
from swapper.config import Config
from swapper.logs import get_logger
from swapper.metrics import Metrics
from swapper.mirror.queue import CopyQueue
from swapper.reload import ConfigReloader, Subscribers
from swapper.supervisor import Supervisor, TaskSpec
from swapper.targets.base import TargetRegistry
from swapper.tls import CertificateReloader, server_context
from swapper.wiring import build_backends, kube_or_warn

log = get_logger("swapper.serve")

CERTIFICATE_RELOADER = "certificate-reloader"
CONFIG_RELOADER = "config-reload"

Extension = Callable[[Backends, Supervisor, Subscribers], Sequence[TaskSpec]]
"""What :func:`build_server` calls to add a part (the controller): see there."""


def set_log_level(config: Config) -> None:
    """Apply a reloaded ``logLevel`` (:func:`swapper.logs.set_level`)."""
    logs.set_level(config.log_level)


def controller_part(config: Config) -> Extension | None:
    """The cluster half (:class:`~swapper.controller.runner.Controller`) when
    ``controller.enabled`` and a Kubernetes API is reachable: the leader election on every
    replica, the pod watch and the backfill on the leader. None otherwise (with a log line)."""
    if not config.controller.enabled:
        return None
    api = kube_or_warn(
        None, "controller_unavailable", "no leader election, no backfill; admission as before"
    )
    if api is None:
        return None

    def part(backends: Backends, supervisor: Supervisor, on_config: Subscribers) -> list[TaskSpec]:
        from swapper.controller.runner import Controller
        from swapper.kube import own_namespace
        from swapper.kube.leases import KubeLeaseStore, identity

        store = KubeLeaseStore(api, own_namespace())
        controller = Controller(config, backends, api, supervisor, store, identity())
        on_config.add(controller.reconfigure)
        return controller.tasks()

    return part


def build_server(
    config: Config,
    target: TargetRegistry,
    queue: CopyQueue | None = None,
    reload_interval: float = 10.0,
    metrics: Metrics | None = None,
    config_path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    config_interval: float = 2.0,
    tasks: Sequence[TaskSpec] = (),
    extend: Extension | None = None,
) -> uvicorn.Server:
    """``config_path``: the file ``config`` was read from (``overrides`` over it), watched for
    changes every ``config_interval`` seconds; None or ``-``: no reload.

    ``tasks`` run under the supervisor after the backends' own; ``extend`` (the controller) is
    called with the backends, the supervisor and the reloaded-config subscribers once they are
    built, and returns more tasks to run (it may add a subscriber with ``on_config.add``).
    """
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
    certificates = TaskSpec(CERTIFICATE_RELOADER, reloader.run, critical=True)
    if queue is None:
        backends = build_backends(config, target, metrics)
        backends.background.insert(0, certificates)
    else:
        backends = Backends(target=target, queue=queue, metrics=metrics, background=[certificates])
    supervisor = Supervisor(metrics, config.supervisor)
    handler = AdmissionHandler(config, backends)
    # Whatever takes a reloaded config; the controller joins with ``on_config.add``.
    on_config = Subscribers(handler.reconfigure, set_log_level)
    backends.background.extend(tasks)
    if extend is None and queue is None:
        extend = controller_part(config)
    if extend is not None:
        backends.background.extend(extend(backends, supervisor, on_config))
    if config_path is not None and config_path != "-":
        watcher = ConfigReloader(
            config_path, config, on_config, metrics, config_interval, overrides
        )
        backends.background.append(TaskSpec(CONFIG_RELOADER, watcher.run))
    return uvicorn_server(
        create_app(config, backends, supervisor, handler),
        context,
        config.listen_address,
        config.server,
        metrics,
    )


def serve(
    config: Config,
    target: TargetRegistry,
    reload_interval: float = 10.0,
    config_path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    tasks: Sequence[TaskSpec] = (),
    extend: Extension | None = None,
) -> None:
    build_server(
        config,
        target,
        reload_interval=reload_interval,
        config_path=config_path,
        overrides=overrides,
        tasks=tasks,
        extend=extend,
    ).run()
