"""Copy benchmark: ``swapper mirror`` side by side with ``skopeo copy --all --preserve-digests``.

Both copy the same images from one source ``docker-registry`` (TLS, its own CA) into a target
registry (TLS, another CA) started fresh for every single copy, so neither tool can skip or
mount anything it saw before (skopeo keeps a blob-location cache across runs; a new registry is
a new host to it). Each copy is a whole process timed from start to exit, as a user sees it:
``skopeo copy`` and ``swapper mirror`` (the console script, with its byte-code cached as
``pip install`` and the container image leave it; ``PYTHONDONTWRITEBYTECODE`` is lifted for it
and the cache kept in a temporary folder). Rounds alternate which tool goes first; the table
shows medians. CPU time and peak RSS come from ``wait4`` and ``/proc`` for each process, the
registries' CPU from ``/proc`` around each copy.

Scenarios:

- ``multi-arch 200 MiB``: an OCI index, linux/amd64 + linux/arm64, 6 layers of ~16.7 MiB each
  (issue 3's case: the ratio target);
- ``multi-arch small``: the same shape with 256 KiB layers (start-up dominates);
- ``single 1 GiB layer``: peak RSS of the copying process against the same process's peak
  when it only finds the image present (the memory target); one round.

After each swapper copy the same command runs again: the target has the image now, and that
run's request time (``CopyResult.duration``: HEAD on source and target, connections included)
is the re-copy target. Layers hold random data, generated streaming (never whole in memory).

    .venv/bin/python -m benchmarks.copy [--rounds 7] [--only NAME]

Writes ``benchmarks/out/copy.md`` and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import stop_servers_on_sigterm

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "copy.md"
SWAPPER = ROOT / ".venv" / "bin" / "swapper"
MiB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")
_DURATION = re.compile(r" in (?P<seconds>[0-9.]+)s")

RATIO_TARGET = 0.7
RECOPY_TARGET = 0.050
RSS_TARGET_MIB = 64


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mib: float
    registries_cpu: float = 0.0
    copy: float | None = None  # swapper's own CopyResult.duration
    extra: dict[str, Any] = field(default_factory=dict)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def timed(command: list[str], env: dict[str, str], watch: tuple[int, ...] = ()) -> Sample:
    """Run ``command``: wall time, CPU time (user + system) and peak RSS of that process, and
    the CPU the ``watch`` processes (the registries) used meanwhile.

    Peak RSS is ``VmHWM`` read from ``/proc`` while the process runs: ``ru_maxrss`` of a child
    would include this (large) parent's memory, which a child keeps until it calls exec.
    """
    before = sum(_cpu_seconds(pid) for pid in watch)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
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
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{err.decode()}")
    registries = sum(_cpu_seconds(pid) for pid in watch) - before
    sample = Sample(wall, usage.ru_utime + usage.ru_stime, peak_kib / 1024, registries)
    match = _DURATION.search(out.decode())
    if match:
        sample.copy = float(match["seconds"])
    return sample


class Bench:
    def __init__(self, registries: Any, tmp: Path, skopeo: str) -> None:
        self.r = registries
        self.tmp = tmp
        self.skopeo = skopeo
        self.source = registries.start_registry(tmp / "source", tls=True)
        self.count = 0
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        self.swapper_env = env

    def stop(self) -> None:
        self.source.stop()

    def target(self) -> tuple[Any, Path]:
        self.count += 1
        target = self.r.start_registry(self.tmp / f"target-{self.count}", tls=True)
        bundle = self.tmp / f"bundle-{self.count}.pem"
        bundle.write_bytes(self.source.ca_file.read_bytes() + target.ca_file.read_bytes())
        return target, bundle

    def drop(self, target: Any) -> None:
        target.stop()
        shutil.rmtree(target.workdir, ignore_errors=True)

    def swapper(self, reference: str, target: Any, bundle: Path) -> Sample:
        command = [
            str(SWAPPER),
            "mirror",
            f"{self.source.host}/{reference}",
            f"{target.host}/mirror/{reference}",
            "--ca-file",
            str(bundle),
        ]
        watch = (self.source.process.pid, target.process.pid)
        return timed(command, self.swapper_env, watch)

    def skopeo_copy(self, reference: str, target: Any) -> Sample:
        command = [self.skopeo, "copy", "--all", "--preserve-digests", "--quiet"]
        command += ["--src-cert-dir", str(self.source.cert_dir)]
        command += ["--dest-cert-dir", str(target.cert_dir)]
        command += [f"docker://{self.source.host}/{reference}"]
        command += [f"docker://{target.host}/mirror/{reference}"]
        watch = (self.source.process.pid, target.process.pid)
        return timed(command, dict(os.environ), watch)

    def check(self, reference: str, target: Any) -> None:
        repo, _, tag = reference.partition(":")
        copied = self.r.get_manifest(target, f"mirror/{repo}", tag)
        original = self.r.get_manifest(self.source, repo, tag)
        if copied is None or original is None or copied[0] != original[0]:
            raise RuntimeError(f"{reference}: the target's manifest differs from the source's")

    def round(self, tool: str, reference: str) -> tuple[Sample, Sample | None]:
        """One copy into a fresh target; for swapper also the re-copy (image present)."""
        target, bundle = self.target()
        try:
            if tool == "skopeo":
                sample = self.skopeo_copy(reference, target)
                again = self.skopeo_copy(reference, target)
            else:
                sample = self.swapper(reference, target, bundle)
                again = self.swapper(reference, target, bundle)
            self.check(reference, target)
            return sample, again
        finally:
            self.drop(target)


def build(bench: Bench, only: str | None) -> dict[str, tuple[str, int]]:
    """Push the images to the source; name -> (repository:tag, total blob bytes)."""
    r, tmp, source = bench.r, bench.tmp, bench.source
    scenarios: dict[str, tuple[str, int]] = {}
    platforms = ("linux/amd64", "linux/arm64")
    seeds = iter(range(1_000_000))

    def layers(prefix: str, count: int, size: int) -> list[Any]:
        return [
            r.make_big_layer(tmp / f"{prefix}-{i}.tar.gz", size, seed=next(seeds))
            for i in range(count)
        ]

    def wanted(name: str) -> bool:
        return only is None or only in name

    name = "multi-arch 200 MiB (2 x 6 x 16.7 MiB)"
    if wanted(name):
        images = [
            r.make_image(layers(f"large{i}", 6, 200 * MiB // 12), p)
            for i, p in enumerate(platforms)
        ]
        r.push_index(source, "bench/large", r.make_index(images), "1")
        scenarios[name] = ("bench/large:1", _total(images))
    name = "multi-arch small (2 x 6 x 256 KiB)"
    if wanted(name):
        images = [
            r.make_image(layers(f"small{i}", 6, 256 * 1024), p) for i, p in enumerate(platforms)
        ]
        r.push_index(source, "bench/small", r.make_index(images), "1")
        scenarios[name] = ("bench/small:1", _total(images))
    name = "single 1 GiB layer"
    if wanted(name):
        image = r.make_image(layers("huge", 1, 1024 * MiB))
        r.push_image(source, "bench/huge", image, "1")
        for blob in image.layers:
            assert blob.path is not None
            blob.path.unlink()  # on the source now; keep the disk free
        scenarios[name] = ("bench/huge:1", _total([image]))
    return scenarios


def _total(images: list[Any]) -> int:
    return sum(blob.size for image in images for blob in image.blobs)


def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", help="run one scenario (substring of its name)")
    args = parser.parse_args()
    stop_servers_on_sigterm()
    sys.path.insert(0, str(ROOT / "tests"))
    import registries

    skopeo = shutil.which("skopeo")
    if skopeo is None:
        print("skopeo is not installed (apt-get install skopeo)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="swapper-copy-bench-") as tmp_name:
        bench = Bench(registries, Path(tmp_name), skopeo)
        try:
            scenarios = build(bench, args.only)
            rows: list[tuple[str, int, dict[str, list[tuple[Sample, Sample | None]]]]] = []
            warm = min(scenarios.values(), key=lambda scenario: scenario[1])[0]
            for tool in ("swapper", "skopeo"):  # byte-code cache, page cache: not measured
                bench.round(tool, warm)
            for name, (reference, total) in scenarios.items():
                rounds = 1 if "1 GiB" in name else args.rounds
                results: dict[str, list[tuple[Sample, Sample | None]]] = {
                    "swapper": [],
                    "skopeo": [],
                }
                for index in range(rounds):
                    order = ("swapper", "skopeo") if index % 2 == 0 else ("skopeo", "swapper")
                    for tool in order:
                        results[tool].append(bench.round(tool, reference))
                    print(f"{name}: round {index + 1}/{rounds}", file=sys.stderr)
                rows.append((name, total, results))
        finally:
            bench.stop()
    report = table(rows, args.rounds)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(report + "\n")
    print(report)
    return 0


def table(
    rows: list[tuple[str, int, dict[str, list[tuple[Sample, Sample | None]]]]], rounds: int
) -> str:
    date = datetime.date.today().isoformat()
    lines = [
        f"Copy benchmark, {date}: TLS registries on loopback, {os.cpu_count()} CPUs, a fresh "
        f"target registry per copy; {rounds} rounds (1 for 1 GiB), medians.",
        "",
        "| image | size | swapper mirror | skopeo copy | ratio | swapper CPU | skopeo CPU "
        "| registries CPU (swapper / skopeo) | swapper copy only | swapper peak RSS "
        "| skopeo peak RSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts: list[str] = []
    recopy_lines: list[str] = []
    for name, total, results in rows:
        ours = [first for first, _ in results["swapper"]]
        theirs = [first for first, _ in results["skopeo"]]
        ours_again = [again for _, again in results["swapper"] if again is not None]
        theirs_again = [again for _, again in results["skopeo"] if again is not None]
        wall, other = med([s.wall for s in ours]), med([s.wall for s in theirs])
        ratios = [a.wall / b.wall for a, b in zip(ours, theirs, strict=True)]
        copy_only = [s.copy for s in ours if s.copy is not None]
        lines.append(
            f"| {name} | {total / MiB:.1f} MiB | {wall:.2f} s | {other:.2f} s "
            f"| {wall / other:.2f}x | {med([s.cpu for s in ours]):.2f} s "
            f"| {med([s.cpu for s in theirs]):.2f} s "
            f"| {med([s.registries_cpu for s in ours]):.2f} s / "
            f"{med([s.registries_cpu for s in theirs]):.2f} s "
            f"| {med(copy_only) if copy_only else 0:.2f} s "
            f"| {med([s.rss_mib for s in ours]):.0f} MiB "
            f"| {med([s.rss_mib for s in theirs]):.0f} MiB |"
        )
        if ours_again:
            requests = med([s.copy or 0.0 for s in ours_again])
            recopy_lines.append(
                f"| {name} | {requests * 1000:.0f} ms | {med([s.wall for s in ours_again]):.2f} s "
                f"| {med([s.wall for s in theirs_again]):.2f} s |"
            )
        if name.startswith("multi-arch 200"):
            ratio = wall / other
            verdicts.append(
                f"| swapper mirror / skopeo copy, whole process, 200 MiB (target at most "
                f"{RATIO_TARGET}x) | **{ratio:.2f}x** (per round: "
                f"{', '.join(f'{x:.2f}' for x in ratios)}) "
                f"| {'met' if ratio <= RATIO_TARGET else 'not met'} |"
            )
            requests = med([s.copy or 0.0 for s in ours_again])
            verdicts.append(
                f"| re-copy of a present image, requests (target under "
                f"{RECOPY_TARGET * 1000:.0f} ms) | **{requests * 1000:.0f} ms** "
                f"| {'met' if requests < RECOPY_TARGET else 'not met'} |"
            )
        if "1 GiB" in name:
            baseline = med([s.rss_mib for s in ours_again])
            peak = med([s.rss_mib for s in ours])
            growth = peak - baseline
            verdicts.append(
                f"| peak RSS growth copying a 1 GiB layer (target under {RSS_TARGET_MIB} MiB) "
                f"| **{growth:.0f} MiB** ({peak:.0f} MiB copying, {baseline:.0f} MiB for the "
                f"same command finding the image present) "
                f"| {'met' if growth < RSS_TARGET_MIB else 'not met'} |"
            )
    lines += [
        "",
        "ratio: swapper's median wall time over skopeo's, each a whole process (start-up "
        "included). 'copy only': swapper's own CopyResult.duration (no interpreter start-up, "
        "imports or TLS set-up). CPU: user + system of the process; registries CPU: source + "
        "target registry during that copy.",
        "",
        "| image | swapper re-copy: requests | swapper re-copy: process "
        "| skopeo re-copy: process |",
        "| --- | ---: | ---: | ---: |",
        *recopy_lines,
        "",
        "| target | result | |",
        "| --- | --- | --- |",
        *verdicts,
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
