"""The swapper runner of ``benchmarks/fleet.py``: the fleet copied by ``swapper serve``'s own
copy queue, driven the way the controller's backfill drives it.

The config is built into backends exactly as ``swapper serve`` builds them
(:func:`swapper.wiring.build_backends`: one ``RegistryClient``, one ``CopyEngine``, the
``WorkerQueue`` at its default workers), on uvloop as ``swapper serve`` runs. One scan of
:class:`~swapper.controller.backfill.Backfill` over "pods" running the fleet's images checks
each target and submits every missing one at backfill priority; this process then waits until
no copy is queued or running, and exits non-zero when a copy failed.

    python -m benchmarks.fleet_swapper CONFIG JOBS

``JOBS``: a file of ``SOURCE TARGET`` lines (full references; the target under
``target.generic.registry``).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from swapper import logs
from swapper.cli import build_target
from swapper.config import load_config_file
from swapper.controller.backfill import Backfill
from swapper.images import parse
from swapper.metrics import Metrics
from swapper.mirror.queue import CopyJob
from swapper.mirror.workers import WorkerQueue
from swapper.wiring import build_backends

POLL = 0.05  # seconds between looks at the queue
DEADLINE = 3600.0  # the whole fleet, at most


async def main(config_path: str, lines: list[str]) -> int:
    config = load_config_file(config_path)
    logs.configure(config.log_level)
    metrics = Metrics()
    backends = build_backends(config, build_target(config), metrics, kube=None)
    queue = backends.queue
    assert isinstance(queue, WorkerQueue)
    endpoint = config.target.endpoint.split("/", 1)[0]
    jobs = []
    for line in lines:
        source, target = line.split()
        repository = parse(target).path
        assert target.startswith(endpoint + "/"), target
        jobs.append(CopyJob(parse(source), target, repository, namespace="fleet"))
    backfill = Backfill(
        lambda: [(job,) for job in jobs],
        lambda: 0,
        backends.target,
        queue,
        backends.access,
        metrics,
        copies=True,
    )
    try:
        async with asyncio.timeout(DEADLINE):
            states = await backfill.scan()
            while (  # noqa: ASYNC110 - the queue has no "all done" event: polled
                queue.queued_backfill
                or queue.queued
                or any(queue.copying(job.target) for job in jobs)
            ):
                await asyncio.sleep(POLL)
    finally:
        await queue.aclose()
        for close in backends.closers:
            await close()
    failed = 0.0
    for sample in metrics.copies_failed.collect()[0].samples:
        failed += sample.value if sample.name.endswith("_total") else 0.0
    print(f"backfill: {states}; failed copies: {failed:.0f}", file=sys.stderr)
    return 1 if failed or states.get("queued", 0) + states.get("present", 0) != len(jobs) else 0


if __name__ == "__main__":
    import uvloop  # the event loop swapper serve runs on (uvicorn's loop="uvloop")

    sys.exit(uvloop.run(main(sys.argv[1], Path(sys.argv[2]).read_text().splitlines())))
