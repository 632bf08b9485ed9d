"""``make bench``: admission throughput and latency, swapper side by side with a bare endpoint.

Both servers run on the same stack (FastAPI, uvicorn with uvloop and httptools, the same TLS
context) in one process each; the bare one returns a fixed ``allowed`` response without reading
the request. ``hey`` (Debian) posts a realistic 3-container pod (init container, env, probes,
owner references) over HTTPS with keep-alive:

- throughput: 32 concurrent clients for ``--seconds``;
- latency: a steady 200 requests/s (4 workers x 50/s) for ``--seconds``.

Rounds alternate bare and swapper so machine noise hits both alike; the table reports the
median of the rounds, and the ratios are what the targets are about. Finally pyinstrument
profiles the handler in-process to show where the time goes.

    .venv/bin/python -m benchmarks.run [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def hey(url: str, seconds: float, concurrency: int, qps: int | None = None) -> dict[str, float]:
    command = [
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


def start_bare(tmp: Path, cert_dir: Path) -> Webhook:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "benchmarks.bare",
        "--cert",
        str(cert_dir / "tls.crt"),
        "--key",
        str(cert_dir / "tls.key"),
        "--listen-address",
        f"127.0.0.1:{port}",
    ]
    return start_https_process(command, port, cert_dir, tmp / "bare.log")


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

    async def loop() -> float:
        started = time.perf_counter()
        for _ in range(iterations):
            orjson.dumps(await handler(parse_review(body)))
        return time.perf_counter() - started

    profiler = Profiler(interval=0.0005)
    profiler.start()
    elapsed = asyncio.run(loop())
    profiler.stop()
    devnull.close()
    per_request = elapsed / iterations * 1e6
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    return f"in-process handler: {per_request:.0f} us per request ({iterations} requests)\n\n{text}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile-iterations", type=int, default=5000)
    args = parser.parse_args()
    if not shutil.which("hey"):
        print("hey is not installed (make bench installs it)", file=sys.stderr)
        return 2
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[float]]] = {"bare": {}, "swapper": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cert_dir = make_certs(tmp / "certs")
        servers = {
            "bare": start_bare(tmp, cert_dir),
            "swapper": start_webhook(tmp, CONFIG, cert_dir=cert_dir),
        }
        try:
            for server in servers.values():  # warm-up
                hey(server.url, 2, 8)
            for round_ in range(args.rounds):
                for name, server in servers.items():
                    through = hey(server.url, args.seconds, 32)
                    steady = hey(server.url, args.seconds, 4, qps=50)
                    row = results[name]
                    row.setdefault("rps", []).append(through["rps"])
                    row.setdefault("p50", []).append(steady["p50"])
                    row.setdefault("p99", []).append(steady["p99"])
                    row.setdefault("steady_rps", []).append(steady["rps"])
                    print(
                        f"round {round_ + 1} {name:8} {through['rps']:8.0f} req/s at c=32;"
                        f" at 200/s p50 {steady['p50']:.2f} ms p99 {steady['p99']:.2f} ms",
                        flush=True,
                    )
        finally:
            for server in servers.values():
                stop(server)
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    ratio_rps = med["swapper"]["rps"] / med["bare"]["rps"]
    ratio_p99 = med["swapper"]["p99"] / med["bare"]["p99"]
    table = "\n".join(
        [
            "| endpoint | req/s at 32 clients | p50 at 200 req/s | p99 at 200 req/s |",
            "| --- | --- | --- | --- |",
            *(
                f"| {n} | {m['rps']:.0f} | {m['p50']:.2f} ms | {m['p99']:.2f} ms |"
                for n, m in med.items()
            ),
            "",
            f"swapper/bare throughput: {ratio_rps:.0%} (target >= 60%)",
            f"swapper/bare p99 at 200 req/s: {ratio_p99:.2f}x (target <= 2x)",
        ]
    )
    print("\n" + table)
    profile = profile_handler(args.profile_iterations)
    print("\n" + profile)
    (out / "admission.md").write_text(table + "\n\n```\n" + profile + "\n```\n")
    print(f"\nwritten to {out / 'admission.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
