"""Start-up benchmark: what ``swapper mirror`` costs before and around a copy, side by side.

With ``benchmarks/copy.py``'s registries, images and commands (one source ``docker-registry``
over TLS holding its 200 MiB multi-arch image, a fresh TLS target per tool):

- **no-op**: the image already in the target, the same copy command ``--runs`` (20) times per
  tool, the tools taking turns run by run: what a re-check costs, which is start-up, two TLS
  handshakes and two ``HEAD`` requests;
- ``swapper mirror --help`` and the interpreter alone (``python -c pass``, the same virtual
  environment): the floor under any Python command;
- **200 MiB copy**: ``--rounds`` (5) copies per tool into a fresh target each, turns rotating;
- with ``--baseline DIR``, the no-op also with the ``swapper`` package of another source tree
  (before and after a change); and the no-op with ``SSL_CERT_FILE`` naming the system bundle
  (swapper then loads it whole; by default it is run, as from a user's shell, without).

Each run's client CPU (user + system) comes from ``os.wait4``'s rusage of GNU ``time`` around
the tool (``copy.Bench.timed``); the tables give medians, and the no-op copies' target is
checked equal to the source after every run.

    .venv/bin/python -m benchmarks.startup [--runs 20] [--rounds 5] [--tools swapper,crane,...]
        [--baseline OTHER_TREE]

Writes ``benchmarks/out/startup.md`` and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import copy, peers, stop_servers_on_sigterm

ROOT = copy.ROOT
OUT = ROOT / "benchmarks" / "out" / "startup.md"
TOOLS = ("swapper", "crane", "regctl", "skopeo")
NOOP_TARGET = 0.08  # CPU-s of a no-op swapper mirror (issue 26)


def _swapper_shim(tmp: Path) -> Path:
    """``.venv/bin/swapper`` when this tree has one; else the same console script, written
    for the interpreter running this benchmark (a git worktree sharing another's venv)."""
    if copy.SWAPPER.exists():
        return copy.SWAPPER
    shim = tmp / "swapper"
    shim.write_text(
        f"#!{sys.executable}\nimport sys\nfrom swapper.cli import console\nsys.exit(console())\n"
    )
    shim.chmod(0o755)
    return shim


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="no-op runs per tool")
    parser.add_argument("--rounds", type=int, default=5, help="200 MiB copies per tool")
    parser.add_argument("--tools", help="comma-separated subset of " + ",".join(TOOLS))
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also time the no-op with the swapper package of another source tree (before/after)",
    )
    args = parser.parse_args()
    stop_servers_on_sigterm()
    sys.path.insert(0, str(ROOT / "tests"))
    import registries

    wanted = args.tools.split(",") if args.tools else list(TOOLS)
    found = peers.ensure([t for t in wanted if t != "swapper"])
    tools = [t for t in wanted if t == "swapper" or (t in found and found[t].ok)]
    if "swapper" not in tools:
        parser.error("--tools must include swapper: the table compares the others with it")
    noop: dict[str, list[copy.Sample]] = {t: [] for t in tools}
    floor: dict[str, list[copy.Sample]] = {"swapper mirror --help": [], "python -c pass": []}
    large: dict[str, list[copy.Sample]] = {t: [] for t in tools}
    with tempfile.TemporaryDirectory(prefix="swapper-startup-bench-") as tmp_name:
        tmp = Path(tmp_name)
        copy.SWAPPER = _swapper_shim(tmp)
        bench = copy.Bench(registries, tmp, found)
        # As in a user's shell: no SSL_CERT_FILE (this machine's environment sets one), so
        # swapper trusts the system's CAs the way it does by default. (The Go tools are given
        # SSL_CERT_FILE=BUNDLE, which replaces their system roots with the two test CAs.)
        env = dict(bench.python_env, PYTHONPATH=str(ROOT))
        env.pop("SSL_CERT_FILE", None)
        bench.python_env = env
        system_bundle = ssl.get_default_verify_paths().cafile
        bundled = f"swapper, SSL_CERT_FILE={system_bundle}" if system_bundle else None
        try:
            copy.build(bench, copy.LARGE)
            reference = "bench/large:1"
            targets = {}
            for tool in tools:  # each tool's own target, the image copied there once
                target, bundle = bench.target()
                targets[tool] = (target, bundle)
                bench.copy(tool, reference, "mirror/large:1", target, bundle)
            baseline = f"swapper ({args.baseline})" if args.baseline else None
            if baseline:
                floor = {baseline: [], **floor}
            if bundled:
                floor = {bundled: [], **floor}
            for run in range(args.runs):
                for tool in tools[run % len(tools) :] + tools[: run % len(tools)]:
                    target, bundle = targets[tool]
                    noop[tool].append(bench.copy(tool, reference, "mirror/large:1", target, bundle))
                target, bundle = targets["swapper"]
                command, _ = bench.command("swapper", reference, "mirror/large:1", target, bundle)
                if baseline:
                    floor[baseline].append(
                        bench.timed(command, dict(env, PYTHONPATH=args.baseline), target)
                    )
                if bundled:
                    with_file = dict(env, SSL_CERT_FILE=str(system_bundle))
                    floor[bundled].append(bench.timed(command, with_file, target))
                target = targets[tools[0]][0]
                floor["swapper mirror --help"].append(
                    bench.timed([str(copy.SWAPPER), "mirror", "--help"], env, target)
                )
                floor["python -c pass"].append(
                    bench.timed([sys.executable, "-c", "pass"], env, target)
                )
            for target, _ in targets.values():
                bench.drop(target)
            for index in range(args.rounds):
                for tool in tools[index % len(tools) :] + tools[: index % len(tools)]:
                    target, bundle = bench.target()
                    try:
                        large[tool].append(
                            bench.copy(tool, reference, "mirror/large:1", target, bundle)
                        )
                    finally:
                        bench.drop(target)
                print(f"startup: 200 MiB round {index + 1}/{args.rounds}", file=sys.stderr)
        finally:
            bench.stop()
    report = table(noop, floor, large, found, args)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(report + "\n")
    print(report)
    return 0


def _med(samples: list[copy.Sample], key: str) -> float:
    return statistics.median(getattr(s, key) for s in samples)


def table(
    noop: dict[str, list[copy.Sample]],
    floor: dict[str, list[copy.Sample]],
    large: dict[str, list[copy.Sample]],
    found: dict[str, Any],
    args: argparse.Namespace,
) -> str:
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], text=True, capture_output=True
    ).stdout.strip()
    lines = [
        f"Start-up benchmark, {datetime.date.today().isoformat()} (swapper at `{head}`, this "
        f"working tree): TLS registries on loopback, {os.cpu_count()} CPUs; {args.runs} no-op "
        f"runs per tool taking turns, {args.rounds} copies of the 200 MiB image per tool "
        "(rotating); medians of client CPU (user + system, rusage) and wall.",
        "",
        "| command | no-op client CPU | / swapper's | no-op wall | peak RSS | target = source "
        "| 200 MiB copy client CPU | / swapper's | 200 MiB wall |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    ours_noop = _med(noop["swapper"], "cpu")
    ours_large = _med(large["swapper"], "cpu") if large.get("swapper") else None
    rows = [(tool, samples, large.get(tool, [])) for tool, samples in noop.items()]
    rows += [(name, samples, []) for name, samples in floor.items()]
    for name, samples, big in rows:
        if not samples:
            continue
        cpu = _med(samples, "cpu")
        rss = [s.rss_mib for s in samples if s.rss_mib is not None]
        same = ("yes" if all(s.same for s in samples) else "**no**") if name in noop else ""
        row = (
            f"| {name} | {cpu:.3f} s | {cpu / ours_noop:.2f}x | {_med(samples, 'wall'):.3f} s "
            f"| {statistics.median(rss) if rss else 0:.0f} MiB | {same} "
        )
        if big and ours_large:
            big_cpu = _med(big, "cpu")
            row += f"| {big_cpu:.2f} s | {big_cpu / ours_large:.2f}x | {_med(big, 'wall'):.2f} s |"
        else:
            row += "| | | |"
        lines.append(row)
    lines += ["", "| target | swapper | |", "| --- | --- | --- |"]
    lines.append(
        f"| a no-op `swapper mirror` at most {NOOP_TARGET} CPU-s | **{ours_noop:.3f} CPU-s** "
        f"({ours_noop / NOOP_TARGET:.2f}x the target) "
        f"| {'met' if ours_noop <= NOOP_TARGET else '**missed**'} |"
    )
    regctl = large.get("regctl")
    if ours_large is not None and regctl:
        theirs = _med(regctl, "cpu")
        lines.append(
            f"| per-copy client CPU on the 200 MiB image at most regctl's ({theirs:.2f} CPU-s) "
            f"| **{ours_large:.2f} CPU-s** ({ours_large / theirs:.2f}x) "
            f"| {'met' if ours_large <= theirs else '**missed**'} |"
        )
    lines += ["", "The commands: as in the copy benchmark (`benchmarks/copy.py`).", ""]
    lines.append(peers.versions_table({k: v for k, v in found.items() if k in TOOLS}))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
