"""Copy benchmark: swapper's copy engine side by side with ``skopeo copy --all --preserve-digests``.

Both copy the same images from one source ``docker-registry`` (TLS, its own CA) into a target
registry (TLS, another CA) started fresh for every single copy, so neither tool can skip or
mount anything it saw before (skopeo keeps a blob-location cache across runs; a new registry is
a new host to it). Each copy is a whole process timed from start to exit, as a user sees it:
skopeo, and for swapper a Python process that imports ``swapper.oci`` and copies (``--run``
below; the ``swapper mirror`` command will do the same). Rounds alternate which tool goes
first; the table shows medians. Peak RSS and CPU time come from ``wait4`` on each process.

Scenarios:

- ``multi-arch small``: an OCI index, linux/amd64 + linux/arm64, 6 layers of 256 KiB each;
- ``single 100 MiB``: one manifest with one 100 MiB layer;
- ``multi-arch 200 MiB``: an OCI index, 2 platforms x 6 layers of ~16.7 MiB (issue 3's case).

Layers hold random data (it does not compress, as most real layers do not compress further).

    .venv/bin/python -m benchmarks.copy [--rounds 5] [--plain] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def run_engine(argv: list[str]) -> int:
    """The engine process: ``--run SOURCE TARGET [--ca HOST=FILE]... [--plain-host HOST]...``."""
    import asyncio  # only what a copy needs is imported in this mode

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", nargs=2, metavar=("SOURCE", "TARGET"), required=True)
    parser.add_argument("--ca", action="append", default=[])
    parser.add_argument("--plain-host", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=6)
    args = parser.parse_args(argv)

    from swapper.oci import CopyEngine, HostConfig, RegistryClient

    hosts = {host: HostConfig(plain_http=True) for host in args.plain_host}
    for item in args.ca:
        host, _, ca_file = item.partition("=")
        hosts[host] = HostConfig(ca_file=ca_file)

    async def main() -> dict[str, Any]:
        async with RegistryClient(hosts=hosts) as client:
            engine = CopyEngine(client, max_concurrent_blobs=args.concurrency)
            started = time.perf_counter()
            result = await engine.copy(*args.run)
            copy_seconds = time.perf_counter() - started
            again = await engine.copy(*args.run)
            return {
                "peak_kib": _peak_kib(),
                "copy": copy_seconds,
                "present": again.duration,
                "already_present": again.already_present,
                "bytes": result.bytes_copied,
                "digest": result.digest,
                "source_digest": result.source_digest,
            }

    try:
        import uvloop

        outcome = uvloop.run(main())
    except ImportError:
        outcome = asyncio.run(main())
    print(json.dumps(outcome))
    return 0


def _peak_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mib: float
    extra: dict[str, Any]


def timed(command: list[str], env: dict[str, str] | None = None) -> Sample:
    """Run ``command``: wall time, CPU time (user + system) and peak RSS of that process.

    Peak RSS is ``VmHWM`` read from ``/proc`` while the process runs: ``ru_maxrss`` of a child
    would include this (large) parent's memory, which a child keeps until it calls exec.
    """
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env or os.environ.copy(),
    )
    assert process.stdout is not None and process.stderr is not None
    status_file = Path(f"/proc/{process.pid}/status")
    peak_kib = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        try:
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kib = max(peak_kib, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.002)
    wall = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({process.returncode}):\n{err.decode()}")
    extra = json.loads(out) if out.strip().startswith(b"{") else {}
    peak_kib = max(peak_kib, extra.get("peak_kib", 0))
    return Sample(wall, usage.ru_utime + usage.ru_stime, peak_kib / 1024, extra)


def main() -> int:
    if "--run" in sys.argv:
        return run_engine(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--plain", action="store_true", help="plain HTTP instead of TLS")
    parser.add_argument("--only", help="run one scenario (substring of its name)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    import registries as r

    skopeo = shutil.which("skopeo")
    if skopeo is None:
        print("skopeo is not installed (apt-get install skopeo)", file=sys.stderr)
        return 1
    tls = not args.plain

    with tempfile.TemporaryDirectory(prefix="swapper-copy-bench-") as tmp_name:
        tmp = Path(tmp_name)
        source = r.start_registry(tmp / "source", tls=tls)
        try:
            scenarios = build_scenarios(r, source, tmp)
            if args.only:
                scenarios = {k: v for k, v in scenarios.items() if args.only in k}
            rows = []
            for name, (reference, total) in scenarios.items():
                results: dict[str, list[Sample]] = {"swapper": [], "skopeo": []}
                for round_ in range(args.rounds):
                    order = ["swapper", "skopeo"] if round_ % 2 == 0 else ["skopeo", "swapper"]
                    for tool in order:
                        workdir = tmp / f"target-{name[:5]}-{round_}-{tool}"
                        target = r.start_registry(workdir, tls=tls)
                        try:
                            results[tool].append(
                                copy_once(tool, skopeo, source, target, reference, tls)
                            )
                        finally:
                            target.stop()
                            shutil.rmtree(target.workdir, ignore_errors=True)
                rows.append((name, total, results))
                print(f"{name}: done", file=sys.stderr)
        finally:
            source.stop()
    print(table(rows, args.rounds, tls))
    return 0


def build_scenarios(r: Any, source: Any, tmp: Path) -> dict[str, tuple[str, int]]:
    """Push the images to the source; name -> (repository:tag, total blob bytes)."""
    scenarios: dict[str, tuple[str, int]] = {}
    platforms = ("linux/amd64", "linux/arm64")

    seeds = iter(range(1_000_000))

    def layers(prefix: str, count: int, size: int) -> list[Any]:
        name = prefix.replace("/", "-")
        return [
            r.make_big_layer(tmp / f"{name}-{i}.tar.gz", size, seed=next(seeds))
            for i in range(count)
        ]

    small = r.make_index([r.make_image(layers(f"small-{p}", 6, 256 * 1024), p) for p in platforms])
    r.push_index(source, "bench/small", small, "1")
    scenarios["multi-arch small (2 x 6 x 256 KiB)"] = ("bench/small:1", _total(small.images))

    big = r.make_image(layers("big", 1, 100 * MiB))
    r.push_image(source, "bench/big", big, "1")
    scenarios["single 100 MiB layer"] = ("bench/big:1", _total([big]))

    large = r.make_index(
        [r.make_image(layers(f"large-{p}", 6, 200 * MiB // 12), p) for p in platforms]
    )
    r.push_index(source, "bench/large", large, "1")
    scenarios["multi-arch 200 MiB (2 x 6 x 16.7 MiB)"] = ("bench/large:1", _total(large.images))
    return scenarios


def _total(images: list[Any]) -> int:
    return sum(blob.size for image in images for blob in image.blobs)


def copy_once(
    tool: str, skopeo: str, source: Any, target: Any, reference: str, tls: bool
) -> Sample:
    src = f"{source.host}/{reference}"
    dst = f"{target.host}/mirror/{reference}"
    if tool == "skopeo":
        command = [skopeo, "copy", "--all", "--preserve-digests", "--quiet"]
        if tls:
            command += ["--src-cert-dir", str(source.cert_dir)]
            command += ["--dest-cert-dir", str(target.cert_dir)]
        else:
            command += ["--src-tls-verify=false", "--dest-tls-verify=false"]
        return timed([*command, f"docker://{src}", f"docker://{dst}"])
    command = [sys.executable, "-m", "benchmarks.copy", "--run", src, dst]
    for registry in (source, target):
        if tls:
            command += ["--ca", f"{registry.host}={registry.ca_file}"]
        else:
            command += ["--plain-host", registry.host]
    sample = timed(command, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if sample.extra["digest"] != sample.extra["source_digest"]:
        raise RuntimeError(f"digest changed: {sample.extra}")
    return sample


def table(rows: list[tuple[str, int, dict[str, list[Sample]]]], rounds: int, tls: bool) -> str:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    lines = [
        f"Copy benchmark ({'TLS' if tls else 'plain HTTP'}, {rounds} rounds, medians; "
        f"{os.cpu_count()} CPUs; fresh target registry per copy)",
        "",
        "| image | size | swapper (process) | swapper (copy only) | skopeo | ratio "
        "| swapper CPU | skopeo CPU | swapper peak RSS | skopeo peak RSS | re-copy, present |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, total, results in rows:
        ours, theirs = results["swapper"], results["skopeo"]
        wall = med([s.wall for s in ours])
        other = med([s.wall for s in theirs])
        lines.append(
            f"| {name} | {total / MiB:.1f} MiB | {wall:.2f} s "
            f"| {med([s.extra['copy'] for s in ours]):.2f} s | {other:.2f} s "
            f"| {wall / other:.2f}x | {med([s.cpu for s in ours]):.2f} s "
            f"| {med([s.cpu for s in theirs]):.2f} s | {med([s.rss_mib for s in ours]):.0f} MiB "
            f"| {med([s.rss_mib for s in theirs]):.0f} MiB "
            f"| {med([s.extra['present'] for s in ours]) * 1000:.0f} ms |"
        )
    lines += [
        "",
        "ratio = swapper process wall time / skopeo's (below 1: swapper is faster). "
        "'copy only' excludes interpreter start-up and imports. 're-copy, present' is a second "
        "copy of the same image by the same engine: the target already has it.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
