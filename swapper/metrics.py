"""Prometheus metrics. Each app gets its own registry, so tests and several apps never collide.

Labels carry outcomes and reasons only: never image names with credentials, never secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from swapper.errors import CopyReason

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.admission_requests = Counter(
            "swapper_admission_requests",
            "Admission requests by result "
            "(patched, unchanged, dry_run, denied, error, timeout, invalid).",
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
        self.copies_started = Counter(
            "swapper_copies_started", "Image copies started by the copy queue.", registry=r
        )
        self.copies_succeeded = Counter(
            "swapper_copies_succeeded", "Image copies that finished.", registry=r
        )
        self.copies_failed = Counter(
            "swapper_copies_failed",
            f"Image copies that failed, by reason ({', '.join(CopyReason)}).",
            ["reason"],
            registry=r,
        )
        self.copies_not_started = Counter(
            "swapper_copies_not_started",
            "Copy requests that started no copy: shared with one in flight (deduplicated), "
            "copied recently (fresh), held back after a failure (backoff), or refused by the "
            "full queue (queue-full; backfill-queue-full for the backfill's own line).",
            ["reason"],
            registry=r,
        )
        self.signature_verifications = Counter(
            "swapper_signature_verifications",
            "Signature checks of mirror.verify (not the answers served from the cache), by "
            "result: verified, unsigned, invalid (signatures, none verified: another key, "
            "another digest, malformed), error (the source could not be asked).",
            ["result"],
            registry=r,
        )
        self.copy_duration = Histogram(
            "swapper_copy_duration_seconds",
            "Duration of image copies, successful or not.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.copy_bytes = Counter(
            "swapper_copy_bytes", "Bytes of blobs and manifests pushed to the target.", registry=r
        )
        self.copy_blobs = Counter(
            "swapper_copy_blobs",
            "Blobs handled by copies: copied, skipped (already present) or mounted.",
            ["outcome"],
            registry=r,
        )
        self.referrers_copied = Counter(
            "swapper_referrers_copied",
            "Referrers (signatures, attestations, SBOMs) of copied images, by result: copied, "
            "present, filtered (mirror.referrerTypes), failed, malformed, loop, too-deep.",
            ["result"],
            registry=r,
        )
        self.copy_queue_depth = Gauge(
            "swapper_copy_queue_depth",
            "Copies waiting for a worker (admission and backfill).",
            registry=r,
        )
        self.copies_in_flight = Gauge("swapper_copies_in_flight", "Copies running now.", registry=r)
        self.pull_secret_writes = Counter(
            "swapper_pull_secret_writes",
            "Target pull secret provisioning, by result (created, updated, deleted, unmanaged: "
            "a Secret of that name not managed by swapper, left alone; failed).",
            ["result"],
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
        self.connections_closed = Counter(
            "swapper_connections_closed",
            "Connections swapper closed itself, by reason (handshake-timeout, handshake-failed, "
            "header-timeout, keep-alive-timeout; shed: the oldest idle one, for a new one at "
            "server.maxConnections; refused: a new one at the cap with none idle to shed).",
            ["reason"],
            registry=r,
        )
        self.requests_refused = Counter(
            "swapper_requests_refused",
            "Requests answered with an error before the admission handler, by reason "
            "(body-too-large: 413, headers-too-large: 431, too-many-connections: 503).",
            ["reason"],
            registry=r,
        )
        # -- the supervisor, the controller and reloads ------------------------------------
        self.task_restarts = Counter(
            "swapper_task_restarts",
            "Long-running tasks restarted by the supervisor after they raised, by task name.",
            ["task"],
            registry=r,
        )
        self.task_up = Gauge(
            "swapper_task_up",
            "1 while a supervised task runs, 0 while it waits to be restarted, by task name.",
            ["task"],
            registry=r,
        )
        self.leader = Gauge(
            "swapper_leader", "1 while this replica holds the controller's Lease.", registry=r
        )
        self.leader_transitions = Counter(
            "swapper_leader_transitions",
            "Changes of this replica's leadership (acquired, lost, released).",
            ["event"],
            registry=r,
        )
        self.controller_pods = Gauge(
            "swapper_controller_pods", "Pods in the controller's pod cache.", registry=r
        )
        self.controller_pods_skipped = Counter(
            "swapper_controller_pods_skipped",
            "Pods the controller could not plan (malformed, too-many-containers), by reason.",
            ["reason"],
            registry=r,
        )
        self.backfill_images = Gauge(
            "swapper_backfill_images",
            "Distinct images of existing pods that the config would swap, by state (queued, "
            "would-copy, present, skipped-private, skipped-unverified, failed, ...).",
            ["state"],
            registry=r,
        )
        self.backfill_copies = Counter(
            "swapper_backfill_copies",
            "Images the backfill handed to the copy queue (queued), would have in dry-run "
            "(would-copy), or could not (queue-full, error).",
            ["result"],
            registry=r,
        )
        self.copy_leases = Counter(
            "swapper_copy_leases",
            "Per-image copy Leases shared across replicas, by result (acquired, "
            "held-elsewhere: another replica copies it, waited, failed: the API could not be "
            "asked, so the copy went ahead).",
            ["result"],
            registry=r,
        )
        self.config_reloads = Counter(
            "swapper_config_reloads",
            "Config file changes seen, by result (applied, refused: invalid, the old config "
            "kept; restart-needed: a key that only a restart applies changed).",
            ["result"],
            registry=r,
        )
        self.images = Gauge(
            "swapper_images",
            "The distinct images pods run (or would run from the mirror), by state: mirrored, "
            "missing-in-mirror, source-gone, source-unreachable, private-unverified, tag-moved, "
            "unchecked.",
            ["state"],
            registry=r,
        )
        self.image_info = Gauge(
            "swapper_image_info",
            "1 per image in use (at most controller.monitor.maxInfo images), with its state.",
            ["source", "target", "state"],
            registry=r,
        )
        self.monitor_checks = Counter(
            "swapper_monitor_checks",
            "Checks of the images in use: kind mirror (result present, missing, error) and "
            "source (served, gone, denied, unreachable, rate-limited).",
            ["kind", "result"],
            registry=r,
        )
        self.monitor_copies = Counter(
            "swapper_monitor_copies",
            "Images the monitor copied again, by reason (missing: lost by the mirror; refresh: "
            "a moved tag under refreshTags always) and result (queued, would-copy, queue-full, "
            "error).",
            ["reason", "result"],
            registry=r,
        )
        # -- cleanup of mirrored images nobody runs (swapper.controller.cleanup) -----------
        self.cleanup_deleted = Counter(
            "swapper_cleanup_deleted",
            "What cleanup deleted from the target registry, by kind (image: an unused mirrored "
            "image, with its tags; mark: a usage mark of a deleted image; referrer: a signature, "
            "attestation, SBOM or referrers index tagged off a deleted image; repository: one a "
            "pass emptied, with cleanup.deleteEmptyRepositories).",
            ["kind"],
            registry=r,
        )
        self.cleanup_kept = Counter(
            "swapper_cleanup_kept",
            "Images a cleanup pass looked at and kept, by reason (in-use, in-flight, "
            "not-swappers, young, young-mark, malformed-mark, dry-run: would be deleted; "
            "refused: the registry refuses deletes, counted once per pass; error).",
            ["reason"],
            registry=r,
        )
        self.cleanup_passes = Counter(
            "swapper_cleanup_passes",
            "Cleanup passes, by result (done, refused, error, not-ready).",
            ["result"],
            registry=r,
        )
        self.cleanup_marks = Counter(
            "swapper_cleanup_marks",
            "Usage marks this cluster was asked to write, by result (written, fresh: written "
            "within markEvery, absent: the mirror has no such image, error).",
            ["result"],
            registry=r,
        )
        self.heals = Counter(
            "swapper_heals",
            "Containers stuck pulling a mirror image, by action (restore: copy the image back; "
            "revert: patch the container back to its source) and result.",
            ["action", "result"],
            registry=r,
        )
