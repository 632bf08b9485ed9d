"""Prometheus metrics. Each app gets its own registry, so tests and several apps never collide.

Labels carry outcomes and reasons only: never image names with credentials, never secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.admission_requests = Counter(
            "swapper_admission_requests",
            "Admission requests by result (patched, unchanged, dry_run, error, timeout, invalid).",
            ["result"],
            registry=r,
        )
        self.container_decisions = Counter(
            "swapper_container_decisions",
            "Per-container decisions (swapped, skipped-filter, skipped-origin, not-found, "
            "invalid-reference, error, ...), with dry_run=true for audit-mode would-swaps.",
            ["decision", "dry_run"],
            registry=r,
        )
        self.handler_latency = Histogram(
            "swapper_admission_duration_seconds",
            "Time spent answering one admission request.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.internal_errors = Counter(
            "swapper_internal_errors",
            "Swapper's own failures that were answered with allowed and no patch, by stage.",
            ["stage"],
            registry=r,
        )
        self.copies_submitted = Counter(
            "swapper_copies_submitted",
            "Copy jobs handed to the copy queue, by copy policy and outcome of the hand-over.",
            ["policy", "outcome"],
            registry=r,
        )
        self.certificate_reloads = Counter(
            "swapper_tls_certificate_reloads",
            "Times the serving certificate was reloaded from disk.",
            registry=r,
        )
        self.certificate_expiry = Gauge(
            "swapper_tls_certificate_expiry_timestamp_seconds",
            "Expiry (unix time) of the serving certificate currently loaded.",
            registry=r,
        )
        self.ready = Gauge("swapper_ready", "1 when the webhook is ready to serve.", registry=r)
