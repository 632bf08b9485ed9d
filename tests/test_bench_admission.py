"""The admission benchmark's own arithmetic and measurements (``benchmarks/run.py``): the table
of the targets against k8s-image-swapper says met or by how much a target is missed, and the
resident set is that of the server's whole process tree, sampled while load runs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run import peak_rss, peer_targets, rss_bytes  # noqa: E402

MIB = 2**20


def figures(rps: float, p99: float, cpu: float = 300, rss: float = 80) -> dict[str, float]:
    return {
        "rps": rps,
        "p99": p99,
        "p50": p99 / 4,
        "cpu": cpu,
        "steady_rps": 200,
        "rss_idle": rss,
        "rss_load": rss + 4,
    }


def row(lines: list[str], starts: str) -> list[str]:
    [found] = [line for line in lines if line.startswith(f"| {starts}")]
    return [cell.strip() for cell in found.strip("|").split("|")]


def test_targets_met_against_the_peer_are_said_so_with_their_ratios() -> None:
    lines = peer_targets(figures(rps=800, p99=8.0), figures(rps=130, p99=20.0, cpu=3000))
    assert row(lines, "p99 at 200 req/s")[3:] == ["0.40x", "met"]
    assert row(lines, "throughput")[3:] == ["6.15x", "met"]
    assert row(lines, "CPU per request")[1:4] == ["300 us", "3000 us", "0.10x"]


def test_a_missed_target_says_by_how_much() -> None:
    lines = peer_targets(figures(rps=400, p99=12.0), figures(rps=1000, p99=10.0))
    assert row(lines, "p99 at 200 req/s")[3:] == ["1.20x", "**missed** by 20% (+2.00 ms)"]
    assert row(lines, "throughput")[3:] == ["0.40x", "**missed** by 20% (100 req/s short)"]


def test_a_target_exactly_at_its_bound_is_met() -> None:
    lines = peer_targets(figures(rps=500, p99=10.0), figures(rps=1000, p99=10.0))
    assert row(lines, "p99 at 200 req/s")[4] == "met"
    assert row(lines, "throughput")[4] == "met"


GROW = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import time; b = b'x' * (48 * 2**20); print('held', flush=True); time.sleep(30)"],
    stdout=sys.stdout)
time.sleep(30)
"""


def test_the_resident_set_counts_the_children_of_the_server() -> None:
    parent = subprocess.Popen([sys.executable, "-c", GROW], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "held"
        own = int(
            next(
                line.split()[1]
                for line in Path(f"/proc/{parent.pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
        )
        tree = rss_bytes(parent.pid)
        assert tree >= own * 1024 + 48 * MIB
    finally:
        parent.kill()
        parent.wait()
    assert rss_bytes(parent.pid) == 0  # gone: nothing to count


def test_the_peak_under_load_is_the_largest_sample_taken_while_the_block_ran() -> None:
    grower = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.stdin.readline();"
            " b = b'x' * (64 * 2**20); time.sleep(0.5); del b; time.sleep(30)",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        time.sleep(0.5)
        before = rss_bytes(grower.pid)
        with peak_rss(grower.pid, every=0.05) as peak:
            assert grower.stdin is not None
            grower.stdin.write(b"go\n")
            grower.stdin.flush()
            time.sleep(1.5)  # the 64 MiB are written, held for 0.5 s and freed in that time
        after = rss_bytes(grower.pid)
        assert peak[0] >= before + 60 * MIB
        assert after < peak[0] - 60 * MIB  # freed again: the peak is not the last sample
    finally:
        grower.kill()
        grower.wait()
