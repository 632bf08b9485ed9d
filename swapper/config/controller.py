"""The cluster half (``controller``, ``cleanup``) and the supervisor (``supervisor``)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    Field,
    model_validator,
)

from swapper.settings import Duration, _Model, format_duration


class HealSettings(_Model):
    """Pods stuck pulling a mirror image (``controller.heal``)."""

    enabled: bool = True  # the image copied back when the mirror lost it
    cooldown: Annotated[float, Duration(86_400, "24h")] = (
        300.0  # a pod is healed at most once per image per cooldown
    )
    # A mirror that cannot take the image back (it refuses the push): the stuck container is
    # patched back to its source, when the pod's own credentials can read it (RBAC: pods patch).
    revert: bool = False


class MonitorPace(_Model):
    """How often one registry is asked (``controller.monitor`` and its ``registries``)."""

    interval: Annotated[float, Duration(7 * 86_400, "7 days")] = 3600.0
    max_checks: int = Field(100, alias="maxChecks", ge=1, le=100_000)  # per interval


class MonitorSettings(MonitorPace):
    """The images in use, watched at the source and in the mirror (``controller.monitor``).

    Each registry (the mirror included) is asked at most ``maxChecks`` times per ``interval``,
    the checks spread evenly over it; ``registries`` sets another pace per host. The defaults
    (100 ``HEAD`` requests an hour per registry) stay far under Docker Hub's anonymous limits,
    which count manifest ``GET``s, not ``HEAD``s."""

    enabled: bool = True
    registries: dict[str, MonitorPace] = Field(default_factory=dict)
    # Images with a series of their own in swapper_image_info (the rest are counted only).
    max_info: int = Field(500, alias="maxInfo", ge=0, le=100_000)


class ControllerSettings(_Model):
    """The cluster half (``controller``): what the elected leader runs beside admission."""

    enabled: bool = True  # false: no leader election, no cluster loops, no RBAC for them
    lease_name: str = Field("swapper-controller", alias="leaseName", min_length=1, max_length=253)
    # client-go's leader-election semantics and defaults
    lease_duration: Annotated[float, Duration(3600, "1h")] = Field(15.0, alias="leaseDuration")
    renew_deadline: Annotated[float, Duration(3600, "1h")] = Field(10.0, alias="renewDeadline")
    retry_period: Annotated[float, Duration(3600, "1h")] = Field(2.0, alias="retryPeriod")
    backfill: bool = True  # mirror the images of pods already running
    # With dryRun: copy anyway (no patch, no Secret), so turning enforcement on finds the mirror
    # filled.
    prefill: bool = False
    # One copy per image across replicas: a short Lease per image being copied.
    share_copies: bool = Field(True, alias="shareCopies")
    copy_lease_duration: Annotated[float, Duration(3600, "1h")] = Field(
        30.0, alias="copyLeaseDuration"
    )
    # Pods listed per page by the pod watch.
    page_size: int = Field(500, alias="pageSize", ge=10, le=5000)
    # At most this many distinct images tracked (a bound on memory; more are logged once).
    max_images: int = Field(50_000, alias="maxImages", ge=100, le=1_000_000)
    heal: HealSettings = Field(default_factory=lambda: HealSettings())
    monitor: MonitorSettings = Field(default_factory=lambda: MonitorSettings())

    @model_validator(mode="after")
    def _lease_order(self) -> ControllerSettings:
        # client-go's checks: leaseDuration > renewDeadline > retryPeriod * 1.2 (JitterFactor).
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                f"leaseDuration ({self.lease_duration:g}s) must be greater than renewDeadline "
                f"({self.renew_deadline:g}s)"
            )
        if self.renew_deadline <= self.retry_period * 1.2:
            raise ValueError(
                f"renewDeadline ({self.renew_deadline:g}s) must be greater than 1.2 x "
                f"retryPeriod ({self.retry_period:g}s)"
            )
        return self


CLUSTER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
"""What ``clusterName`` may be: a lowercase DNS label (at most 63 characters), so that the
usage-mark tag ``swapper-used-<clusterName>-<32 hex>`` stays a valid tag (at most 128)."""


class CleanupSettings(_Model):
    """Deleting mirrored images nobody runs any more (``cleanup``), safe when several clusters
    share one registry: every cluster marks what it runs in the registry itself, and an image is
    deleted only when no cluster's mark is younger than ``retention``
    (:mod:`swapper.controller.cleanup`, :mod:`swapper.mirror.marks`).

    Off by default, and a dry run when turned on until ``dryRun: false``: it then reports what
    it would delete and deletes nothing."""

    enabled: bool = False
    dry_run: bool = Field(True, alias="dryRun")
    # The leader runs one pass at most this often.
    interval: Annotated[float, Duration(30 * 86_400, "30 days")] = 86_400.0
    # An image is deleted only when every cluster's mark on it is older than this (and, where
    # the registry says when it was pushed, it was pushed longer ago than this).
    retention: Annotated[float, Duration(3650 * 86_400, "10 years")] = 30 * 86_400.0
    # A cluster rewrites its mark on an image it runs at most this often.
    mark_every: Annotated[float, Duration(30 * 86_400, "30 days")] = Field(
        86_400.0, alias="markEvery"
    )
    # A repository left empty by a pass is deleted too (no target's admin protocol can delete
    # repositories yet: accepted, and a no-op that says so once per pass).
    delete_empty_repositories: bool = Field(False, alias="deleteEmptyRepositories")
    # Items asked per page of a registry listing.
    page_size: int = Field(100, alias="pageSize", ge=1, le=1000)
    # At most this many images deleted per pass (the rest wait for the next pass).
    max_deletes: int = Field(1000, alias="maxDeletes", ge=1, le=100_000)

    @model_validator(mode="after")
    def _marks_outlive_their_rewrite(self) -> CleanupSettings:
        # A mark is rewritten at most once per markEvery: were it as long as the retention, an
        # image in use could look unused between two rewrites.
        if self.mark_every >= self.retention:
            raise ValueError(
                f"markEvery ({format_duration(self.mark_every)}) must be less than retention "
                f"({format_duration(self.retention)})"
            )
        return self


class SupervisorSettings(_Model):
    """How swapper's long-running tasks are kept running (``supervisor``)."""

    # A task that raises is restarted after a backoff that doubles from backoffMin to backoffMax.
    backoff_min: Annotated[float, Duration(3600, "1h")] = Field(0.5, alias="backoffMin")
    backoff_max: Annotated[float, Duration(3600, "1h")] = Field(30.0, alias="backoffMax")
    # /readyz answers 503 while a task the webhook depends on has been down this long.
    not_ready_after: Annotated[float, Duration(3600, "1h")] = Field(10.0, alias="notReadyAfter")
    # Shutdown stops every task within this (keep it under terminationGracePeriodSeconds).
    shutdown_timeout: Annotated[float, Duration(3600, "1h")] = Field(20.0, alias="shutdownTimeout")
