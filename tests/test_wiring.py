"""``swapper serve``'s backends, as :func:`swapper.wiring.build_backends` hands them to the app."""

from __future__ import annotations

from swapper.config import load_config
from swapper.metrics import Metrics
from swapper.mirror.marks import OCIMarkStore
from swapper.targets.admin import RegistryAdmin
from swapper.targets.memory import MemoryTarget
from swapper.wiring import build_backends

CONFIG = {
    "target": {"type": "generic", "generic": {"registry": "registry.local:5000"}},
    "source": {"podPullSecrets": False, "checkAccess": False},
}


async def test_the_backends_built_for_serve_count_in_the_metrics_they_were_given() -> None:
    config = load_config(CONFIG)
    metrics = Metrics()
    backends = build_backends(config, MemoryTarget(config.target.endpoint), metrics)
    try:
        assert backends.metrics is metrics
    finally:
        await backends.queue.aclose()
        await backends.target.aclose()
        for close in backends.closers:
            await close()


async def test_cleanup_gets_the_mark_store_and_the_targets_admin_only_when_enabled() -> None:
    off = load_config(CONFIG)
    on = load_config({**CONFIG, "clusterName": "prod-eu", "cleanup": {"enabled": True}})
    for config, wanted in ((off, False), (on, True)):
        target = MemoryTarget(config.target.endpoint)
        backends = build_backends(config, target, Metrics())
        try:
            if wanted:
                assert isinstance(backends.marks, OCIMarkStore)
                assert backends.marks.domain == "registry.local:5000"
                assert backends.admin is target  # the target itself, not the existence cache
                assert isinstance(backends.admin, RegistryAdmin)
            else:
                assert backends.marks is None and backends.admin is None
        finally:
            await backends.queue.aclose()
            await backends.target.aclose()
            for close in backends.closers:
                await close()
