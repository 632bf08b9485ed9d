"""Instructions per admission request, counted by valgrind's callgrind: repeatable whatever else
the machine is doing, unlike wall-clock time on a shared 2-core machine.

Two tables:

- live servers (``bare``, ``bare-read``, ``swapper``) under callgrind, answering the realistic
  3-container pod posted by ``hey`` over HTTPS: instructions per request for the whole process
  (TLS, HTTP, ASGI, the handler), from the difference between two runs of different lengths;
- the in-process phases of swapper's handler, each run alone in a loop under callgrind.

Instructions are not time: interpreter code runs fewer instructions per cycle than the C code of
the TLS and HTTP layers, so swapper's share of the time is larger than its share of instructions.

    .venv/bin/python -m benchmarks.instructions [--requests 1000]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import stop_servers_on_sigterm
from benchmarks.run import (
    CONFIG,
    POD,
    ROOT,
    free_port,
    make_certs,
    start_https_process,
    stop,
)

VALGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
PHASES = (
    "loads",
    "parse_review",
    "plan",
    "resolve",
    "record",
    "describe",
    "patch",
    "response",
    "handler",
)


def _collected(output: str) -> int:
    found = re.search(r"Collected : (\d+)", output)
    if not found:
        raise RuntimeError(f"no callgrind total in:\n{output[-2000:]}")
    return int(found.group(1))


def phase_functions() -> dict[str, Callable[[], Any]]:
    """One zero-argument function per phase, all on the benchmark pod."""
    import os

    import orjson

    from swapper import logs
    from swapper.admission.answer import describe
    from swapper.admission.app import AdmissionHandler
    from swapper.admission.patches import build_patch
    from swapper.admission.review import Mode, build_response, parse_review
    from swapper.admission.server import tune_runtime
    from swapper.backends import Backends
    from swapper.config import load_config_file
    from swapper.mirror.memory import MemoryCopyQueue
    from swapper.mutation import requester_of
    from swapper.targets.memory import MemoryTarget

    logs.configure("info", "json", stream=open(os.devnull, "wb"))  # noqa: SIM115
    config = load_config_file(CONFIG)
    target = MemoryTarget(config.target.endpoint)
    handler = AdmissionHandler(config, Backends(target, MemoryCopyQueue(target)))
    body = POD.read_bytes()
    tune_runtime()

    def run(coroutine: Any) -> Any:  # nothing awaits on the `always` path: one step finishes it
        try:
            coroutine.send(None)
        except StopIteration as done:
            return done.value
        raise RuntimeError("the coroutine waited")

    review = parse_review(body)
    settled, candidates = handler.mutator.plan(review.object, review.namespace)
    who = requester_of(review.object, review.namespace)

    def resolve() -> Any:
        return run(handler.mutator.resolve(candidates, who, Mode.ENFORCE.side_effects))

    decisions = settled + resolve()
    secret = handler.policy.pull_secret
    patch = build_patch(review.object, decisions, secret, may_add_secret=True)
    warnings, annotations = describe(decisions, Mode.ENFORCE)
    return {
        "loads": lambda: orjson.loads(body),
        "parse_review": lambda: parse_review(body),
        "plan": lambda: handler.mutator.plan(review.object, review.namespace),
        "resolve": resolve,
        "record": lambda: handler._record(review, list(decisions), Mode.ENFORCE),
        "describe": lambda: describe(decisions, Mode.ENFORCE),
        "patch": lambda: build_patch(review.object, decisions, secret, may_add_secret=True),
        "response": lambda: orjson.dumps(
            build_response(review.api_version, review.uid, patch, warnings, annotations)
        ),
        "handler": lambda: orjson.dumps(run(handler(parse_review(body)))),
    }


def phase_instructions(phase: str, requests: int) -> int:
    counts = []
    for n in (10, 10 + requests):
        command = [*VALGRIND, sys.executable, "-m", "benchmarks.instructions"]
        command += ["--run-phase", phase, "--times", str(n)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
        counts.append(_collected(done.stderr))
    return (counts[1] - counts[0]) // requests


def server_command(name: str, cert_dir: Path, port: int) -> list[str]:
    tls = [str(cert_dir / "tls.crt"), str(cert_dir / "tls.key")]
    address = f"127.0.0.1:{port}"
    if name == "swapper":
        return [
            sys.executable,
            "-m",
            "swapper",
            "serve",
            "--config",
            str(CONFIG),
            "--tls-cert-file",
            tls[0],
            "--tls-key-file",
            tls[1],
            "--listen-address",
            address,
        ]
    command = [sys.executable, "-m", "benchmarks.bare", "--cert", tls[0], "--key", tls[1]]
    command += ["--listen-address", address]
    return [*command, "--read-body"] if name == "bare-read" else command


def live_instructions(name: str, requests: int, tmp: Path, cert_dir: Path) -> int:
    counts = []
    for n in (200, 200 + requests):
        port = free_port()
        out = tmp / f"{name}-{n}.log"
        command = [*VALGRIND, *server_command(name, cert_dir, port)]
        server = start_https_process(command, port, cert_dir, out, timeout=300)
        try:
            load = [shutil.which("hey") or "hey", "-n", str(n), "-c", "32", "-m", "POST"]
            load += ["-T", "application/json", "-D", str(POD), f"{server.url}/mutate"]
            subprocess.run(load, capture_output=True, check=True)
        finally:
            stop(server)
        counts.append(_collected(out.read_text()))
    return (counts[1] - counts[0]) // requests


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--run-phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--times", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    stop_servers_on_sigterm()
    if args.run_phase:  # the child run under callgrind
        function = phase_functions()[args.run_phase]
        for _ in range(args.times):
            function()
        return 0
    for tool in ("valgrind", "hey"):
        if not shutil.which(tool):
            print(f"{tool} is not installed (make bench installs it)", file=sys.stderr)
            return 2
    lines = ["| server | instructions per request |", "| --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cert_dir = make_certs(tmp / "certs")
        for name in ("bare", "bare-read", "swapper"):
            lines.append(f"| {name} | {live_instructions(name, args.requests, tmp, cert_dir):,} |")
            print(lines[-1], flush=True)
    lines.append("")
    lines += ["| in-process phase | instructions per request |", "| --- | --- |"]
    for phase in PHASES:
        count = phase_instructions(phase, args.requests)
        lines.append(f"| {phase} | {count:,} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "instructions.md").write_text(table + "\n")
    print(f"\nwritten to {out / 'instructions.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
