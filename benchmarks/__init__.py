"""``make bench``: admission, copy, ECR-call and instruction-count benchmarks."""

from __future__ import annotations

import signal
import sys


def stop_servers_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit``, so the ``finally`` blocks that stop the registries and
    servers a benchmark started also run when the benchmark itself is stopped."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
