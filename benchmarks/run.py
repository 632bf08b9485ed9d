"""``make bench``: admission throughput and latency, swapper side by side with a bare endpoint
and with k8s-image-swapper, the webhook it replaces.

All servers run on the same stack (FastAPI, uvicorn with uvloop and httptools, the same TLS
context and runtime settings), one process each, pinned to CPU 0 while the load tool runs on
CPU 1. Two baselines answer a fixed ``allowed`` AdmissionReview without parsing: ``bare`` does
not even read the request body, ``bare-read`` reads it (as any webhook must) and ignores it.
A third, ``bare-parse``, parses it as swapper does and answers ``allowed`` for its uid: the
floor under swapper's per-container work. The request is a realistic 3-container pod (init
container, env, probes, owner references):

- throughput: ``wrk`` (Debian), 32 keep-alive connections, for ``--seconds``, with the
  server's CPU time per request (user + system, from ``/proc``) over the same run;
- latency: ``hey`` (Debian) at a steady 200 requests/s (4 workers x 50/s), for ``--seconds``;
- memory: resident set size (``VmRSS``, summed over the server's process tree) at idle, once
  started and answered one review, before any load, and under load, the largest of samples
  taken every 0.2 s while ``wrk`` runs.

The peer, k8s-image-swapper (built by ``benchmarks/peers.py`` at a pinned release into the
benchmark cache), runs beside ``swapper serve`` on one config both load, in the reference's own
format (``reference_config``: its sample with swap policy ``always``, no copies, JSON logs at
``info``, the same ``kube-system`` filter, an ECR target), on the same TLS certificate, pinned
the same way, and gets the same review on ``/webhook`` (the path both serve). Its ECR client
(aws-sdk-go v1, which reads no ``AWS_ENDPOINT_URL``) reaches moto through ``moto_proxy`` on
loopback (``HTTPS_PROXY``, moto's CA in ``SSL_CERT_FILE``); swapper's ECR target reaches moto in
server mode through ``endpointUrl``. A peer that cannot be built or started gets a row with the
reason, and the benchmark goes on.

Rounds alternate the servers so machine noise hits all alike; the table reports the median of
the rounds, and the ratios are what the targets are about: against k8s-image-swapper, on the
shared config, swapper's p99 at 200 req/s at most the peer's and its throughput at least half
the peer's (a missed target is given with by how much). Finally pyinstrument profiles the
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
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks import cpu_seconds, peers, stop_servers_on_sigterm

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
REFERENCE_SAMPLE = ROOT / "tests" / "fixtures" / "k8s-image-swapper" / "k8s-image-swapper.yml"
PEER = "k8s-image-swapper"
SHARED = "swapper, reference config"
CONFIGS = {
    "bare": "fixed answer",
    "bare-read": "fixed answer",
    "bare-parse": "parse only",
    "swapper": "`webhook.yaml`",
    SHARED: "shared reference-format config",
    PEER: "shared reference-format config",
}
MOTO_ACCOUNT, MOTO_REGION = "123456789012", "eu-west-1"


LOAD_CPU = ["taskset", "-c", "1"] if (os.cpu_count() or 1) > 1 and shutil.which("taskset") else []
SERVER_CPU = ["taskset", "-c", "0"] if LOAD_CPU else []


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` and its descendants (0 once gone)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            tasks = Path(f"/proc/{current}/task").iterdir()
            children = [Path(t, "children").read_text().split() for t in tasks]
        except OSError:
            continue
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total += int(found.group(1)) * 1024 if found else 0
        pending += [int(child) for listed in children for child in listed]
    return total


@contextmanager
def peak_rss(pid: int, every: float = 0.2) -> Iterator[list[int]]:
    """The largest resident set of ``pid``'s tree while the block runs, sampled every
    ``every`` seconds: ``[bytes]`` once the block is done."""
    samples: list[int] = [rss_bytes(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(every):
            samples.append(rss_bytes(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    peak = [0]
    try:
        yield peak
    finally:
        done.set()
        thread.join(timeout=5)
        samples.append(rss_bytes(pid))
        peak[0] = max(samples)


WRK_TIMEOUT = 10  # seconds; wrk's own 2 s cut a saturated k8s-image-swapper's slowest answers


def wrk(
    url: str, seconds: float, connections: int, lua: Path, path: str = "/mutate"
) -> tuple[float, int, int]:
    """Requests per second over ``connections`` keep-alive connections, requests done, and
    requests not answered within ``WRK_TIMEOUT`` (counted, not fatal: a saturated server's
    outcome). Any other error (an answer that is not 2xx, a connection refused or broken)
    stops the benchmark."""
    command = [*LOAD_CPU, shutil.which("wrk") or "wrk", "-t", "1", "-c", str(connections)]
    command += ["-d", f"{round(seconds)}s", "--timeout", f"{WRK_TIMEOUT}s"]
    command += ["-s", str(lua), f"{url}{path}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    broken = errors is not None and any(int(n) for n in errors.groups()[:3])
    if "Non-2xx" in output or broken or ("Socket errors" in output and errors is None):
        raise RuntimeError(f"errors during the run:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return rps, done, int(errors.group(4)) if errors else 0


def write_lua(path: Path) -> Path:
    body = json.dumps(POD.read_text())
    script = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    path.write_text("\n".join([*script, f"wrk.body = {body}", ""]))
    return path


def hey(
    url: str, seconds: float, concurrency: int, qps: int | None = None, path: str = "/mutate"
) -> dict[str, float]:
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
        [*command, f"{url}{path}"], capture_output=True, text=True, check=True
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


def reference_config(path: Path, moto_url: str) -> Path:
    """The config both webhooks load, in k8s-image-swapper's format (swapper reads it too): the
    reference sample with the benchmark's choices. Swap policy ``always`` and no copies, as in
    ``webhook.yaml`` (a copy would reach for the images' real registries); JSON logs at
    ``info``; the sample's ``kube-system`` filter; its ECR target in moto's account and region,
    without the sample's role (nothing to assume). ``endpointUrl`` (moto) and
    ``source.checkAccess: false`` (the private-image check would ask the real registries) are
    swapper's keys; k8s-image-swapper ignores keys it does not know."""
    import yaml

    config = yaml.safe_load(REFERENCE_SAMPLE.read_text())
    config.update(
        dryRun=False,
        logLevel="info",
        logFormat="json",
        imageSwapPolicy="always",
        imageCopyPolicy="none",
    )
    config["source"]["checkAccess"] = False
    aws = config["target"]["aws"]
    aws.pop("role", None)
    aws.update(accountId=MOTO_ACCOUNT, region=MOTO_REGION, endpointUrl=moto_url)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def wait_https(hook: Webhook, path: str, timeout: float = 30) -> Webhook:
    """Wait until ``GET path`` answers 200 over TLS (k8s-image-swapper has no ``/readyz``)."""
    import httpx

    deadline = time.monotonic() + timeout
    with hook.client() as client:
        while True:
            if hook.process.poll() is not None:
                raise RuntimeError(f"exited {hook.process.returncode}: {hook.logs()[-800:]}")
            try:
                if client.get(path).status_code == 200:
                    return hook
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                stop(hook)
                raise RuntimeError(f"never answered {path}: {hook.logs()[-800:]}")
            time.sleep(0.05)


def start_moto_proxy(tmp: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    """moto's intercepting proxy on loopback (``benchmarks/ecr_proxy.py``: its ECR tokens
    expire in 12 hours, as AWS's and the moto server's here do): the AWS SDK for Go v1 reads no
    ``AWS_ENDPOINT_URL``, so the peer's ECR calls go through ``HTTPS_PROXY`` to moto, which
    answers them with a certificate from its own CA."""
    import socket

    import moto.moto_proxy

    port = free_port()
    with (tmp / "moto-proxy.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.ecr_proxy", "-H", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("moto_proxy did not start") from None
            time.sleep(0.05)
    ca = Path(moto.moto_proxy.__file__).parent / "ca.crt"
    try:
        warm_moto_proxy(port, ca, f"api.ecr.{MOTO_REGION}.amazonaws.com")
    except RuntimeError:
        process.kill()
        process.wait(timeout=10)
        raise
    return process, port, ca


def warm_moto_proxy(port: int, ca: Path, host: str, timeout: float = 20) -> None:
    """Check that moto_proxy answers for ``host`` with a certificate that verifies against
    moto's CA (it mints one per host on first use) before the peer starts: the peer asks ECR
    for a token once, at start, and exits if that fails."""
    import ssl

    import httpx

    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    with httpx.Client(proxy=f"http://127.0.0.1:{port}", verify=context, timeout=10) as client:
        while True:
            try:
                client.post(f"https://{host}/", content=b"{}")
                return  # any answer: the handshake verified
            except httpx.TransportError as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_proxy's {host} does not verify: {error}") from None
                time.sleep(0.2)


def start_peer(
    tmp: Path, cert_dir: Path, binary: str, config: Path, proxy_port: int, proxy_ca: Path
) -> Webhook:
    """k8s-image-swapper on the shared config and certificate, pinned like swapper."""
    from moto_ecr import ENV, UNSET

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(ENV)
    env.update(
        AWS_REGION=MOTO_REGION,
        HTTPS_PROXY=f"http://127.0.0.1:{proxy_port}",
        NO_PROXY="127.0.0.1,localhost",
        # Go's roots, and the AWS SDK's own bundle, which replaces them when set (a machine's
        # AWS_CA_BUNDLE would leave moto's CA out: "certificate signed by unknown authority").
        SSL_CERT_FILE=str(proxy_ca),
        AWS_CA_BUNDLE=str(proxy_ca),
        HOME=str(tmp),
    )
    command = [*SERVER_CPU, binary, "--config", str(config)]
    command += ["--tls-cert-file", str(cert_dir / "tls.crt")]
    command += ["--tls-key-file", str(cert_dir / "tls.key")]
    command += ["--listen-address", f"127.0.0.1:{port}"]
    log = tmp / f"{PEER}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    hook = wait_https(Webhook(f"https://127.0.0.1:{port}", cert_dir, process, log), "/")
    if "unknown image copy policy" in hook.logs():
        # Its releases without ``none`` fall back to ``delayed``: every admission would start
        # copies from the images' real registries, off this machine.
        stop(hook)
        raise RuntimeError("this release has no imageCopyPolicy none (copies would leave loopback)")
    return hook


def profile_handler(iterations: int) -> str:
    """pyinstrument over the in-process hot path: parse, decide, patch, serialise."""
    import orjson
    from pyinstrument import Profiler

    from swapper import logs
    from swapper.admission.app import AdmissionHandler
    from swapper.admission.review import parse_review
    from swapper.backends import Backends
    from swapper.config import load_config_file
    from swapper.mirror.memory import MemoryCopyQueue
    from swapper.targets.memory import MemoryTarget

    # Decision lines are part of the cost: render them, write them nowhere.
    devnull = open(os.devnull, "wb")  # noqa: SIM115
    logs.configure("info", "json", stream=devnull)
    config = load_config_file(CONFIG)
    target = MemoryTarget(config.target.endpoint)
    handler = AdmissionHandler(config, Backends(target, MemoryCopyQueue(target)))
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


GIT_STATUS = ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]
CODE = ["swapper", "benchmarks", "tests", "pyproject.toml"]  # what is measured, not the docs


def swapper_version() -> str:
    """The commit the benchmark runs (and whether its code differs from it)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        changed = subprocess.run(
            [*GIT_STATUS, "--", *CODE],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "(no git)"
    return f"commit {head}" + (" with uncommitted changes" if changed else "") if head else "?"


def peer_targets(ours: dict[str, float], theirs: dict[str, float]) -> list[str]:
    """The table of the issue's targets against k8s-image-swapper: swapper (on the shared
    config) p99 at 200 req/s <= the peer's, throughput at 32 connections >= 0.5x the peer's;
    a missed target with by how much. CPU and memory are compared without a target."""
    p99 = ours["p99"] / theirs["p99"]
    rps = ours["rps"] / theirs["rps"]
    p99_result = (
        "met"
        if p99 <= 1
        else f"**missed** by {p99 - 1:.0%} (+{ours['p99'] - theirs['p99']:.2f} ms)"
    )
    rps_result = (
        "met"
        if rps >= 0.5
        else f"**missed** by {1 - rps / 0.5:.0%}"
        f" ({0.5 * theirs['rps'] - ours['rps']:.0f} req/s short)"
    )
    return [
        f"| {SHARED} against {PEER} | swapper | {PEER} | ratio | target |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| p99 at 200 req/s (target <= 1x) | {ours['p99']:.2f} ms | {theirs['p99']:.2f} ms"
        f" | {p99:.2f}x | {p99_result} |",
        f"| throughput, 32 connections (target >= 0.5x) | {ours['rps']:.0f} req/s"
        f" | {theirs['rps']:.0f} req/s | {rps:.2f}x | {rps_result} |",
        f"| rate the 200 req/s run reached | {ours['steady_rps']:.0f} req/s"
        f" | {theirs['steady_rps']:.0f} req/s | | |",
        f"| p50 at 200 req/s | {ours['p50']:.2f} ms | {theirs['p50']:.2f} ms"
        f" | {ours['p50'] / theirs['p50']:.2f}x | |",
        f"| CPU per request | {ours['cpu']:.0f} us | {theirs['cpu']:.0f} us"
        f" | {ours['cpu'] / theirs['cpu']:.2f}x | |",
        f"| RSS idle | {ours['rss_idle']:.1f} MiB | {theirs['rss_idle']:.1f} MiB"
        f" | {ours['rss_idle'] / theirs['rss_idle']:.2f}x | |",
        f"| RSS under load | {ours['rss_load']:.1f} MiB | {theirs['rss_load']:.1f} MiB"
        f" | {ours['rss_load'] / theirs['rss_load']:.2f}x | |",
    ]


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
    found = peers.ensure([PEER])[PEER]
    from moto_ecr import MotoServer, tokens_expire_like_aws

    tokens_expire_like_aws()  # both webhooks' ECR: tokens that last 12 hours, as AWS's

    results: dict[str, dict[str, list[float]]] = {}
    missing: dict[str, str] = {}
    servers: dict[str, tuple[Webhook, str]] = {}  # name -> (server, path)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cert_dir = make_certs(tmp / "certs")
        lua = write_lua(tmp / "post.lua")
        moto = MotoServer().start()
        proxy: subprocess.Popen[bytes] | None = None
        shared = reference_config(tmp / "reference-format.yml", moto.url)
        try:
            servers["bare"] = (start_bare(tmp, cert_dir), "/mutate")
            servers["bare-read"] = (start_bare(tmp, cert_dir, "--read-body"), "/mutate")
            servers["bare-parse"] = (start_bare(tmp, cert_dir, "--parse"), "/mutate")
            servers["swapper"] = (
                start_webhook(tmp, CONFIG, cert_dir=cert_dir, wrapper=SERVER_CPU),
                "/mutate",
            )
            servers[SHARED] = (
                start_webhook(
                    tmp, shared, cert_dir=cert_dir, wrapper=SERVER_CPU, env=moto.environment()
                ),
                "/webhook",
            )
            if found.ok and found.path:
                try:
                    proxy, proxy_port, proxy_ca = start_moto_proxy(tmp)
                    peer = start_peer(tmp, cert_dir, found.path, shared, proxy_port, proxy_ca)
                    servers[PEER] = (peer, "/webhook")
                except RuntimeError as error:
                    missing[PEER] = f"could not start: {error}"
            else:
                missing[PEER] = f"not built: {found.reason}"
            time.sleep(2)  # idle: started, answered its readiness check, nothing else
            idle = {name: rss_bytes(server.process.pid) for name, (server, _) in servers.items()}
            for server, path in servers.values():  # warm-up
                wrk(server.url, 2, 8, lua, path)
            for round_ in range(args.rounds):
                for name, (server, path) in servers.items():
                    before = cpu_seconds(server.process.pid)
                    with peak_rss(server.process.pid) as peak:
                        rps, done, late = wrk(server.url, args.seconds, 32, lua, path)
                    cpu = (cpu_seconds(server.process.pid) - before) / done * 1e6
                    steady = hey(server.url, args.seconds, 4, qps=50, path=path)
                    row = results.setdefault(name, {})
                    row.setdefault("rps", []).append(rps)
                    row.setdefault("cpu", []).append(cpu)
                    row.setdefault("p50", []).append(steady["p50"])
                    row.setdefault("p99", []).append(steady["p99"])
                    row.setdefault("steady_rps", []).append(steady["rps"])
                    row.setdefault("timeouts", []).append(late)
                    row.setdefault("rss_idle", []).append(idle[name] / 2**20)
                    row.setdefault("rss_load", []).append(peak[0] / 2**20)
                    print(
                        f"round {round_ + 1} {name:10} {rps:8.0f} req/s at 32 connections"
                        f" ({cpu:.0f} us CPU per request, RSS {peak[0] / 2**20:.1f} MiB"
                        f"{f', {late} not answered in {WRK_TIMEOUT} s' if late else ''});"
                        f" at 200 req/s ({steady['rps']:.0f} done) p50 {steady['p50']:.2f} ms"
                        f" p99 {steady['p99']:.2f} ms",
                        flush=True,
                    )
        finally:
            for server, _ in servers.values():
                stop(server)
            if proxy is not None:
                proxy.terminate()
                try:
                    proxy.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proxy.kill()
                    proxy.wait()
            moto.stop()
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    late = {n: sum(r["timeouts"]) for n, r in results.items()}
    ours = swapper_version()
    versions = {n: ours for n in CONFIGS if n != PEER} | {PEER: found.label}
    lines = [
        f"`python -m benchmarks.run --seconds {args.seconds:g} --rounds {args.rounds}`,"
        f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: swapper {ours},"
        f" {PEER} {found.label}; medians of {args.rounds} rounds",
        "",
        "| endpoint | version | config, path | req/s, 32 connections | CPU per request "
        "| p50 at 200 req/s | p99 at 200 req/s | RSS idle | RSS under load |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {n} | {versions[n]} | {CONFIGS[n]}, `{servers[n][1]}` | {m['rps']:.0f}"
            + (f" ({late[n]} not answered in {WRK_TIMEOUT} s, all rounds)" if late[n] else "")
            + " "
            f"| {m['cpu']:.0f} us | {m['p50']:.2f} ms | {m['p99']:.2f} ms "
            f"| {m['rss_idle']:.1f} MiB | {m['rss_load']:.1f} MiB |"
            for n, m in med.items()
        ),
        *(
            f"| {n} | {versions[n]} | {CONFIGS[n]}, `/webhook` | {why} | | | | | |"
            for n, why in missing.items()
        ),
        "",
    ]
    sw = med["swapper"]
    if PEER in med:
        lines += [*peer_targets(med[SHARED], med[PEER]), ""]
    else:
        lines += [f"{PEER}: not measured ({missing.get(PEER, 'no result')})", ""]
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
