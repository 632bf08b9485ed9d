"""``make bench``: admission, copy, ECR-call and instruction-count benchmarks."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def stop_servers_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit``, so the ``finally`` blocks that stop the registries and
    servers a benchmark started also run when the benchmark itself is stopped."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bytes_read(pid: int) -> int:
    """What process ``pid`` has read from sockets and files so far (``rchar``)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0
