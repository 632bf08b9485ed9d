"""``swapper audit --cleanup``: cleanup's dry run, from the command line.

One pass of :class:`~swapper.controller.cleanup.Cleanup` over the configured target, forced to
be a dry run whatever ``cleanup.dryRun`` says: it lists repositories, tags and marks and reads
marks back, and deletes and writes nothing. What this cluster's pods use is what the audit
read (the mirror references admission gives them, and the ones they already name); copies in
flight cannot be seen from outside a replica, so none are counted. Its result is a
:class:`CleanupPreview` the report renders: a line per image it would delete, and how many it
keeps, by reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from swapper.config import Config
from swapper.controller.cleanup import Cleanup, CleanupOptions
from swapper.errors import ConfigError
from swapper.metrics import Metrics
from swapper.mirror.marks import Marker, OCIMarkStore
from swapper.targets.admin import RegistryAdmin
from swapper.targets.base import TargetRegistry

MAX_LISTED = 1000
"""Images the preview names one by one; the rest are counted."""


@dataclass
class CleanupPreview:
    """What cleanup would do now: images it would delete as ``(repository, digest)``."""

    would_delete: list[tuple[str, str]] = field(default_factory=list)
    more: int = 0  # images it would delete beyond MAX_LISTED
    kept: dict[str, int] = field(default_factory=dict)
    error: str = ""  # what ended the pass early (a registry failure)
    partial: bool = False  # the pods of some namespaces were not read: more may be in use

    @property
    def count(self) -> int:
        return len(self.would_delete) + self.more

    def as_json(self) -> dict[str, Any]:
        return {
            "wouldDelete": [{"repository": r, "digest": d} for r, d in self.would_delete],
            "wouldDeleteCount": self.count,
            "kept": self.kept,
            "error": self.error,
            "partial": self.partial,
        }

    def lines(self) -> list[str]:
        """The report's text: a summary line, then one line per image."""
        kept = ", ".join(f"{reason} {n}" for reason, n in sorted(self.kept.items())) or "none"
        out = [f"cleanup (dry run): would delete {self.count} image(s); kept: {kept}"]
        out += [f"cleanup: would delete {r}@{d}" for r, d in self.would_delete]
        if self.more:
            out.append(f"cleanup: ... and {self.more} more")
        if self.partial:
            out.append(
                "cleanup: only the namespaces read were asked which images pods use: "
                "audit all namespaces before trusting this list"
            )
        if self.error:
            out.append(f"cleanup: the pass ended early: {self.error}")
        return out


async def preview_cleanup(
    config: Config,
    target: TargetRegistry,
    in_use: Iterable[str],
    *,
    partial: bool = False,
    request_timeout: float = 10.0,
) -> CleanupPreview:
    """One dry-run pass (see the module docstring). Raises ConfigError when the config does
    not turn cleanup on (its retention and ``clusterName`` are what the pass needs to be
    meaningful) or the target has no admin protocol. Closes ``target``."""
    from swapper.oci import RegistryClient, static_credentials
    from swapper.targets.factory import registry_hosts
    from swapper.wiring import operator_credentials, target_credentials

    if not config.cleanup.enabled:
        raise ConfigError([("cleanup.enabled", "--cleanup previews cleanup: turn it on")])
    if not isinstance(target, RegistryAdmin):
        name = type(target).__name__
        raise ConfigError([("target.type", f"{name} cannot list or delete images")])
    client = RegistryClient(
        hosts=registry_hosts(config),
        credentials=target_credentials(
            config, target, static_credentials(operator_credentials(config, target))
        ),
        timeout=request_timeout,
    )
    used = list(in_use)
    try:
        store = OCIMarkStore(client, config.target.endpoint.split("/", 1)[0].lower())
        marker = Marker(config.cluster_name, store, target)
        options = dataclasses.replace(CleanupOptions.of(config.cleanup), dry_run=True)
        cleanup = Cleanup(target, marker, lambda: used, lambda _: False, Metrics(), options)
        report = await cleanup.run_pass()
    finally:
        await client.aclose()
        await target.aclose()
    return CleanupPreview(
        would_delete=report.would_delete[:MAX_LISTED],
        more=max(0, len(report.would_delete) - MAX_LISTED),
        kept=dict(report.kept),
        error=report.refused or report.error,
        partial=partial,
    )
