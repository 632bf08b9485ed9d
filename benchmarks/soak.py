"""``make bench``: memory over a long run of pods with never-seen images whose copies fail.

``swapper serve`` (the real process, over TLS, pinned to CPU 0 like ``benchmarks.run``) with
its default policies, ``imageSwapPolicy: exists`` and ``imageCopyPolicy: delayed``, and the
source access check on. Every AdmissionReview is the realistic 3-container pod of
``benchmarks.run`` whose three images are all new (a new repository and tag each), so every
admission adds to every per-image memory swapper has: an access answer per repository, an
existence answer per target image, a failed copy (and its backoff) per target image.

Both registries are one small HTTP/1.1 server on loopback (this module's ``registry``
command, a subprocess on CPU 1 with the load): the **source** answers ``HEAD`` of any
manifest (so every repository is public and its copy is queued) but refuses ``GET`` with
``DENIED``, so every copy fails at its third request; the **target** has no manifest (the
existence check says "not yet": the pod keeps its images) and refuses everything else.

The load is ``--admissions`` requests over ``--connections`` keep-alive TLS connections, one
at a time each. The server's RSS (``VmRSS`` of ``/proc/PID/status``) is sampled every
``--sample-every`` admissions; the first ``--warm-up`` admissions fill the caches to their
bounds, and the run is **flat** when no later sample is more than 10% above the sample at the
end of the warm-up.

    .venv/bin/python -m benchmarks.soak [--admissions 100000] [--connections 4]

Prints a markdown table and writes it to ``benchmarks/out/soak.md`` (``--output``); exits 1
when the run is not flat. ``SOAK_PYTHONPATH=CHECKOUT`` runs the server from another checkout
(a ``git worktree`` of an earlier commit), for a before/after comparison with the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import cpu_seconds, stop_servers_on_sigterm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from webhook_process import Webhook, free_port, make_certs, start_webhook, stop  # noqa: E402

POD = ROOT / "tests" / "fixtures" / "admission" / "three-containers.request.json"
LOAD_CPU = ["taskset", "-c", "1"] if (os.cpu_count() or 1) > 1 and shutil.which("taskset") else []
SERVER_CPU = ["taskset", "-c", "0"] if LOAD_CPU else []
FLAT_WITHIN = 0.10
IMAGES = 3  # per pod, each never seen before
T = TypeVar("T")

# -- the registries ---------------------------------------------------------------------------

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "c" * 64,
            "size": 2,
        },
        "layers": [],
    }
).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
_MANIFEST_PATH = re.compile(rb"^/v2/.+/manifests/[^/]+$")


def _response(status: str, headers: dict[str, str], body: bytes = b"", length: int = -1) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body) if length < 0 else length}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _error(status: str, code: str) -> bytes:
    body = json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
    return _response(status, {"Content-Type": "application/json"}, body)


PING = _response("200 OK", {"Content-Type": "application/json"}, b"{}")
SOURCE_HEAD = _response(
    "200 OK",
    {
        "Content-Type": "application/vnd.oci.image.manifest.v1+json",
        "Docker-Content-Digest": MANIFEST_DIGEST,
    },
    length=len(MANIFEST),
)
DENIED = _error("403 Forbidden", "DENIED")
UNKNOWN_HEAD = _response("404 Not Found", {"Content-Type": "application/json"}, length=0)


class _Registry(asyncio.Protocol):
    """One connection to the source or the target; requests carry no body in this run."""

    def __init__(self, source: bool) -> None:
        self.source = source
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is a Transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            method, path, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
            path = path.split(b"?", 1)[0]
            self.transport.write(self._answer(method, path))

    def _answer(self, method: bytes, path: bytes) -> bytes:
        if path in (b"/v2/", b"/v2"):
            return PING
        if method == b"HEAD" and _MANIFEST_PATH.match(path):
            return SOURCE_HEAD if self.source else UNKNOWN_HEAD
        return DENIED


async def serve_registries(source_port: int, target_port: int) -> None:
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(lambda: _Registry(True), "127.0.0.1", source_port),
        await loop.create_server(lambda: _Registry(False), "127.0.0.1", target_port),
    ]
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for server in servers:
            server.close()


@dataclass
class Registries:
    process: subprocess.Popen[str]
    source: str  # 127.0.0.1:PORT
    target: str


def start_registries() -> Registries:
    source, target = free_port(), free_port()
    command = [*LOAD_CPU, sys.executable, "-m", "benchmarks.soak", "registry"]
    process = subprocess.Popen(
        [*command, str(source), str(target)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        process.wait()
        raise RuntimeError("the registries did not start")
    return Registries(process, f"127.0.0.1:{source}", f"127.0.0.1:{target}")


def stop_registries(registries: Registries) -> None:
    registries.process.terminate()
    try:
        registries.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        registries.process.kill()
        registries.process.wait()


def write_config(path: Path, registries: Registries) -> Path:
    config = {
        # Errors only: every copy fails, and a warning per failure would make this a logging
        # benchmark. The counts come from /metrics.
        "logLevel": "error",
        "logFormat": "json",
        "imageSwapPolicy": "exists",
        "imageCopyPolicy": "delayed",
        "source": {"checkAccess": True},
        "target": {"type": "generic", "generic": {"registry": f"{registries.target}/mirror"}},
        "mirror": {
            "hosts": {registries.source: {"insecure": True}, registries.target: {"insecure": True}}
        },
    }
    path.write_text(json.dumps(config))
    return path


# -- the load --------------------------------------------------------------------------------


def review_template() -> str:
    """The pod of ``benchmarks.run`` with ``{n}`` in its uid, name and three images."""
    review = json.loads(POD.read_text())
    request = review["request"]
    request["uid"] = "soak-{n}"
    pod = request["object"]
    pod["metadata"]["name"] = "web-{n}"
    for container in [*pod["spec"]["containers"], *pod["spec"]["initContainers"]]:
        container["image"] = f"SOURCE/soak/{container['name']}-{{n}}:v{{n}}"
    return json.dumps(review, separators=(",", ":"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


async def post_all(
    hook: Webhook, source: str, admissions: int, connections: int, sample_every: int
) -> tuple[list[tuple[int, int]], float]:
    """Post every admission; returns (admissions done, server RSS in KiB) samples and the
    seconds it took."""
    template = review_template().replace("SOURCE", source)
    context = ssl.create_default_context(cafile=str(hook.cert_dir / "ca.crt"))
    host, port = hook.url.removeprefix("https://").split(":")
    samples = [(0, rss_kib(hook.process.pid))]
    sent = 0
    done = 0

    async def connection() -> None:
        nonlocal sent, done
        reader, writer = await asyncio.open_connection(host, int(port), ssl=context)
        try:
            while sent < admissions:
                n = sent
                sent += 1
                body = template.replace("{n}", str(n)).encode()
                writer.write(
                    b"POST /mutate HTTP/1.1\r\nHost: swapper\r\nContent-Type: application/json"
                    b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                head = await reader.readuntil(b"\r\n\r\n")
                status = head.split(b" ", 2)[1]
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                answer = await reader.readexactly(length)
                if status != b"200" or b'"allowed":true' not in answer:
                    raise RuntimeError(f"admission {n}: {status!r} {answer[:300]!r}")
                done += 1
                if done % sample_every == 0:
                    samples.append((done, rss_kib(hook.process.pid)))
                    print(f"{done:>7,} admissions: RSS {samples[-1][1] / 1024:.1f} MiB", flush=True)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return samples, time.perf_counter() - started


def metric_totals(hook: Webhook) -> dict[str, float]:
    """The server's counters this report names, summed over their labels unless named."""
    with hook.client() as client:
        text = client.get("/metrics").text
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^(swapper_[a-z_]+?)(?:_total)?(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if match is None or line.startswith("#"):
            continue
        name, labels, value = match.group(1), match.group(2) or "", float(match.group(3))
        reason = re.search(r'(?:reason|outcome|result)="([^"]+)"', labels)
        key = f"{name}{{{reason.group(1)}}}" if reason else name
        totals[key] = totals.get(key, 0.0) + value
    return totals


def soak(args: argparse.Namespace) -> tuple[list[tuple[int, int]], float, dict[str, float]]:
    registries = start_registries()
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            config = write_config(tmp / "soak.json", registries)
            checkout = os.environ.get("SOAK_PYTHONPATH")
            if checkout:  # `-m swapper` looks in the working directory first
                os.chdir(checkout)
            env = {"PYTHONPATH": checkout} if checkout else None
            hook = start_webhook(
                tmp, config, cert_dir=make_certs(tmp / "certs"), wrapper=SERVER_CPU, env=env
            )
            try:
                cpu = cpu_seconds(hook.process.pid)
                samples, seconds = run(
                    post_all(
                        hook,
                        registries.source,
                        args.admissions,
                        args.connections,
                        args.sample_every,
                    )
                )
                totals = metric_totals(hook)
                totals["cpu_seconds"] = cpu_seconds(hook.process.pid) - cpu
            finally:
                stop(hook)
    finally:
        stop_registries(registries)
    return samples, seconds, totals


def report(
    args: argparse.Namespace,
    samples: list[tuple[int, int]],
    seconds: float,
    totals: dict[str, float],
) -> tuple[str, bool]:
    by_count = dict(samples)
    done = samples[-1][0]
    base = min((n for n, _ in samples if n >= args.warm_up), default=done)
    after = [rss for n, rss in samples if n >= base]
    peak = max(after)
    growth = peak / by_count[base] - 1
    flat = growth <= FLAT_WITHIN
    marks = [0, base, *(n for n in (50_000, 100_000) if n in by_count), done]
    rows = [
        "| admissions | server RSS |",
        "| --- | --- |",
        *(f"| {n:,} | {by_count[n] / 1024:.1f} MiB |" for n in dict.fromkeys(marks)),
    ]
    failed = sum(v for k, v in totals.items() if k.startswith("swapper_copies_failed{"))
    started = totals.get("swapper_copies_started", 0.0)
    lines = [
        *rows,
        "",
        f"{done:,} admissions in {seconds:.0f} s ({done / seconds:.0f}/s, {args.connections}"
        f" connections, server CPU {totals['cpu_seconds'] / done * 1e3:.1f} ms each);"
        f" {done * IMAGES:,} images, {started:,.0f} copies started and {failed:,.0f} failed"
        " (the others found the copy queue full).",
        f"After the warm-up ({base:,} admissions): peak {peak / 1024:.1f} MiB,"
        f" {growth:+.1%} on the warm-up's {by_count[base] / 1024:.1f} MiB:"
        f" {'flat' if flat else 'NOT flat'} within {FLAT_WITHIN:.0%}.",
        "",
        "Every sample (admissions: RSS MiB): "
        + ", ".join(f"{n / 1000:g}k: {rss / 1024:.1f}" for n, rss in samples),
    ]
    return "\n".join(lines), flat


def main() -> int:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command")
    registry = commands.add_parser("registry", help="(internal) serve the two registries")
    registry.add_argument("source_port", type=int)
    registry.add_argument("target_port", type=int)
    parser.add_argument("--admissions", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--sample-every", type=int, default=5_000)
    parser.add_argument("--warm-up", type=int, default=10_000)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "out" / "soak.md")
    args = parser.parse_args()
    if args.command == "registry":
        run(serve_registries(args.source_port, args.target_port))
        return 0
    stop_servers_on_sigterm()
    if LOAD_CPU:  # the load and the registries on CPU 1, the server on CPU 0
        os.sched_setaffinity(0, {1})
    samples, seconds, totals = soak(args)
    table, flat = report(args, samples, seconds, totals)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table + "\n")
    print(f"\nwritten to {args.output}")
    return 0 if flat else 1


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop, as ``swapper serve`` runs."""
    import uvloop

    return uvloop.run(main)


if __name__ == "__main__":
    raise SystemExit(main())
