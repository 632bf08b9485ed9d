"""``swapper serve``'s backends, as :func:`swapper.wiring.build_backends` hands them to the app."""

from __future__ import annotations

from swapper.config import load_config
from swapper.metrics import Metrics
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
