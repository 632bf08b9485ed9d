"""Copy benchmark: ``swapper mirror`` side by side with the real peers, in one run.

The peers, each as a whole process the way a user runs it (``benchmarks/peers.py`` builds the
Go tools and the Python library at pinned releases into the benchmark cache):

- ``skopeo copy --all --preserve-digests`` (Debian's skopeo, containers/image);
- ``crane copy`` (go-containerregistry; an index is copied with all its platforms);
- ``regctl image copy`` (regclient; likewise all platforms);
- ``aioregistry`` (Python, asyncio + aiohttp), the library's ``copy_refs`` through the small
  driver ``benchmarks/aioregistry_copy.py``, run by the cache's own virtual environment.

All copy from one source ``docker-registry`` (TLS, its own CA) into a target ``docker-registry``
(TLS, another CA) started fresh for every tool in every round, on loopback. Each tool is given
both CAs its own way: swapper ``--ca-file`` with a bundle, skopeo ``--src-cert-dir`` and
``--dest-cert-dir``, the Go tools ``SSL_CERT_FILE`` with the bundle (and a ``HOME`` of their own,
so no user configuration is read), aioregistry an ``ssl`` context on the bundle.

Scenarios, on the same fresh target one after the other, for every tool:

- ``copy``: an OCI index, linux/amd64 + linux/arm64, 6 layers of ~16.7 MiB each per platform
  (200 MiB of random data), into an empty target;
- ``no-op``: the same command again, the image now present;
- ``cross-repo``: a second image whose platforms each share 4 of their 6 layers with the first
  image's, into another repository of the same target: a tool that mounts the shared blobs
  (``POST ...?mount=&from=``) uploads only the 4 new layers (67 MiB).

Then, with a fresh target per tool again, the same shape with 256 KiB layers (start-up
dominates) and a single 1 GiB layer (peak RSS while copying against the same command finding the
image present: the memory target of issue 3; one round).

Rounds rotate which tool goes first; the tables give medians. For every process: wall time from
start to exit, the client's own CPU (user + system) from ``os.wait4``'s rusage, peak RSS as
``ru_maxrss`` (the tool is started through GNU ``time``, whose ``%M`` is its child's
``ru_maxrss``: started straight from this large Python process, a child's ``ru_maxrss`` would
include this process's memory, which the kernel counts into the child until it calls exec), the
registries' CPU (source + target, from ``/proc``), the bytes the target read (``rchar`` of its
process: what was uploaded to it, TLS records included), and whether the target's manifests
and blobs equal the source's, digest for digest, through the registry API.

When swapper misses a target (client CPU per GiB at or below every peer's; wall time at or below
the fastest peer's), or with ``--profile``, one more 200 MiB ``swapper mirror`` runs under
``perf record --call-graph dwarf`` and its CPU is split into TLS, hashing, kernel and Python.

    .venv/bin/python -m benchmarks.copy [--rounds 5] [--only NAME] [--tools a,b] [--profile]

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
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import bytes_read, cpu_seconds, peers, stop_servers_on_sigterm

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "copy.md"
SWAPPER = ROOT / ".venv" / "bin" / "swapper"
AIOREGISTRY_DRIVER = ROOT / "benchmarks" / "aioregistry_copy.py"
GNU_TIME = "/usr/bin/time"
MiB = 1024 * 1024
GiB = 1024 * MiB
_DURATION = re.compile(r" in (?P<seconds>[0-9.]+)s")

TOOLS = ("swapper", "skopeo", "crane", "regctl", "aioregistry")
COMMANDS = {
    "swapper": "swapper mirror SRC DST --ca-file BUNDLE",
    "skopeo": "skopeo copy --all --preserve-digests --quiet --src-cert-dir A --dest-cert-dir B "
    "docker://SRC docker://DST",
    "crane": "SSL_CERT_FILE=BUNDLE crane copy SRC DST",
    "regctl": "SSL_CERT_FILE=BUNDLE regctl image copy SRC DST",
    "aioregistry": "python -P benchmarks/aioregistry_copy.py https://SRC https://DST "
    "--cafile BUNDLE",
}

LARGE = "multi-arch 200 MiB"
SMALL = "multi-arch small"
HUGE = "single 1 GiB layer"

RATIO_TARGET = 0.7  # issue 3: swapper's wall time over skopeo's
RECOPY_TARGET = 0.050
RSS_TARGET_MIB = 64


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mib: float | None
    registries_cpu: float
    received_mib: float  # bytes the target registry read meanwhile
    same: bool = False  # target digests equal the source's
    copy: float | None = None  # swapper's own CopyResult.duration


class ToolFailed(RuntimeError):
    pass


class Bench:
    def __init__(self, registries: Any, tmp: Path, found: dict[str, peers.Peer]) -> None:
        self.r = registries
        self.tmp = tmp
        self.peers = found
        self.source = registries.start_registry(tmp / "source", tls=True)
        self.count = 0
        self.results = Results()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")  # byte-code cached, as installed
        self.python_env = env
        (tmp / "home").mkdir()
        self.time = [GNU_TIME, "-f", "%M", "-o", str(tmp / "maxrss")]
        if not Path(GNU_TIME).exists():
            self.time = []

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

    def command(
        self, tool: str, src: str, dst: str, target: Any, bundle: Path
    ) -> tuple[list[str], dict[str, str]]:
        source_ref, target_ref = f"{self.source.host}/{src}", f"{target.host}/{dst}"
        go_env = dict(os.environ, SSL_CERT_FILE=str(bundle), HOME=str(self.tmp / "home"))
        path = self.peers[tool].path if tool in self.peers else None
        if tool == "swapper":
            command = [str(SWAPPER), "mirror", source_ref, target_ref, "--ca-file", str(bundle)]
            return command, self.python_env
        assert path is not None
        if tool == "skopeo":
            command = [path, "copy", "--all", "--preserve-digests", "--quiet"]
            command += ["--src-cert-dir", str(self.source.cert_dir)]
            command += ["--dest-cert-dir", str(target.cert_dir)]
            return [*command, f"docker://{source_ref}", f"docker://{target_ref}"], dict(os.environ)
        if tool == "crane":
            return [path, "copy", source_ref, target_ref], go_env
        if tool == "regctl":
            return [path, "image", "copy", source_ref, target_ref], go_env
        if tool == "aioregistry":
            command = [path, "-P", str(AIOREGISTRY_DRIVER), f"https://{source_ref}"]
            return [*command, f"https://{target_ref}", "--cafile", str(bundle)], self.python_env
        raise ValueError(tool)

    def timed(self, command: list[str], env: dict[str, str], target: Any) -> Sample:
        """Run ``command`` to its end: wall, CPU and peak RSS of that process (through GNU
        ``time``), the registries' CPU and what the target read meanwhile."""
        watch = (self.source.process.pid, target.process.pid)
        before = sum(cpu_seconds(pid) for pid in watch)
        read_before = bytes_read(target.process.pid)
        out_path, err_path = self.tmp / "stdout", self.tmp / "stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            started = time.perf_counter()
            process = subprocess.Popen([*self.time, *command], stdout=out, stderr=err, env=env)
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        registries = sum(cpu_seconds(pid) for pid in watch) - before
        received = (bytes_read(target.process.pid) - read_before) / MiB
        if process.returncode != 0:
            tail = err_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise ToolFailed(f"exit {process.returncode}: {' / '.join(tail)[-300:]}")
        rss = None
        if self.time:
            lines = (self.tmp / "maxrss").read_text().split()
            rss = int(lines[-1]) / 1024 if lines else None
        sample = Sample(wall, usage.ru_utime + usage.ru_stime, rss, registries, received)
        match = _DURATION.search(out_path.read_text(errors="replace"))
        if match:
            sample.copy = float(match["seconds"])
        return sample

    def copy(self, tool: str, src: str, dst: str, target: Any, bundle: Path) -> Sample:
        command, env = self.command(tool, src, dst, target, bundle)
        sample = self.timed(command, env, target)
        sample.same = self.same(src, dst, target)
        return sample

    def same(self, src: str, dst: str, target: Any) -> bool:
        """The target has the source's manifests (same digests all the way down) and every
        blob they name (``tests/registries.tree``: the registry API, nothing cached)."""
        src_repo, _, src_tag = src.partition(":")
        dst_repo, _, dst_tag = dst.partition(":")
        try:
            return bool(
                self.r.tree(target, dst_repo, dst_tag)
                == self.r.tree(self.source, src_repo, src_tag)
            )
        except AssertionError:
            return False


@dataclass
class Results:
    """scenario -> phase -> tool -> samples; failures: tool -> reason."""

    samples: dict[str, dict[str, dict[str, list[Sample]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    )
    failures: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


def build(bench: Bench, only: str | None) -> dict[str, tuple[str, str | None]]:
    """Push the images to the source; scenario -> (repository:tag, cross-repo image or None)."""
    r, tmp, source, results = bench.r, bench.tmp, bench.source, bench.results
    scenarios: dict[str, tuple[str, str | None]] = {}
    platforms = ("linux/amd64", "linux/arm64")
    seeds = iter(range(1_000_000))

    def layers(prefix: str, count: int, size: int) -> list[Any]:
        return [
            r.make_big_layer(tmp / f"{prefix}-{i}.tar.gz", size, seed=next(seeds))
            for i in range(count)
        ]

    def wanted(name: str) -> bool:
        return only is None or only in name

    if wanted(LARGE):
        first = [layers(f"large{i}", 6, 200 * MiB // 12) for i in range(len(platforms))]
        images = [r.make_image(first[i], p) for i, p in enumerate(platforms)]
        r.push_index(source, "bench/large", r.make_index(images), "1")
        results.sizes[LARGE] = _total(images)
        # The second image: per platform the first 4 layers of the first image's, 2 new ones.
        shared = [
            r.make_image([*first[i][:4], *layers(f"shared{i}", 2, 200 * MiB // 12)], p)
            for i, p in enumerate(platforms)
        ]
        r.push_index(source, "bench/shared", r.make_index(shared), "1")
        new = {b.digest for image in shared for b in image.blobs} - {
            b.digest for image in images for b in image.blobs
        }
        results.sizes["cross-repo new"] = sum(
            b.size for image in shared for b in image.blobs if b.digest in new
        )
        results.sizes["cross-repo"] = _total(shared)
        scenarios[LARGE] = ("bench/large:1", "bench/shared:1")
    if wanted(SMALL):
        images = [
            r.make_image(layers(f"small{i}", 6, 256 * 1024), p) for i, p in enumerate(platforms)
        ]
        r.push_index(source, "bench/small", r.make_index(images), "1")
        results.sizes[SMALL] = _total(images)
        scenarios[SMALL] = ("bench/small:1", None)
    if wanted(HUGE):
        image = r.make_image(layers("huge", 1, 1024 * MiB))
        r.push_image(source, "bench/huge", image, "1")
        for blob in image.layers:
            assert blob.path is not None
            blob.path.unlink()  # on the source now; keep the disk free
        results.sizes[HUGE] = _total([image])
        scenarios[HUGE] = ("bench/huge:1", None)
    return scenarios


def _total(images: list[Any]) -> int:
    return sum(blob.size for image in images for blob in image.blobs)


def one_tool(
    bench: Bench, tool: str, scenario: str, reference: str, cross: str | None
) -> dict[str, Sample]:
    """Copy, no-op copy, and the cross-repo copy when there is one, into one fresh target."""
    target, bundle = bench.target()
    try:
        mirror = f"mirror/{reference}"
        phases = {"copy": bench.copy(tool, reference, mirror, target, bundle)}
        phases["no-op"] = bench.copy(tool, reference, mirror, target, bundle)
        if cross is not None:
            phases["cross-repo"] = bench.copy(tool, cross, f"other/{cross}", target, bundle)
        return phases
    finally:
        bench.drop(target)


def run(bench: Bench, tools: list[str], rounds: int, only: str | None) -> Results:
    results = bench.results
    scenarios = build(bench, only)
    live = list(tools)
    warm = scenarios.get(SMALL, next(iter(scenarios.values())))[0]
    for tool in list(live):  # byte-code cache, page cache, TLS libraries: not measured
        try:
            one_tool(bench, tool, "warm-up", warm, None)
        except ToolFailed as error:
            results.failures[tool] = f"failed to run: {error}"
            live.remove(tool)
    for scenario, (reference, cross) in scenarios.items():
        count = 1 if scenario == HUGE else rounds
        for index in range(count):
            order = live[index % len(live) :] + live[: index % len(live)]
            for tool in order:
                if tool in results.failures:
                    continue
                try:
                    phases = one_tool(bench, tool, scenario, reference, cross)
                except ToolFailed as error:
                    results.failures[tool] = f"failed during {scenario}: {error}"
                    continue
                for phase, sample in phases.items():
                    results.samples[scenario][phase][tool].append(sample)
            print(f"{scenario}: round {index + 1}/{count} ({', '.join(order)})", file=sys.stderr)
    return results


# -- the profile ---------------------------------------------------------------------------

CATEGORIES = (
    ("tls", "TLS: OpenSSL (AES-GCM records, handshakes) and the `_ssl` module"),
    ("hash", "SHA-256 hashing (OpenSSL through `hashlib`)"),
    ("kernel", "kernel: system calls, loopback TCP, page faults"),
    ("python", "Python: the interpreter running swapper, asyncio glue"),
    ("uvloop", "uvloop event loop and libuv (C)"),
    ("other", "other native code (libc memcpy/malloc, orjson, ...)"),
)


def _category(frames: list[tuple[str, str]]) -> str:
    """Where one perf sample's CPU goes; ``frames`` is (symbol, dso), the leaf first."""
    leaf_sym, leaf_dso = frames[0] if frames else ("", "")
    if "kernel" in leaf_dso or leaf_sym.startswith(("entry_SYSCALL", "__x64_sys")):
        return "kernel"
    dsos = [dso for _, dso in frames]
    syms = [sym for sym, _ in frames]
    if any("libssl" in d or "/_ssl." in d for d in dsos):
        return "tls"
    if any("_hashlib" in d for d in dsos) or any(s.lower().startswith("sha256") for s in syms):
        return "hash"
    if "libcrypto" in leaf_dso:
        return "tls"
    if "libpython" in leaf_dso or re.search(r"/python3?(\.\d+)?$", leaf_dso):
        return "python"
    if "uvloop" in leaf_dso or "libuv" in leaf_dso:
        return "uvloop"
    return "other"


def profile(bench: Bench, cpu_median: float) -> str:
    """One 200 MiB ``swapper mirror`` under ``perf record``; its CPU split by category."""
    perf = shutil.which("perf")
    if perf is None:
        return "No profile: `perf` is not installed (Debian `linux-perf`)."
    target, bundle = bench.target()
    data = bench.tmp / "perf.data"
    try:
        command, env = bench.command("swapper", "bench/large:1", "mirror/large:1", target, bundle)
        record = [perf, "record", "-F", "999", "--call-graph", "dwarf,16384", "-o", str(data)]
        recorded = subprocess.run(
            [*record, "--", *command],
            env=env,
            capture_output=True,
            text=True,
        )
        if recorded.returncode != 0:
            return f"No profile: `perf record` failed: {recorded.stderr.strip()[-300:]}"
    finally:
        bench.drop(target)
    script = subprocess.run(
        [perf, "script", "-i", str(data), "-F", "comm,period,ip,sym,dso"],
        capture_output=True,
        text=True,
    )
    weights: Counter[str] = Counter()
    leaves: dict[str, Counter[str]] = defaultdict(Counter)
    frame = re.compile(r"^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")
    period, frames = 0, []
    for line in [*script.stdout.splitlines(), ""]:
        found = frame.match(line)
        if found:
            frames.append((found[1], found[2]))
        elif not line.strip():
            if period:
                category = _category(frames)
                weights[category] += period
                if frames:
                    leaves[category][f"{frames[0][0]} ({Path(frames[0][1]).name})"] += period
            period, frames = 0, []
        else:  # a sample's header: "comm tid period"
            tokens = line.split()
            period = int(tokens[-1]) if tokens and tokens[-1].isdigit() else 1
    total = sum(weights.values())
    if not total:
        return f"No profile: `perf script` gave no samples ({script.stderr.strip()[-200:]})."
    lines = [
        f"Where `swapper mirror`'s CPU goes in the 200 MiB copy (`perf record -F 999 "
        f"--call-graph dwarf`, samples weighted by their period; CPU-s are the shares of the "
        f"median {cpu_median:.2f} CPU-s of the unprofiled runs):",
        "",
        "| part | share | CPU-s | CPU-s per GiB | hottest functions (share of the part) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for key, label in CATEGORIES:
        share = weights[key] / total
        per_gib = share * cpu_median * GiB / bench.results.sizes[LARGE]
        hottest = ", ".join(
            f"`{name}` {weight / max(weights[key], 1):.0%}"
            for name, weight in leaves[key].most_common(3)
        )
        lines.append(
            f"| {label} | {share:.0%} | {share * cpu_median:.2f} | {per_gib:.2f} | {hottest} |"
        )
    return "\n".join(lines)


# -- the tables ----------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def _rss(samples: list[Sample]) -> str:
    values = [s.rss_mib for s in samples if s.rss_mib is not None]
    return f"{med(values):.0f} MiB" if values else "n/a"


def _same(samples: list[Sample]) -> str:
    good = sum(s.same for s in samples)
    return "yes" if good == len(samples) else f"**no** ({len(samples) - good}/{len(samples)})"


def _missing(tool: str, results: Results, found: dict[str, peers.Peer]) -> str | None:
    if tool in results.failures:
        return results.failures[tool]
    peer = found.get(tool)
    if tool != "swapper" and (peer is None or not peer.ok):
        return f"not built: {peer.reason if peer else 'unknown'}"
    return None


def table(results: Results, found: dict[str, peers.Peer], rounds: int, extra: str) -> str:
    date = datetime.date.today().isoformat()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], text=True, capture_output=True
    ).stdout.strip()
    lines = [
        f"Copy benchmark, {date} (swapper at `{head}`, this working tree): TLS registries on "
        f"loopback, {os.cpu_count()} CPUs, a fresh target registry per tool and round; "
        f"{rounds} rounds (1 for 1 GiB) rotating which tool goes first; medians.",
        "",
    ]
    verdicts: list[str] = []
    samples = results.samples
    tools = [t for t in TOOLS if t in found or t == "swapper"]

    def rows(scenario: str, phase: str) -> dict[str, list[Sample]]:
        return samples.get(scenario, {}).get(phase, {})

    if LARGE in samples:
        size = results.sizes[LARGE]
        per = GiB / size
        copies = rows(LARGE, "copy")
        ours = copies.get("swapper", [])
        lines += [
            f"**{LARGE}** (OCI index, 2 platforms x 6 layers, {size / MiB:.1f} MiB), "
            "into an empty target:",
            "",
            "| tool | wall | client CPU | CPU-s per GiB | s per GiB | wall / swapper's "
            "| CPU / swapper's | peak RSS | registries CPU | target = source |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for tool in tools:
            missing = _missing(tool, results, found)
            got = copies.get(tool, [])
            if not got:
                lines.append(f"| {tool} | {missing or 'no result'} | | | | | | | | |")
                continue
            wall, cpu = med([s.wall for s in got]), med([s.cpu for s in got])
            vs_wall = f"{wall / med([s.wall for s in ours]):.2f}x" if ours else ""
            vs_cpu = f"{cpu / med([s.cpu for s in ours]):.2f}x" if ours else ""
            lines.append(
                f"| {tool} | {wall:.2f} s | {cpu:.2f} s | {cpu * per:.2f} | {wall * per:.2f} "
                f"| {vs_wall} | {vs_cpu} | {_rss(got)} "
                f"| {med([s.registries_cpu for s in got]):.2f} s | {_same(got)} |"
            )
        if ours:
            peers_done = {t: v for t, v in copies.items() if t != "swapper" and v}
            cpu = med([s.cpu for s in ours])
            wall = med([s.wall for s in ours])
            copy_only = [s.copy for s in ours if s.copy is not None]
            if copy_only:
                lines += [
                    "",
                    f"swapper's own `CopyResult.duration` (no interpreter start-up, imports or "
                    f"TLS set-up): {med(copy_only):.2f} s.",
                ]
            if peers_done:
                best_cpu = min(peers_done, key=lambda t: med([s.cpu for s in peers_done[t]]))
                best_wall = min(peers_done, key=lambda t: med([s.wall for s in peers_done[t]]))
                their_cpu = med([s.cpu for s in peers_done[best_cpu]])
                their_wall = med([s.wall for s in peers_done[best_wall]])
                rounds_wall = ", ".join(
                    f"{a.wall / b.wall:.2f}"
                    for a, b in zip(ours, peers_done[best_wall], strict=False)
                )
                verdicts.append(
                    f"| swapper's client CPU per GiB at or below every peer's (lowest: "
                    f"{best_cpu}, {their_cpu * per:.2f} CPU-s/GiB) | **{cpu * per:.2f} CPU-s/GiB**"
                    f" ({cpu / their_cpu:.2f}x) | {'met' if cpu <= their_cpu else '**not met**'} |"
                )
                verdicts.append(
                    f"| swapper's wall time per GiB at or below the fastest peer's ({best_wall}, "
                    f"{their_wall * per:.2f} s/GiB) | **{wall * per:.2f} s/GiB** "
                    f"({wall / their_wall:.2f}x; rounds: {rounds_wall}) "
                    f"| {'met' if wall <= their_wall else '**not met**'} |"
                )
            skopeo = copies.get("skopeo")
            if skopeo:
                ratio = wall / med([s.wall for s in skopeo])
                verdicts.append(
                    f"| issue 3: `swapper mirror` wall time at most {RATIO_TARGET}x skopeo's "
                    f"| **{ratio:.2f}x** | {'met' if ratio <= RATIO_TARGET else '**not met**'} |"
                )
        noop, cross = rows(LARGE, "no-op"), rows(LARGE, "cross-repo")
        lines += [
            "",
            "The same command again, the image present (**no-op**), and then a second image "
            f"sharing 4 of each platform's 6 layers into another repository of the same target "
            f"(**cross-repo**: {results.sizes['cross-repo'] / MiB:.0f} MiB, of which "
            f"{results.sizes['cross-repo new'] / MiB:.0f} MiB new to the target; 'target read' "
            "is what the target registry read from its sockets and files meanwhile):",
            "",
            "| tool | no-op wall | no-op CPU | no-op target = source | cross-repo wall "
            "| cross-repo CPU | target read | cross-repo target = source |",
            "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |",
        ]
        for tool in tools:
            a, b = noop.get(tool, []), cross.get(tool, [])
            if not a or not b:
                missing = _missing(tool, results, found) or "no result"
                lines.append(f"| {tool} | {missing} | | | | | | |")
                continue
            lines.append(
                f"| {tool} | {med([s.wall for s in a]):.2f} s | {med([s.cpu for s in a]):.2f} s "
                f"| {_same(a)} | {med([s.wall for s in b]):.2f} s "
                f"| {med([s.cpu for s in b]):.2f} s | {med([s.received_mib for s in b]):.0f} MiB "
                f"| {_same(b)} |"
            )
        ours_noop = noop.get("swapper", [])
        if ours_noop and all(s.copy is not None for s in ours_noop):
            requests = med([s.copy or 0.0 for s in ours_noop])
            verdicts.append(
                f"| issue 3: re-copy of a present image, requests under "
                f"{RECOPY_TARGET * 1000:.0f} ms | **{requests * 1000:.0f} ms** "
                f"| {'met' if requests < RECOPY_TARGET else '**not met**'} |"
            )
    for scenario in (SMALL, HUGE):
        if scenario not in samples:
            continue
        size = results.sizes[scenario]
        copies, noop = rows(scenario, "copy"), rows(scenario, "no-op")
        lines += [
            "",
            f"**{scenario}** ({size / MiB:.1f} MiB), into an empty target, and the no-op copy:",
            "",
            "| tool | wall | client CPU | CPU-s per GiB | peak RSS | no-op wall "
            "| no-op peak RSS | target = source |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for tool in tools:
            got, again = copies.get(tool, []), noop.get(tool, [])
            if not got or not again:
                missing = _missing(tool, results, found) or "no result"
                lines.append(f"| {tool} | {missing} | | | | | | |")
                continue
            cpu = med([s.cpu for s in got])
            lines.append(
                f"| {tool} | {med([s.wall for s in got]):.2f} s | {cpu:.2f} s "
                f"| {cpu * GiB / size:.2f} | {_rss(got)} | {med([s.wall for s in again]):.2f} s "
                f"| {_rss(again)} | {_same(got + again)} |"
            )
        ours, ours_again = copies.get("swapper", []), noop.get("swapper", [])
        if scenario == HUGE and ours and ours_again and ours[0].rss_mib and ours_again[0].rss_mib:
            peak, baseline = (
                med([s.rss_mib or 0 for s in ours]),
                med([s.rss_mib or 0 for s in ours_again]),
            )
            growth = peak - baseline
            verdicts.append(
                f"| issue 3: peak RSS growth copying a 1 GiB layer under {RSS_TARGET_MIB} MiB "
                f"| **{growth:.0f} MiB** ({peak:.0f} MiB copying, {baseline:.0f} MiB finding it "
                f"present) | {'met' if growth < RSS_TARGET_MIB else '**not met**'} |"
            )
    lines += ["", "| target | swapper | |", "| --- | --- | --- |", *verdicts]
    lines += ["", "The commands (SRC, DST: `HOST:PORT/REPO:TAG`):", ""]
    lines += [f"- {tool}: `{COMMANDS[tool]}`" for tool in tools]
    lines += ["", peers.versions_table({k: v for k, v in found.items() if k in TOOLS})]
    if extra:
        lines += ["", extra]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", help="run one scenario (substring of its name)")
    parser.add_argument("--tools", help="comma-separated subset of " + ",".join(TOOLS))
    parser.add_argument("--profile", action="store_true", help="profile swapper in any case")
    args = parser.parse_args()
    stop_servers_on_sigterm()
    sys.path.insert(0, str(ROOT / "tests"))
    import registries

    wanted = args.tools.split(",") if args.tools else list(TOOLS)
    found = peers.ensure([t for t in wanted if t != "swapper"])
    tools = [t for t in wanted if t == "swapper" or (t in found and found[t].ok)]
    with tempfile.TemporaryDirectory(prefix="swapper-copy-bench-") as tmp_name:
        bench = Bench(registries, Path(tmp_name), found)
        try:
            results = run(bench, tools, args.rounds, args.only)
            extra = ""
            copies = results.samples.get(LARGE, {}).get("copy", {})
            ours = copies.get("swapper", [])
            others = [v for t, v in copies.items() if t != "swapper" and v]
            if ours:
                cpu, wall = med([s.cpu for s in ours]), med([s.wall for s in ours])
                missed = any(cpu > med([s.cpu for s in v]) for v in others) or any(
                    wall > med([s.wall for s in v]) for v in others
                )
                if missed or args.profile:
                    print("profiling swapper mirror (perf)", file=sys.stderr)
                    extra = profile(bench, cpu)
        finally:
            bench.stop()
    report = table(results, found, args.rounds, extra)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
