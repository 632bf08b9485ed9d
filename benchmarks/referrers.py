"""Referrers benchmark: what copying an image's signatures, attestations and SBOMs costs.

The copy benchmark's 200 MiB image (an OCI index, linux/amd64 + linux/arm64, 6 layers of
~16.7 MiB each per platform), in two forms that share every blob: unsigned, and signed with the
real cosign (built by ``tests/supply/tools.py``) with a generated key, offline: a signature
(``sha256-<hex>.sig``), an SLSA provenance attestation (``.att``), an SBOM (``.sbom``) and an OCI
1.1 bundle signature (a referrer). Both sit in two sources: Debian's ``docker-registry``
(no referrers API: the referrers tag fallback) and go-containerregistry's registry (the
referrers API).

Each round copies each form from each source with ``swapper mirror`` twice, with
``--no-referrers`` and without, each into a fresh ``docker-registry`` target, side by side in
one run (a rotating order; the tables give medians, so a loaded machine's noise is shared).
Per copy: wall time of the whole command, and the requests the source and the target served
(from their access logs), the extra ones by kind.

Then the cost of looking for cosign's tags and the fallback tag by reading the repository's tag
list once, against a ``HEAD`` per tag (what the finder falls back to when the list is too long),
in a repository of growing size.

    .venv/bin/python -m benchmarks.referrers [--rounds 3]

Writes ``benchmarks/out/referrers.md`` and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from benchmarks import stop_servers_on_sigterm

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "referrers.md"
MiB = 1024 * 1024
PASSWORD = "swapper-bench"
_REQUEST = re.compile(r'"(?P<method>[A-Z]+) (?P<path>/v2/\S*) HTTP')  # docker-registry
_GGCR_REQUEST = re.compile(r" (?P<method>[A-Z]+) (?P<path>/v2/\S*)")  # go-containerregistry


def _kind(method: str, path: str) -> str:
    """A request's kind for the tables: the extra ones by name."""
    if "/referrers/" in path:
        return "referrers API"
    if path.rstrip("/").endswith("/tags/list") or "/tags/list?" in path:
        return "tag list"
    if "/manifests/sha256-" in path:
        return f"{method} referrer tag"
    if "/manifests/" in path:
        return f"{method} manifest"
    if "/blobs/" in path:
        return f"{method} blob"
    return f"{method} other"


def requests(log: Path, start: int, ggcr: bool) -> tuple[Counter[str], int]:
    """The requests a registry logged past byte ``start`` of its log, by kind; and the new end."""
    data = log.read_bytes()
    pattern = _GGCR_REQUEST if ggcr else _REQUEST
    kinds: Counter[str] = Counter()
    for line in data[start:].decode(errors="replace").splitlines():
        found = pattern.search(line)
        if found:
            kinds[_kind(found["method"], found["path"])] += 1
    return kinds, len(data)


class Bench:
    def __init__(self, registries: Any, tools: Any, tmp: Path) -> None:
        self.r = registries
        self.tmp = tmp
        self.count = 0
        self.plain = registries.start_registry(tmp / "plain-source", access_log=True)
        self._api = tools.running_referrers_registry(tmp / "api-source")
        self.api = self._api.__enter__()
        self.cosign = str(tools.cosign())
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "COSIGN_PASSWORD": PASSWORD,
            "HOME": str(tmp / "home"),
            "TUF_ROOT": str(tmp / "home" / "tuf"),
        }
        (tmp / "home").mkdir()

    def stop(self) -> None:
        self.plain.stop()
        self._api.__exit__(None, None, None)

    def source(self, kind: str) -> tuple[str, Path, bool]:
        """host, log, whether it is go-containerregistry's."""
        if kind == "fallback":
            return self.plain.host, self.plain.workdir / "registry.log", False
        return self.api.host, self.api.log, True

    def run_cosign(self, *args: str) -> None:
        done = subprocess.run(
            [self.cosign, *args], env=self.env, cwd=self.tmp / "home", capture_output=True,
            text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"cosign {args[0]}: {done.stderr[-500:]}")

    def build(self) -> dict[str, str]:
        """Push both forms to both sources and sign one; form -> index digest."""
        r = self.r
        platforms = ("linux/amd64", "linux/arm64")
        seeds = iter(range(1_000_000))
        images = [
            r.make_image(
                [
                    r.make_big_layer(self.tmp / f"l{i}-{j}.tar.gz", 200 * MiB // 12, next(seeds))
                    for j in range(6)
                ],
                platform,
            )
            for i, platform in enumerate(platforms)
        ]
        unsigned = r.make_index(images)
        document = json.loads(unsigned.data)
        document["annotations"] = {"org.example.form": "signed"}
        signed = r.Index(json.dumps(document, indent=2).encode(), unsigned.media_type, images)
        import httpx

        for kind in ("fallback", "api"):
            host, _, _ = self.source(kind)
            with httpx.Client(base_url=f"http://{host}", timeout=300) as client:
                for image in images:
                    for blob in image.blobs:
                        r.push_blob(client, "bench/app", blob)
                    r.push_manifest(client, "bench/app", image.digest, image.data, image.media_type)
                for tag, index in (("unsigned", unsigned), ("signed", signed)):
                    r.push_manifest(client, "bench/app", tag, index.data, index.media_type)
        home = self.tmp / "home"
        self.run_cosign("generate-key-pair")
        (home / "provenance.json").write_text(
            json.dumps({"buildType": "bench", "builder": {"id": "bench"}})
        )
        (home / "sbom.spdx.json").write_text(json.dumps({"spdxVersion": "SPDX-2.3"}))
        offline = ("--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "--yes")
        for kind in ("fallback", "api"):
            host, _, _ = self.source(kind)
            ref = f"{host}/bench/app@{signed.digest}"
            self.run_cosign("sign", *offline, ref)
            self.run_cosign(
                "attest", *offline, "--type", "slsaprovenance", "--predicate", "provenance.json",
                ref,
            )  # fmt: skip
            self.run_cosign(
                "attach", "sbom", "--sbom", "sbom.spdx.json", "--type", "spdx",
                "--allow-http-registry", ref,
            )  # fmt: skip
            self.run_cosign("sign", *offline, "--new-bundle-format", ref)
        for blob in (b for image in images for b in image.layers):
            if blob.path is not None:
                blob.path.unlink()  # in the sources now; keep the disk free
        return {"unsigned": unsigned.digest, "signed": signed.digest}

    def copy(self, kind: str, form: str, referrers: bool) -> dict[str, Any]:
        host, log, ggcr = self.source(kind)
        self.count += 1
        target = self.r.start_registry(self.tmp / f"target-{self.count}", access_log=True)
        try:
            _, source_start = requests(log, 0, ggcr)
            command = [
                sys.executable, "-m", "swapper", "mirror", f"{host}/bench/app:{form}",
                f"{target.host}/bench/app:{form}", "--insecure", f"{host},{target.host}",
            ]  # fmt: skip
            if not referrers:
                command.append("--no-referrers")
            out_path, err_path = self.tmp / "stdout", self.tmp / "stderr"
            with out_path.open("wb") as out, err_path.open("wb") as err:
                started = time.perf_counter()
                process = subprocess.Popen(command, env=self.env, stdout=out, stderr=err)
                _, status, usage = os.wait4(process.pid, 0)
                wall = time.perf_counter() - started
            stdout = out_path.read_text(errors="replace")
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(f"swapper mirror: {err_path.read_text()[-500:]}")
            source_kinds, _ = requests(log, source_start, ggcr)
            target_kinds, _ = requests(target.workdir / "registry.log", 0, False)
            copied = re.search(r" in (?P<seconds>[0-9.]+)s", stdout)
            counted = re.search(r"^referrers (?P<what>.*) in (?P<seconds>[0-9.]+)s$", stdout, re.M)
            return {
                "wall": wall,
                "cpu": usage.ru_utime + usage.ru_stime,
                "copy": float(copied["seconds"]) if copied else float("nan"),
                "source": source_kinds,
                "target": target_kinds,
                "referrers": counted["what"] if counted else "",
                "referrers_seconds": float(counted["seconds"]) if counted else 0.0,
            }
        finally:
            target.stop()
            shutil.rmtree(target.workdir, ignore_errors=True)


VARIANTS = [
    (kind, form, referrers)
    for kind in ("fallback", "api")
    for form in ("unsigned", "signed")
    for referrers in (False, True)
]


def run(bench: Bench, rounds: int) -> dict[tuple[str, str, bool], list[dict[str, Any]]]:
    samples: dict[tuple[str, str, bool], list[dict[str, Any]]] = defaultdict(list)
    for round_number in range(rounds):
        shift = round_number % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            samples[variant].append(bench.copy(*variant))
            print(f"round {round_number + 1}: {variant} done", file=sys.stderr)
    return samples


def table(samples: dict[tuple[str, str, bool], list[dict[str, Any]]], rounds: int) -> str:
    """Medians; the overhead is the median over rounds of each round's on/off ratio of the copy
    time (swapper's own, start-up left out), so the two runs it compares ran close together."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"`swapper mirror` of the 200 MiB image, {rounds} rounds, medians ({now}).",
        "",
        "| source | image | referrers | wall (s) | copy (s) | CPU (s) | referrer phase (s) "
        "| overhead | source requests | extra source requests | target requests "
        "| referrers copied |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    names = {"fallback": "docker-registry (tag fallback)", "api": "referrers API registry"}
    for kind in ("fallback", "api"):
        for form in ("unsigned", "signed"):
            off = samples[(kind, form, False)]
            on = samples[(kind, form, True)]
            ratio = statistics.median(a["copy"] / b["copy"] for a, b in zip(on, off, strict=True))
            for referrers, runs in ((False, off), (True, on)):
                wall = statistics.median(s["wall"] for s in runs)
                copy = statistics.median(s["copy"] for s in runs)
                cpu = statistics.median(s["cpu"] for s in runs)
                spent = statistics.median(s["referrers_seconds"] for s in runs)
                source = sum(runs[0]["source"].values())
                target = sum(runs[0]["target"].values())
                extra = runs[0]["source"] - off[0]["source"]
                extra_text = ", ".join(f"{n} {k}" for k, n in sorted(extra.items())) or "none"
                cells = [names[kind], form, "on" if referrers else "off", f"{wall:.2f}"]
                cells += [f"{copy:.2f}", f"{cpu:.2f}", f"{spent:.3f}" if referrers else ""]
                cells += [f"{(ratio - 1) * 100:+.1f} %" if referrers else "", str(source)]
                cells += [extra_text if referrers else "", str(target)]
                cells += [runs[0]["referrers"] if referrers else ""]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def _discovery_times(host: str, digests: list[str], trials: int) -> tuple[float, float]:
    """Median seconds to look for the cosign tags and the fallback tag of ``digests`` in
    ``host/bench/tags``: reading the tag list once, and with a HEAD per tag instead."""
    from swapper.images import parse
    from swapper.oci import ApiMemory, HostConfig, ReferrerFinder, RegistryClient

    memory = ApiMemory()
    memory.saw_no_api(host)  # the referrers API is left out: docker-registry answers 404
    listed, headed = [], []
    async with RegistryClient(hosts={host: HostConfig(plain_http=True)}) as client:
        repository = client.repository(parse(f"{host}/bench/tags:1"))
        for _ in range(trials):
            for mode, into in (("list", listed), ("head", headed)):
                finder = ReferrerFinder(repository, api_memory=memory)
                if mode == "head":
                    finder._tags_read = True  # as when the list is too long: a HEAD per tag
                started = time.perf_counter()
                for digest in digests:
                    found = await finder.find(digest)
                    assert not found.referrers
                into.append(time.perf_counter() - started)
    return statistics.median(listed), statistics.median(headed)


def discovery(registries: Any, tmp: Path, trials: int) -> str:
    """Tag list against a HEAD per tag, for a two-platform index (3 digests) without referrers,
    in a repository of 3, 1,003 and 5,003 tags."""
    import asyncio

    import httpx

    registry = registries.start_registry(tmp / "tags")
    rows = []
    try:
        index = registries.multi_arch("tags", layer_size=256)
        registries.push_index(registry, "bench/tags", index, "1")
        digests = [index.digest, *(image.digest for image in index.images)]
        tags = 1
        with httpx.Client(base_url=registry.url, timeout=60) as client:
            for wanted in (1, 1001, 5001):
                for n in range(tags, wanted):
                    registries.push_manifest(
                        client, "bench/tags", f"v{n}", index.data, index.media_type
                    )
                tags = wanted
                listed, headed = asyncio.run(_discovery_times(registry.host, digests, trials))
                rows.append(
                    f"| {tags + 2:,} | 1 | {listed * 1000:.1f} | {4 * len(digests)} "
                    f"| {headed * 1000:.1f} |"
                )
    finally:
        registry.stop()
    return "\n".join(
        [
            f"Finding the referrer tags of a two-platform index without referrers (3 digests) in "
            f"docker-registry, {trials} trials, medians:",
            "",
            "| tags in the repository | requests, tag list | ms | requests, HEAD per tag | ms |",
            "| ---: | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--discovery-only", action="store_true", help="only the tag-list part")
    args = parser.parse_args()
    stop_servers_on_sigterm()
    sys.path.insert(0, str(ROOT / "tests"))
    import registries
    from supply import tools

    with tempfile.TemporaryDirectory(prefix="swapper-referrers-bench-") as tmp_name:
        report = ""
        if not args.discovery_only:
            bench = Bench(registries, tools, Path(tmp_name))
            try:
                bench.build()
                samples = run(bench, args.rounds)
            finally:
                bench.stop()
            report = table(samples, args.rounds) + "\n\n"
        report += discovery(registries, Path(tmp_name), trials=15)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
