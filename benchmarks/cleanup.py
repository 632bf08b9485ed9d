"""``make bench``: one cleanup pass over 5,000 mirrored tags in a real registry.

A Debian ``docker-registry`` (deletes on, access log on) holds ``--repositories`` (50)
repositories of ``--tags`` (100) tags each under swapper's prefix ``m/``, every tag a manifest
of its own (one shared layer). Cluster ``alpha`` marked every image 40 days ago; cluster ``beta``
marked every fifth image just now; this cluster's pods run every tenth image. So a pass keeps
the images in use (``in-use``), those ``beta`` marked (``young-mark``) and deletes the rest, up to
``cleanup.maxDeletes`` (1,000) per pass.

Two passes are measured, each alone: a dry run (judges every image, deletes nothing), then a
real pass. For each: wall time, the registry requests it made (access-log lines), and the peak
of Python memory allocated during the pass (``tracemalloc``).

    .venv/bin/python -m benchmarks.cleanup [--repositories 50] [--tags 100]

Prints a markdown table and writes it to ``benchmarks/out/cleanup.md`` (``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks import stop_servers_on_sigterm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from registries import (  # noqa: E402
    OCI_MANIFEST,
    Registry,
    make_image,
    make_layer,
    push_blob,
    push_manifest,
    start_registry,
)

from swapper.config import GenericRegistry  # noqa: E402
from swapper.controller.cleanup import Cleanup, CleanupOptions  # noqa: E402
from swapper.metrics import Metrics  # noqa: E402
from swapper.mirror.marks import Marker, OCIMarkStore  # noqa: E402
from swapper.oci import HostConfig, RegistryClient  # noqa: E402
from swapper.targets.generic import GenericTarget  # noqa: E402


def fill(registry: Registry, repositories: int, tags: int) -> list[tuple[str, str]]:
    """Push the images; returns (repository, tag) for each."""
    base = make_image([make_layer("cleanup-bench")])
    made: list[tuple[str, str]] = []

    def repository(r: int) -> list[tuple[str, str]]:
        repo = f"m/docker.io/bench/app{r:03d}"
        done = []
        with registry.client() as client:
            push_blob(client, repo, base.config)
            push_blob(client, repo, base.layers[0])
            for t in range(tags):
                manifest = json.loads(base.data)
                manifest["annotations"] = {"n": f"{r}-{t}"}
                data = json.dumps(manifest).encode()
                push_manifest(client, repo, f"1.{t}", data, OCI_MANIFEST)
                done.append((repo, f"1.{t}"))
        return done

    with ThreadPoolExecutor(8) as pool:
        for done in pool.map(repository, range(repositories)):
            made.extend(done)
    return made


async def mark(
    cluster: str, store: OCIMarkStore, admin: GenericTarget, when: datetime, images: list
) -> None:
    """Each image marked by ``cluster`` at ``when``: repositories 8 at a time, one image at a
    time within a repository, as the marks loop does (docker-registry refuses concurrent
    pushes of one blob into one repository now and then)."""
    marker = Marker(cluster, store, admin, clock=lambda: when)
    by_repository: dict[str, list[str]] = {}
    for repo, tag in images:
        by_repository.setdefault(repo, []).append(tag)
    gate = asyncio.Semaphore(8)

    async def one(repo: str, tags: list[str]) -> None:
        async with gate:
            for tag in tags:
                await marker.mark(repo, tag)

    await asyncio.gather(*(one(repo, tags) for repo, tags in by_repository.items()))


def requests_since(registry: Registry, start: int) -> int:
    lines = registry.logs().splitlines()[start:]
    return sum(
        1
        for line in lines
        if '"GET /v2' in line or '"HEAD /v2' in line or '"DELETE /v2' in line or '"PUT /v2' in line
    )


async def measure(args: argparse.Namespace) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        registry = start_registry(Path(tmp) / "registry", access_log=True)
        try:
            started = time.monotonic()
            images = fill(registry, args.repositories, args.tags)
            rows.append(("tags pushed", f"{len(images):,} in {time.monotonic() - started:.1f} s"))
            endpoint = f"{registry.host}/m"
            admin = GenericTarget(GenericRegistry(registry=endpoint, insecure=True))
            client = RegistryClient(hosts={registry.host: HostConfig(plain_http=True)})
            store = OCIMarkStore(client, registry.host)
            now = datetime.now(UTC)
            started = time.monotonic()
            await mark("alpha", store, admin, now - timedelta(days=40), images)
            await mark("beta", store, admin, now, images[::5])
            rows.append(("marks written (alpha all, beta every fifth)",
                         f"{len(images) + len(images[::5]):,} in "
                         f"{time.monotonic() - started:.1f} s"))  # fmt: skip
            in_use = [f"{registry.host}/{repo}:{tag}" for repo, tag in images[::10]]
            for dry_run in (True, False):
                cleanup = Cleanup(
                    admin,
                    Marker("gamma", store, admin),
                    lambda: in_use,
                    lambda _: False,
                    Metrics(),
                    CleanupOptions(retention=30 * 86_400, dry_run=dry_run),
                )
                logged = len(registry.logs().splitlines())
                tracemalloc.start()
                started = time.monotonic()
                report = await cleanup.run_pass()
                took = time.monotonic() - started
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                await asyncio.sleep(0.5)  # the registry's last access-log lines
                asked = requests_since(registry, logged)
                done = len(report.would_delete) if dry_run else len(report.deleted)
                kept = ", ".join(f"{k} {v:,}" for k, v in sorted(report.kept.items()))
                rows.append((
                    f"{'dry-run' if dry_run else 'real'} pass over {len(images):,} tags",
                    f"{took:.1f} s, {asked:,} registry requests, peak {peak / 2**20:.1f} MiB "
                    f"allocated; {'would delete' if dry_run else 'deleted'} {done:,}; kept: "
                    f"{kept}",
                ))  # fmt: skip
            await client.aclose()
            await admin.aclose()
        finally:
            registry.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repositories", type=int, default=50)
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "out" / "cleanup.md")
    args = parser.parse_args()
    stop_servers_on_sigterm()
    rows = asyncio.run(measure(args))
    table = ["| measure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]
    text = "\n".join(table) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
