"""Fleet mirroring benchmark: 100 images sharing base layers, as a cluster's backfill copies them.

The fleet (deterministic: every layer is random bytes from a seeded generator, so it does not
compress; gzip at level 0, as in ``tests/registries.make_big_layer``):

- 20 repositories (``fleet/app-00`` .. ``fleet/app-19``) x 5 tags (``1.0`` .. ``1.4``): 100
  OCI indexes, each with two platforms (linux/amd64, linux/arm64);
- per platform, 3 base layers: the same 3 in 17 of the 20 repositories (85 images), another 3
  in the other 3 repositories; then one layer per repository (shared by its 5 tags: the
  dependencies) and one layer per image (the application), and the image's own config;
- about ``--size-mib`` (2048) MiB of distinct blobs in all, split as: the common base 5%, the
  other base 2.5%, the repository layers 40%, the application layers 52.5%.

It is pushed once to a source ``docker-registry`` (TLS) whose storage is kept in
``$SWAPPER_BENCH_CACHE/fleet-<shape>/`` (a rerun of the same shape starts from it). Then, for
each runner, a fresh target ``docker-registry`` (TLS, another CA, its access log on) receives
the 100 images under ``mirror/app-NN:TAG``, in one seeded shuffled order (pods come in no
order). The runners:

- **swapper**: ``benchmarks/fleet_swapper.py``, one process on uvloop: the backends ``swapper
  serve`` builds (one client, one copy engine, the ``WorkerQueue`` at its default workers, or
  ``--workers`` for a trial), fed by one scan of the controller's ``Backfill`` (every missing
  image submitted at backfill priority);
- **crane**: ``crane copy SRC DST``, one per image, 4 at a time (``xargs -P 4``);
- **regctl**: ``regctl image copy SRC DST``, likewise;
- **skopeo**: ``skopeo sync --src yaml --dest docker --all --preserve-digests``, 4 processes at
  once, each given a quarter of the list in its YAML (sync copies its images one by one).

Measured per runner: wall time; client CPU (user + system of the whole process tree, from
``os.wait4`` of GNU ``time``, which waits for them all); peak RSS of the largest process (GNU
``time``'s ``%M``) and of the whole tree (``/proc``, sampled every 0.1 s); what the target
received, counted on the target's side: blob bytes of the uploads it completed (its access log:
``PUT .../blobs/uploads/...?digest=`` answered 201, each at that blob's size), how many blobs
were uploaded more than once, blobs mounted (``POST ...?mount=`` answered 201), and the bytes
its process read (``rchar``: uploads with TLS and HTTP, and its own file reads); the CPU of
both registries meanwhile (``/proc``: what the runner made them do); and whether
every image arrived with the source's digests all the way down (``tests/registries.tree``).
The minimum upload is every distinct blob once.

Rounds (``--rounds``, 3) rotate which runner goes first; the table gives medians.

    .venv/bin/python -m benchmarks.fleet [--size-mib 2048] [--rounds 3] [--runners swapper,...]

Writes ``benchmarks/out/fleet.md`` and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from benchmarks import bytes_read, cpu_seconds, peers, stop_servers_on_sigterm

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "fleet.md"
GNU_TIME = "/usr/bin/time"
MiB = 1024 * 1024
GiB = 1024 * MiB
PAGE = os.sysconf("SC_PAGE_SIZE")

REPOS, TAGS, COMMON = 20, 5, 17  # COMMON of the REPOS repositories share the common base
PLATFORMS = ("linux/amd64", "linux/arm64")
BASE_LAYERS = 3
PARALLEL = 4  # the peers' processes at once
SHAPE_VERSION = 1  # bump when the generator changes: a new cache
RUNNERS = ("swapper", "crane", "regctl", "skopeo")
WALL_TARGET = 0.7  # swapper's wall over the fastest peer's
COMMANDS = {
    "swapper": "python -m benchmarks.fleet_swapper CONFIG JOBS (the serve backends, one "
    "Backfill scan, WorkerQueue at its default 4 workers)",
    "crane": "xargs -P 4 -L 1 crane copy < LIST (SSL_CERT_FILE=BUNDLE)",
    "regctl": "xargs -P 4 -L 1 regctl image copy < LIST (SSL_CERT_FILE=BUNDLE)",
    "skopeo": "4 x skopeo sync --src yaml --dest docker --all --preserve-digests "
    "--src-cert-dir A --dest-cert-dir B QUARTER.yaml TARGET/mirror",
}


# -- the fleet -----------------------------------------------------------------------------


def _sizes(total: int) -> dict[str, int]:
    """Bytes of one layer of each kind for a fleet of about ``total`` distinct bytes."""
    platforms = len(PLATFORMS)
    return {
        "common": int(total * 0.05) // (BASE_LAYERS * platforms),
        "other": int(total * 0.025) // (BASE_LAYERS * platforms),
        "repo": int(total * 0.40) // (REPOS * platforms),
        "app": int(total * 0.525) // (REPOS * TAGS * platforms),
    }


@dataclass
class Fleet:
    """What is on the source: images (repository, tag, index digest) and every blob's size."""

    images: list[tuple[str, str, str]]
    blobs: dict[str, int]
    shape: dict[str, Any]
    built_seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.blobs.values())


def _mount_or_push(client: Any, r: Any, repo: str, blob: Any, seen: dict[str, str]) -> None:
    """A fixture push that mounts a blob the source already has in another repository."""
    where = seen.get(blob.digest)
    if where == repo:
        return
    if where is not None:
        mounted = client.post(
            f"/v2/{repo}/blobs/uploads/", params={"mount": blob.digest, "from": where}
        )
        if mounted.status_code == 201:
            seen[blob.digest] = repo
            return
    r.push_blob(client, repo, blob)
    seen[blob.digest] = repo


def build_fleet(r: Any, source: Any, size: int, scratch: Path) -> Fleet:
    """Generate the fleet and push it to ``source`` (layer files made, pushed, deleted)."""
    started = time.monotonic()
    sizes = _sizes(size)
    blobs: dict[str, int] = {}
    images: list[tuple[str, str, str]] = []
    scratch.mkdir(parents=True, exist_ok=True)
    seed = iter(range(10**6))

    def layer(name: str, kind: str) -> Any:
        blob = r.make_big_layer(scratch / f"{name}.tar.gz", sizes[kind], seed=next(seed))
        blobs[blob.digest] = blob.size
        return blob

    bases = {
        family: {
            p: [layer(f"{family}-{p[6:]}-{i}", family) for i in range(BASE_LAYERS)]
            for p in PLATFORMS
        }
        for family in ("common", "other")
    }
    seen: dict[str, str] = {}
    with source.client(timeout=300) as client:
        for n in range(REPOS):
            repo = f"fleet/app-{n:02d}"
            base = bases["common" if n < COMMON else "other"]
            deps = {p: layer(f"repo{n}-{p[6:]}", "repo") for p in PLATFORMS}
            for t in range(TAGS):
                tag = f"1.{t}"
                children = []
                for p in PLATFORMS:
                    app = layer(f"app{n}-{t}-{p[6:]}", "app")
                    image = r.make_image([*base[p], deps[p], app], p)
                    blobs[image.config.digest] = image.config.size
                    for blob in image.blobs:
                        _mount_or_push(client, r, repo, blob, seen)
                    r.push_manifest(client, repo, image.digest, image.data, image.media_type)
                    children.append(image)
                    app.path.unlink()
                index = r.make_index(children)
                r.push_manifest(client, repo, tag, index.data, index.media_type)
                images.append((repo, tag, index.digest))
            for blob in deps.values():
                blob.path.unlink()
    shutil.rmtree(scratch, ignore_errors=True)
    shape = {"repos": REPOS, "tags": TAGS, "common": COMMON, "sizes": sizes}
    return Fleet(images, blobs, shape, time.monotonic() - started)


def source_with_fleet(r: Any, size: int) -> tuple[Any, Fleet, bool]:
    """The source registry holding the fleet (from the cache when it was built before)."""
    key = hashlib.sha256(
        json.dumps([SHAPE_VERSION, REPOS, TAGS, COMMON, PLATFORMS, _sizes(size)]).encode()
    ).hexdigest()[:12]
    home = peers.CACHE / f"fleet-{key}"
    manifest = home / "fleet.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        fleet = Fleet([tuple(i) for i in data["images"]], data["blobs"], data["shape"])
        fleet.built_seconds = data["built_seconds"]
        return r.start_registry(home / "source", tls=True), fleet, True
    shutil.rmtree(home, ignore_errors=True)
    source = r.start_registry(home / "source", tls=True)
    try:
        fleet = build_fleet(r, source, size, home / "scratch")
    except BaseException:
        source.stop()
        raise
    manifest.write_text(
        json.dumps(
            {
                "images": fleet.images,
                "blobs": fleet.blobs,
                "shape": fleet.shape,
                "built_seconds": fleet.built_seconds,
            }
        )
    )
    return source, fleet, False


# -- measuring one runner ------------------------------------------------------------------


@dataclass
class Sample:
    wall: float = 0.0
    cpu: float = 0.0
    rss_mib: float | None = None  # the largest process
    tree_rss_mib: float = 0.0  # the whole tree, sampled
    uploaded: int = 0  # blob bytes of completed uploads (target's access log)
    uploads: int = 0
    duplicates: int = 0  # blobs uploaded more than once
    mounted: int = 0
    read_mib: float = 0.0  # rchar of the target process
    registries_cpu: float = 0.0  # source + target
    same: int = 0  # images with the source's digests all the way down
    failure: str | None = None
    notes: list[str] = field(default_factory=list)


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants now."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * PAGE
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, IndexError, ValueError):
            continue
        pending.extend(int(child) for child in children)
    return total


def uploads(log: str, blobs: dict[str, int]) -> tuple[int, int, int, int]:
    """From a target's access log: (blob bytes uploaded, uploads, blobs uploaded more than
    once, mounts)."""
    done: Counter[str] = Counter()
    mounts = 0
    for line in log.splitlines():
        start = line.find('"')
        if start < 0:
            continue
        request, _, rest = line[start + 1 :].partition('"')
        parts, status = request.split(), rest.split()[:1]
        if len(parts) < 2 or status != ["201"]:
            continue
        method, url = parts[0], urlsplit(parts[1])
        query = parse_qs(url.query)
        if method == "PUT" and "/blobs/uploads/" in url.path and "digest" in query:
            done[query["digest"][0]] += 1
        elif method == "POST" and url.path.endswith("/blobs/uploads/") and "mount" in query:
            mounts += 1
    uploaded = sum(blobs.get(digest, 0) * count for digest, count in done.items())
    return uploaded, sum(done.values()), sum(1 for c in done.values() if c > 1), mounts


class Bench:
    def __init__(self, r: Any, tmp: Path, source: Any, fleet: Fleet, found: dict[str, Any]):
        self.r, self.tmp, self.source, self.fleet, self.peers = r, tmp, source, fleet, found
        self.count = 0
        self.workers: int | None = None  # the copy queue's default
        order = list(fleet.images)
        random.Random(26).shuffle(order)
        self.order = order
        (tmp / "home").mkdir()
        with source.client() as client:
            self.trees = {(repo, tag): r._tree(client, repo, tag) for repo, tag, _ in fleet.images}

    def pairs(self, target: Any) -> list[tuple[str, str]]:
        return [
            (
                f"{self.source.host}/{repo}:{tag}",
                f"{target.host}/mirror/{repo.rsplit('/', 1)[1]}:{tag}",
            )
            for repo, tag, _ in self.order
        ]

    def command(self, runner: str, target: Any, bundle: Path) -> tuple[list[str], dict[str, str]]:
        work = self.tmp / f"{runner}-{self.count}"
        work.mkdir()
        pairs = self.pairs(target)
        listing = work / "list"
        listing.write_text("".join(f"{src} {dst}\n" for src, dst in pairs))
        go_env = dict(os.environ, SSL_CERT_FILE=str(bundle), HOME=str(self.tmp / "home"))
        if runner == "swapper":
            config = {
                "logLevel": "error",
                "target": {"type": "generic", "generic": {"registry": f"{target.host}/mirror"}},
                "source": {"checkAccess": False, "podPullSecrets": False},
                "mirror": {
                    **({"workers": self.workers} if self.workers else {}),
                    "hosts": {
                        self.source.host: {"caFile": str(self.source.ca_file)},
                        target.host: {"caFile": str(target.ca_file)},
                    },
                },
            }
            (work / "config.json").write_text(json.dumps(config))
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env["PYTHONPATH"] = str(ROOT)
            env["PYTHONPYCACHEPREFIX"] = str(self.tmp / "pycache")
            module = [sys.executable, "-m", "benchmarks.fleet_swapper"]
            return [*module, str(work / "config.json"), str(listing)], env
        path = self.peers[runner].path
        xargs = ["xargs", "-a", str(listing), "-P", str(PARALLEL), "-L", "1"]
        if runner == "crane":
            return [*xargs, path, "copy"], go_env
        if runner == "regctl":
            return [*xargs, path, "image", "copy"], go_env
        if runner == "skopeo":
            lines = []
            for part in range(PARALLEL):
                mine: dict[str, list[str]] = {}
                for repo, tag, _ in self.order[part::PARALLEL]:
                    mine.setdefault(repo, []).append(tag)
                doc = {self.source.host: {"images": mine, "cert-dir": str(self.source.cert_dir)}}
                (work / f"part{part}.yaml").write_text(json.dumps(doc))
                lines.append(f"{work / f'part{part}.yaml'} {target.host}/mirror\n")
            (work / "parts").write_text("".join(lines))
            sync = [path, "sync", "--src", "yaml", "--dest", "docker", "--all"]
            sync += ["--preserve-digests", "--src-cert-dir", str(self.source.cert_dir)]
            sync += ["--dest-cert-dir", str(target.cert_dir)]
            parts = ["xargs", "-a", str(work / "parts"), "-P", str(PARALLEL), "-L", "1"]
            return [*parts, *sync], dict(os.environ)
        raise ValueError(runner)

    def run(self, runner: str) -> Sample:
        self.count += 1
        target = self.r.start_registry(self.tmp / f"target-{self.count}", tls=True, access_log=True)
        sample = Sample()
        try:
            bundle = self.tmp / f"bundle-{self.count}.pem"
            bundle.write_bytes(self.source.ca_file.read_bytes() + target.ca_file.read_bytes())
            command, env = self.command(runner, target, bundle)
            maxrss = self.tmp / "maxrss"
            timed = [GNU_TIME, "-f", "%M", "-o", str(maxrss)] if Path(GNU_TIME).exists() else []
            read_before = bytes_read(target.process.pid)
            watched = (self.source.process.pid, target.process.pid)
            cpu_before = sum(cpu_seconds(pid) for pid in watched)
            log = self.tmp / f"{runner}.log"
            with log.open("wb") as out:
                started = time.perf_counter()
                process = subprocess.Popen(
                    [*timed, *command], stdout=out, stderr=subprocess.STDOUT, env=env
                )
                peak = [0]
                stop = threading.Event()

                def watch() -> None:
                    while not stop.wait(0.1):
                        peak[0] = max(peak[0], _tree_rss(process.pid))

                watcher = threading.Thread(target=watch, daemon=True)
                watcher.start()
                _, status, usage = os.wait4(process.pid, 0)
                sample.wall = time.perf_counter() - started
                stop.set()
                watcher.join()
            sample.cpu = usage.ru_utime + usage.ru_stime
            sample.tree_rss_mib = peak[0] / MiB
            sample.read_mib = (bytes_read(target.process.pid) - read_before) / MiB
            sample.registries_cpu = sum(cpu_seconds(pid) for pid in watched) - cpu_before
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                sample.failure = f"exit {code}: {' / '.join(tail)[-300:]}"
            if timed and maxrss.exists():
                values = maxrss.read_text().split()
                sample.rss_mib = int(values[-1]) / 1024 if values and values[-1].isdigit() else None
            counted = uploads(target.logs(), self.fleet.blobs)
            sample.uploaded, sample.uploads, sample.duplicates, sample.mounted = counted
            sample.same = self.same(target)
            return sample
        finally:
            target.stop()
            shutil.rmtree(target.workdir, ignore_errors=True)

    def same(self, target: Any) -> int:
        good = 0
        with target.client() as client:
            for repo, tag, _ in self.fleet.images:
                try:
                    got = self.r._tree(client, f"mirror/{repo.rsplit('/', 1)[1]}", tag)
                except AssertionError:
                    continue
                good += got == self.trees[(repo, tag)]
        return good


# -- the table ------------------------------------------------------------------------------


def median_sample(samples: list[Sample]) -> Sample:
    """Field by field, the median of the rounds; the worst of them for failures, blobs uploaded
    twice and images that arrived."""
    failed = [s.failure for s in samples if s.failure is not None]
    good = [s for s in samples if s.failure is None]
    if not good:
        return Sample(failure=failed[0])

    def mid(values: list[float]) -> float:
        return statistics.median(values)

    rss = [s.rss_mib for s in good if s.rss_mib is not None]
    return Sample(
        wall=mid([s.wall for s in good]),
        cpu=mid([s.cpu for s in good]),
        rss_mib=mid(rss) if rss else None,
        tree_rss_mib=mid([s.tree_rss_mib for s in good]),
        uploaded=int(mid([s.uploaded for s in good])),
        uploads=int(mid([s.uploads for s in good])),
        duplicates=max(s.duplicates for s in good),
        mounted=int(mid([s.mounted for s in good])),
        read_mib=mid([s.read_mib for s in good]),
        registries_cpu=mid([s.registries_cpu for s in good]),
        same=min(s.same for s in good),
        failure=failed[0] if failed else None,
    )


def round_ratios(rounds: list[dict[str, Sample]]) -> list[float]:
    """Per round: swapper's wall over the fastest peer's of that round."""
    ratios = []
    for one in rounds:
        ours = one.get("swapper")
        walls = [s.wall for k, s in one.items() if k != "swapper" and s.failure is None]
        if ours is not None and ours.failure is None and walls:
            ratios.append(ours.wall / min(walls))
    return ratios


def table(
    fleet: Fleet, rounds: list[dict[str, Sample]], found: dict[str, Any], cached: bool
) -> str:
    runners = [r for r in RUNNERS if any(r in one for one in rounds)]
    results = {r: median_sample([one[r] for one in rounds if r in one]) for r in runners}
    date = datetime.date.today().isoformat()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], text=True, capture_output=True
    ).stdout.strip()
    sizes = fleet.shape["sizes"]
    total = fleet.total
    lines = [
        f"Fleet benchmark, {date} (swapper at `{head}`, this working tree): TLS registries on "
        f"loopback, {os.cpu_count()} CPUs, a fresh target registry per runner and round; "
        f"{len(rounds)} rounds rotating which runner goes first; medians (blobs uploaded twice "
        "and images = source: the worst round).",
        "",
        f"The fleet: {len(fleet.images)} images ({REPOS} repositories x {TAGS} tags), each an "
        f"OCI index of {len(PLATFORMS)} platforms; per platform {BASE_LAYERS} base layers "
        f"(the same in {COMMON} of {REPOS} repositories: {sizes['common'] / MiB:.1f} MiB each; "
        f"another 3 in the rest: {sizes['other'] / MiB:.1f} MiB each), one layer per repository "
        f"({sizes['repo'] / MiB:.1f} MiB) and one per image ({sizes['app'] / MiB:.1f} MiB); "
        f"random bytes (incompressible); {len(fleet.blobs)} distinct blobs, "
        f"{total / MiB:.0f} MiB in all (the minimum upload); "
        + (
            "the source came from the cache."
            if cached
            else f"generated and pushed to the source in {fleet.built_seconds:.0f} s."
        ),
        "",
        "| runner | wall | wall / fastest peer's | client CPU | peak RSS (largest process) "
        "| peak RSS (all processes) | blob bytes uploaded | / minimum | blobs uploaded twice "
        "| mounts | target read | registries CPU | images = source |",
        "| --- |" + " ---: |" * 12,
    ]
    done = {k: v for k, v in results.items() if v.failure is None}
    peer_walls = {k: v.wall for k, v in done.items() if k != "swapper"}
    fastest = min(peer_walls, key=lambda k: peer_walls[k]) if peer_walls else None
    for runner in RUNNERS:
        sample = results.get(runner)
        if sample is None:
            peer = found.get(runner)
            reason = peer.reason if peer is not None and not peer.ok else "not run"
            lines.append(f"| {runner} | {reason} |" + " |" * 11)
            continue
        if sample.failure is not None:
            lines.append(f"| {runner} | **failed**: {sample.failure} |" + " |" * 11)
            continue
        ratio = f"{sample.wall / peer_walls[fastest]:.2f}x" if fastest else ""
        rss = f"{sample.rss_mib:.0f} MiB" if sample.rss_mib is not None else "n/a"
        same = f"{sample.same}/{len(fleet.images)}"
        lines.append(
            f"| {runner} | {sample.wall:.1f} s | {ratio} | {sample.cpu:.1f} s | {rss} "
            f"| {sample.tree_rss_mib:.0f} MiB | {sample.uploaded / MiB:.0f} MiB "
            f"| {sample.uploaded / total:.2f}x | {sample.duplicates} | {sample.mounted} "
            f"| {sample.read_mib:.0f} MiB | {sample.registries_cpu:.1f} s "
            f"| {same if sample.same == len(fleet.images) else f'**{same}**'} |"
        )
    ours = done.get("swapper")
    lines += ["", "| target | swapper | |", "| --- | --- | --- |"]
    if ours is not None and fastest is not None:
        ratio = ours.wall / peer_walls[fastest]
        lines.append(
            f"| wall at most {WALL_TARGET}x the fastest peer's ({fastest}, "
            f"{peer_walls[fastest]:.1f} s) | **{ratio:.2f}x** ({ours.wall:.1f} s; rounds, each "
            f"against that round's fastest peer: "
            f"{', '.join(f'{r:.2f}' for r in round_ratios(rounds))}) "
            f"| {'met' if ratio <= WALL_TARGET else '**missed**'} |"
        )
    if ours is not None:
        minimal = ours.uploaded == total and ours.duplicates == 0
        lines.append(
            f"| blob bytes uploaded at the minimum (each blob once, then mounted) "
            f"| **{ours.uploaded / total:.2f}x** ({ours.uploads} uploads of "
            f"{len(fleet.blobs)} blobs, {ours.duplicates} twice, {ours.mounted} mounts) "
            f"| {'met' if minimal else '**missed**'} |"
        )
    lines += ["", "The commands (LIST: one `SRC DST` line per image, in the shuffled order):", ""]
    lines += [f"- {runner}: `{COMMANDS[runner]}`" for runner in RUNNERS if runner in results]
    lines += ["", peers.versions_table({k: v for k, v in found.items() if k in RUNNERS})]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=2048, help="distinct bytes in all")
    parser.add_argument("--runners", help="comma-separated subset of " + ",".join(RUNNERS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, help="swapper's copy queue workers (a trial)")
    args = parser.parse_args()
    stop_servers_on_sigterm()
    sys.path.insert(0, str(ROOT / "tests"))
    import registries

    wanted = args.runners.split(",") if args.runners else list(RUNNERS)
    found = peers.ensure([t for t in wanted if t != "swapper"])
    runners = [t for t in wanted if t == "swapper" or (t in found and found[t].ok)]
    print(f"fleet: source with {args.size_mib} MiB", file=sys.stderr, flush=True)
    source, fleet, cached = source_with_fleet(registries, args.size_mib * MiB)
    rounds: list[dict[str, Sample]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="swapper-fleet-bench-") as tmp_name:
            bench = Bench(registries, Path(tmp_name), source, fleet, found)
            bench.workers = args.workers
            for index in range(args.rounds):
                order = runners[index % len(runners) :] + runners[: index % len(runners)]
                rounds.append({})
                for runner in order:
                    print(f"fleet: round {index + 1}: {runner}", file=sys.stderr, flush=True)
                    rounds[-1][runner] = sample = bench.run(runner)
                    print(f"fleet: {runner}: {sample}", file=sys.stderr, flush=True)
    finally:
        source.stop()
    report = table(fleet, rounds, found, cached)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
