"""ECR API calls per 1,000 admissions of the same image (``imageSwapPolicy: exists``).

The ECR API is moto in server mode on loopback (``tests/moto_ecr.py``); swapper's ECR target
talks to it through ``endpointUrl`` exactly as it talks to AWS, and every request its boto3
client sends is counted with a botocore event hook (retries would count too). Each admission
is a real AdmissionReview through swapper's
:class:`~swapper.admission.app.AdmissionHandler`, 20 at a time (a burst of pods of one
Deployment), the pod having one container with the image.

Scenarios:

- ``no cache``: the bare ECR target answers every existence check (``imageCopyPolicy: none``,
  the image already in the mirror): what the existence cache saves.
- ``cache, burst``: the target behind :class:`~swapper.targets.cache.ExistenceCache` as
  ``swapper serve`` wires it, all admissions at once.
- ``cache, 10 min``: the same, with the 1,000 admissions spread over 10 simulated minutes
  (50 bursts of 20, 12 s apart, on a fake clock): one ``DescribeImages`` per ``ttl`` (60 s,
  ±10% jitter) is the target.
- ``first sighting, copy``: the whole ``swapper serve`` wiring
  (:func:`swapper.wiring.build_backends`) with ``imageCopyPolicy: delayed`` and an image the
  mirror does not have yet: the first
  admission finds it missing and queues the copy (the repository is created, the token fetched,
  the image pushed with it into a real ``docker-registry`` standing in for the ECR data plane
  through ``registryHost``); the other 999 admissions come once the copy has landed and swap
  from the cache.

    .venv/bin/python -m benchmarks.ecr_calls [--admissions 1000]

Prints a markdown table and writes it to ``benchmarks/out/ecr_calls.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import stop_servers_on_sigterm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from moto_ecr import ACCOUNT, ENV, REGION, CallLog, MotoServer, running_moto  # noqa: E402

from swapper import logs  # noqa: E402
from swapper.admission.app import AdmissionHandler  # noqa: E402
from swapper.admission.review import parse_review  # noqa: E402
from swapper.backends import Backends  # noqa: E402
from swapper.config import Config, load_config  # noqa: E402
from swapper.images import parse, target_reference  # noqa: E402
from swapper.metrics import Metrics  # noqa: E402
from swapper.mirror.memory import MemoryCopyQueue  # noqa: E402
from swapper.mirror.queue import CopyQueue  # noqa: E402
from swapper.targets.base import TargetRegistry  # noqa: E402
from swapper.targets.cache import ExistenceCache  # noqa: E402
from swapper.targets.ecr import ECRTarget  # noqa: E402

BURST = 20
OPERATIONS = ("DescribeImages", "CreateRepository", "GetAuthorizationToken")


@dataclass
class Row:
    scenario: str
    admissions: int
    swapped: int
    calls: dict[str, int]
    seconds: float

    def cells(self) -> list[str]:
        total = sum(self.calls.values())
        other = total - sum(self.calls.get(op, 0) for op in OPERATIONS)
        per_1000 = total * 1000 / self.admissions
        return [
            self.scenario,
            str(self.admissions),
            str(self.swapped),
            *(str(self.calls.get(op, 0)) for op in OPERATIONS),
            str(other),
            f"{per_1000:g}",
            f"{self.seconds:.2f}",
        ]


def review(image: str, n: int) -> bytes:
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": f"uid-{n}",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"web-{n}", "namespace": "shop"},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
            "dryRun": False,
        },
    }
    return json.dumps(body).encode()


def config_for(
    moto: MotoServer, copy: str, mirror: dict[str, Any] | None = None, **aws: Any
) -> Config:
    return load_config(
        {
            "imageSwapPolicy": "exists",
            "imageCopyPolicy": copy,
            "source": {"checkAccess": False, "podPullSecrets": False},
            "target": {
                "type": "aws",
                "aws": {
                    "accountId": ACCOUNT,
                    "region": REGION,
                    "endpointUrl": moto.url,
                    "prefix": "mirror",
                    **aws,
                },
            },
            "mirror": mirror or {},
        }
    )


async def admit(
    config: Config,
    target: TargetRegistry,
    queue: CopyQueue,
    image: str,
    admissions: int,
    between_bursts: Callable[[], None] = lambda: None,
) -> int:
    handler = AdmissionHandler(config, Backends(target, queue))
    swapped = 0
    for start in range(0, admissions, BURST):
        bodies = [review(image, n) for n in range(start, min(start + BURST, admissions))]
        answers = await asyncio.gather(*(handler(parse_review(b)) for b in bodies))
        swapped += sum(1 for a in answers if "patch" in a["response"])
        between_bursts()
    return swapped


async def existence(moto: MotoServer, admissions: int, cached: bool, spread: float) -> Row:
    moto.reset()
    config = config_for(moto, "none")
    assert config.target.aws is not None
    image = "nginx:1.27"
    mirror = target_reference(parse(image), config.target.endpoint)
    ecr = ECRTarget(config.target.aws)
    moto.client().create_repository(repositoryName=parse(mirror).path)
    moto.put_image(parse(mirror).path, "1.27")
    calls = CallLog(ecr.client)
    now = [0.0]
    target: TargetRegistry = ecr
    if cached:
        target = ExistenceCache(
            ecr,
            ttl=config.target.existence_cache.ttl,
            negative_ttl=config.target.existence_cache.negative_ttl,
            clock=lambda: now[0],
        )
    step = spread / max(1, admissions // BURST)

    def tick() -> None:
        now[0] += step

    started = time.perf_counter()
    swapped = await admit(config, target, MemoryCopyQueue(target), image, admissions, tick)
    seconds = time.perf_counter() - started
    await target.aclose()
    if not cached:
        name = "no cache"
    elif spread:
        name = f"cache, {spread / 60:g} min"
    else:
        name = "cache, burst"
    return Row(name, admissions, swapped, dict(calls.calls), seconds)


async def first_sighting(moto: MotoServer, admissions: int, workdir: Path) -> Row:
    from registries import make_image, make_layer, push_image, start_registry

    from swapper.wiring import build_backends

    moto.reset()
    source = start_registry(workdir / "source")
    mirror = start_registry(workdir / "mirror", users={"AWS": f"{ACCOUNT}-auth-token"})
    try:
        push_image(source, "team/app", make_image([make_layer("bench")]), "1.0")
        hosts = {source.host: {"insecure": True}, mirror.host: {"insecure": True}}
        config = config_for(moto, "delayed", {"hosts": hosts}, registryHost=mirror.host)
        assert config.target.aws is not None
        ecr = ECRTarget(config.target.aws)
        calls = CallLog(ecr.client)
        metrics = Metrics()
        backends = build_backends(config, ecr, metrics)
        image = f"{source.host}/team/app:1.0"
        started = time.perf_counter()
        swapped = await admit(config, backends.target, backends.queue, image, 1)
        async with asyncio.timeout(60):
            await copies_settled(metrics)
        swapped += await admit(config, backends.target, backends.queue, image, admissions - 1)
        seconds = time.perf_counter() - started
        await backends.queue.aclose()
        await backends.target.aclose()
        for close in backends.closers:
            await close()
        return Row("first sighting, copy", admissions, swapped, dict(calls.calls), seconds)
    finally:
        mirror.stop()
        source.stop()


async def copies_settled(metrics: Metrics) -> None:
    """Wait until the copy queued by the first admission has finished (or failed)."""
    while True:
        finished = {
            sample.name: sample.value
            for counter in (metrics.copies_succeeded, metrics.copies_failed)
            for family in counter.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        }
        if finished.get("swapper_copies_failed_total"):
            raise RuntimeError("the copy failed")
        if finished.get("swapper_copies_succeeded_total"):
            return
        await asyncio.sleep(0.02)


def table(rows: list[Row]) -> str:
    head = ["scenario", "admissions", "swapped", *OPERATIONS, "other", "ECR calls / 1,000", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


async def run(admissions: int) -> list[Row]:
    with running_moto() as moto, tempfile.TemporaryDirectory() as tmp:
        return [
            await existence(moto, admissions, cached=False, spread=0),
            await existence(moto, admissions, cached=True, spread=0),
            await existence(moto, admissions, cached=True, spread=600),
            await first_sighting(moto, admissions, Path(tmp)),
        ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--admissions", type=int, default=1000)
    args = parser.parse_args()
    stop_servers_on_sigterm()
    os.environ.update(ENV)  # dummy credentials; nothing of the machine's AWS set-up
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    devnull = open(os.devnull, "wb")  # noqa: SIM115
    logs.configure("warn", "json", stream=devnull)
    rows = asyncio.run(run(args.admissions))
    devnull.close()
    text = (
        "ECR API calls per admissions of one image, imageSwapPolicy: exists "
        "(existence cache ttl 60s, negativeTtl 5s)\n\n" + table(rows) + "\n"
    )
    print(text)
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ecr_calls.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
