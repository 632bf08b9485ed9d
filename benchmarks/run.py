"""``make bench``: admission throughput and latency, swapper side by side with a bare endpoint.

All servers run on the same stack (FastAPI, uvicorn with uvloop and httptools, the same TLS
context and runtime settings), one process each, pinned to CPU 0 while the load tool runs on
CPU 1. Two baselines answer a fixed ``allowed`` AdmissionReview without parsing: ``bare`` does
not even read the request body, ``bare-read`` reads it (as any webhook must) and ignores it.
A third, ``bare-parse``, parses it as swapper does and answers ``allowed`` for its uid: the
floor under swapper's per-container work. The request is a realistic 3-container pod (init
container, env, probes, owner references):

- throughput: ``wrk`` (Debian), 32 keep-alive connections, for ``--seconds``, with the
  server's CPU time per request (user + system, from ``/proc``) over the same run;
- latency: ``hey`` (Debian) at a steady 200 requests/s (4 workers x 50/s), for ``--seconds``.

Rounds alternate the servers so machine noise hits all alike; the table reports the median of
the rounds, and the ratios are what the targets are about. Finally pyinstrument profiles the
handler in-process to show where the time goes.

    .venv/bin/python -m benchmarks.run [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import stop_servers_on_sigterm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from webhook_process import (  # noqa: E402
    Webhook,
    free_port,
    make_certs,
    start_https_process,
    start_webhook,
    stop,
)

POD = ROOT / "tests" / "fixtures" / "admission" / "three-containers.request.json"
CONFIG = ROOT / "tests" / "fixtures" / "configs" / "webhook.yaml"


LOAD_CPU = ["taskset", "-c", "1"] if (os.cpu_count() or 1) > 1 and shutil.which("taskset") else []
SERVER_CPU = ["taskset", "-c", "0"] if LOAD_CPU else []


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, seconds: float, connections: int, lua: Path) -> tuple[float, int]:
    """Requests per second over ``connections`` keep-alive connections, and requests done."""
    command = [*LOAD_CPU, shutil.which("wrk") or "wrk", "-t", "1", "-c", str(connections)]
    command += ["-d", f"{round(seconds)}s", "-s", str(lua), f"{url}/mutate"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"errors during the run:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return rps, int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]


def write_lua(path: Path) -> Path:
    body = json.dumps(POD.read_text())
    script = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    path.write_text("\n".join([*script, f"wrk.body = {body}", ""]))
    return path


def hey(url: str, seconds: float, concurrency: int, qps: int | None = None) -> dict[str, float]:
    command = [
        *LOAD_CPU,
        shutil.which("hey") or "hey",
        "-z",
        f"{seconds}s",
        "-c",
        str(concurrency),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-D",
        str(POD),
    ]
    if qps:
        command += ["-q", str(qps)]
    output = subprocess.run(
        [*command, f"{url}/mutate"], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    found = dict(re.findall(r"\s(\d+)% in ([\d.]+) secs", output))
    statuses = re.findall(r"\[(\d+)\]\s+(\d+) responses", output)
    bad = sum(int(n) for code, n in statuses if code != "200")
    if bad or not statuses:
        raise RuntimeError(f"non-200 answers during the run:\n{output}")
    return {"rps": rps, "p50": float(found["50"]) * 1000, "p99": float(found["99"]) * 1000}


def start_bare(tmp: Path, cert_dir: Path, *extra: str) -> Webhook:
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.bare", "--cert", str(cert_dir / "tls.crt")]
    command += ["--key", str(cert_dir / "tls.key"), "--listen-address", f"127.0.0.1:{port}"]
    return start_https_process(
        [*SERVER_CPU, *command, *extra], port, cert_dir, tmp / f"bare-{port}.log"
    )


def profile_handler(iterations: int) -> str:
    """pyinstrument over the in-process hot path: parse, decide, patch, serialise."""
    import orjson
    from pyinstrument import Profiler

    from swapper import logs
    from swapper.admission import parse_review
    from swapper.app import AdmissionHandler, Dependencies
    from swapper.config import load_config_file
    from swapper.mirror.queue import MemoryCopyQueue
    from swapper.targets.memory import MemoryTarget

    # Decision lines are part of the cost: render them, write them nowhere.
    devnull = open(os.devnull, "wb")  # noqa: SIM115
    logs.configure("info", "json", stream=devnull)
    config = load_config_file(CONFIG)
    target = MemoryTarget(config.target.endpoint)
    handler = AdmissionHandler(config, Dependencies(target, MemoryCopyQueue(target)))
    body = POD.read_bytes()

    async def loop(n: int = iterations) -> float:
        started = time.perf_counter()
        for _ in range(n):
            orjson.dumps(await handler(parse_review(body)))
        return time.perf_counter() - started

    asyncio.run(loop(500))  # warm-up: caches filled, code paths taken once
    plain = asyncio.run(loop()) / iterations * 1e6  # without the profiler's overhead
    profiler = Profiler(interval=0.0005)
    profiler.start()
    profiled = asyncio.run(loop()) / iterations * 1e6
    profiler.stop()
    devnull.close()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    return (
        f"in-process handler: {plain:.0f} us per request ({iterations} requests),"
        f" {profiled:.0f} us under the profiler\n\n{text}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile-iterations", type=int, default=5000)
    args = parser.parse_args()
    stop_servers_on_sigterm()
    for tool in ("hey", "wrk"):
        if not shutil.which(tool):
            print(f"{tool} is not installed (make bench installs it)", file=sys.stderr)
            return 2
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cert_dir = make_certs(tmp / "certs")
        lua = write_lua(tmp / "post.lua")
        servers = {
            "bare": start_bare(tmp, cert_dir),
            "bare-read": start_bare(tmp, cert_dir, "--read-body"),
            "bare-parse": start_bare(tmp, cert_dir, "--parse"),
            "swapper": start_webhook(tmp, CONFIG, cert_dir=cert_dir, wrapper=SERVER_CPU),
        }
        try:
            for server in servers.values():  # warm-up
                wrk(server.url, 2, 8, lua)
            for round_ in range(args.rounds):
                for name, server in servers.items():
                    before = cpu_seconds(server.process.pid)
                    rps, done = wrk(server.url, args.seconds, 32, lua)
                    cpu = (cpu_seconds(server.process.pid) - before) / done * 1e6
                    steady = hey(server.url, args.seconds, 4, qps=50)
                    row = results.setdefault(name, {})
                    row.setdefault("rps", []).append(rps)
                    row.setdefault("cpu", []).append(cpu)
                    row.setdefault("p50", []).append(steady["p50"])
                    row.setdefault("p99", []).append(steady["p99"])
                    print(
                        f"round {round_ + 1} {name:10} {rps:8.0f} req/s at 32 connections"
                        f" ({cpu:.0f} us CPU per request);"
                        f" at 200 req/s p50 {steady['p50']:.2f} ms p99 {steady['p99']:.2f} ms",
                        flush=True,
                    )
        finally:
            for server in servers.values():
                stop(server)
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    sw = med["swapper"]
    lines = [
        "| endpoint | req/s, 32 connections | CPU per request | p50 at 200 req/s |"
        " p99 at 200 req/s |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {n} | {m['rps']:.0f} | {m['cpu']:.0f} us | {m['p50']:.2f} ms | {m['p99']:.2f} ms |"
            for n, m in med.items()
        ),
        "",
    ]
    for base in ("bare", "bare-read", "bare-parse"):
        targets = (" (target >= 60%)", " (target <= 2x)") if base == "bare" else ("", "")
        lines.append(
            f"swapper/{base}: throughput {sw['rps'] / med[base]['rps']:.0%}{targets[0]},"
            f" p99 {sw['p99'] / med[base]['p99']:.2f}x{targets[1]}"
        )
    table = "\n".join(lines)
    print("\n" + table)
    profile = profile_handler(args.profile_iterations)
    print("\n" + profile)
    (out / "admission.md").write_text(table + "\n\n```\n" + profile + "\n```\n")
    print(f"\nwritten to {out / 'admission.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
