"""``swapper mirror``: one copy from the command line, with the engine admission uses.

Credentials come from ``--authfile`` (a docker ``config.json``: ``{"auths": {...}}``), matched
to each registry the way the kubelet matches pull secrets; without one, registries are read
anonymously. Progress (blobs, bytes, rate) is drawn on one line when stderr is a terminal, and
printed as a line per finished blob otherwise.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from swapper.credentials import Credentials
from swapper.errors import CopyError, CopyReason, CredentialsError, RegistryError
from swapper.images import ImageReference
from swapper.oci import (
    DEFAULT_BLOB_IDLE_TIMEOUT,
    CopyEngine,
    CopyResult,
    CredentialsProvider,
    HostConfig,
    Platform,
    ProgressEvent,
    ReferrerSettings,
    RegistryClient,
)

if TYPE_CHECKING:
    from swapper.access.keyring import Keyring
    from swapper.config import VerifyRule
    from swapper.targets.base import TargetRegistry

MiB = 1024 * 1024
_MILESTONES = frozenset({"blob-copied", "blob-skipped", "blob-mounted", "manifest-pushed"})


def read_authfile(path: str) -> Keyring:
    import json

    from swapper.access.keyring import Keyring, parse_docker_config

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"cannot read --authfile {path}: {exc}") from None
    return Keyring(parse_docker_config(doc, source=path).items())


def keyring_credentials(keyring: Keyring, source: ImageReference) -> CredentialsProvider:
    """Per host: the first credentials the keyring has for the repository on that host."""

    async def provide(host: str) -> Credentials | None:
        found = keyring.lookup(source.name if host == source.domain else host)
        if not found:
            return None
        return found[0]

    return provide


@dataclass
class Progress:
    """Draws copy progress on ``out``."""

    out: IO[str]
    live: bool
    image: str = ""  # the source, named at the start of the live line
    started: float = 0.0
    last_draw: float = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        if not self.started:
            self.started = now
        if self.live:
            if now - self.last_draw < 0.1 and event.kind not in _MILESTONES:
                return
            self.last_draw = now
            self.out.write("\r" + self.line(event, now) + "\x1b[K")
            self.out.flush()
        elif event.kind in _MILESTONES:
            self.out.write(f"{event.kind:13} {event.digest[:19]}  {event.size / MiB:8.1f} MiB\n")

    def line(self, event: ProgressEvent, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        rate = event.bytes_done / elapsed  # bytes per second so far
        left = max(event.bytes_total - event.bytes_done, 0)
        eta = f"ETA {_duration(left / rate)}" if rate > 0 and left else "ETA -"
        if left == 0 and event.bytes_total:
            eta = "done"
        name = f"{self.image}  " if self.image else ""
        return (
            f"{name}blobs {event.blobs_done}/{event.blobs_total}  "
            f"{event.bytes_done / MiB:.1f}/{event.bytes_total / MiB:.1f} MiB  "
            f"{rate / MiB:.1f} MiB/s  {eta}"
        )

    def finish(self) -> None:
        if self.live:
            self.out.write("\n")


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: short enough for a progress line."""
    whole = int(seconds + 0.5)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def summary(result: CopyResult) -> str:
    lines = [
        f"copied {result.source} -> {result.target}",
        f"digest {result.digest}"
        + ("" if result.digest_preserved else f" (source index {result.source_digest})"),
    ]
    if result.platforms:
        lines.append(f"platforms {', '.join(result.platforms)}")
    lines.append(
        f"blobs {result.blobs_copied} copied, {result.blobs_skipped} already there, "
        f"{result.blobs_mounted} mounted; {result.bytes_copied / MiB:.1f} MiB "
        f"in {result.duration:.3f}s" + (" (already present)" if result.already_present else "")
    )
    counted = [f"{count} {outcome}" for outcome, count in result.referrers.counts if count]
    if result.referrers.counts:
        done = ", ".join(counted) or "none"
        lines.append(f"referrers {done} in {result.referrers.duration:.3f}s")
    lines.extend(f"referrer not copied: {problem}" for problem in result.referrers.problems)
    return "\n".join(lines)


async def run_mirror(
    source: ImageReference,
    target: ImageReference,
    *,
    platforms: Sequence[Platform | str] = (),
    authfile: str | None = None,
    hosts: dict[str, HostConfig] | None = None,
    out: IO[str] | None = None,
    target_registry: TargetRegistry | None = None,
    verify: Sequence[VerifyRule] = (),
    blob_idle_timeout: float | None = DEFAULT_BLOB_IDLE_TIMEOUT,
    mark_as: str = "",
    referrers: ReferrerSettings | None = None,
) -> CopyResult:
    """Copy ``source`` to ``target`` (with ``verify``, the config's ``mirror.verify``: only a
    source whose signature verifies, by the digest that verified; otherwise CopyError
    ``unverified-signature``). With ``target_registry`` (``--config``), the repository
    is made ready first (ECR creates it) and pushes use the registry's own credentials.
    ``blob_idle_timeout``: see :class:`~swapper.oci.RegistryClient` (``mirror.blobIdleTimeout``
    of a ``--config``). ``mark_as``: a cluster name (``clusterName`` of a ``--config`` with
    ``cleanup.enabled``): the copy into the configured target is then given that cluster's
    usage mark (:mod:`swapper.mirror.marks`), which makes it swapper's for cleanup. A mark that
    cannot be written is said on ``out`` and leaves the copy as it is (kept by cleanup).
    ``referrers``: the image's signatures, attestations and SBOMs are
    copied with it (``mirror.referrers``); None: not."""
    keyring = read_authfile(authfile) if authfile else None  # None: anonymous everywhere
    stream = out or sys.stderr
    progress = Progress(stream, live=stream.isatty(), image=str(source))
    async with RegistryClient(hosts=hosts or {}, blob_idle_timeout=blob_idle_timeout) as client:
        engine = CopyEngine(client, referrers=referrers)
        if keyring is not None:
            client.credentials = keyring_credentials(keyring, target)
        try:  # before the target is touched (ECR would create the repository)
            source = await _verified(client, source, verify, keyring)
        except CopyError:
            if target_registry is not None:
                await target_registry.aclose()
            raise
        if target_registry is not None:
            client.credentials = _registry_credentials(target_registry, target, client.credentials)
            repository = target.path
            try:
                await target_registry.ensure_repository(repository)
            except RegistryError as exc:
                raise CopyError(f"preparing {target.name}: {exc}", CopyReason.TARGET) from exc
        try:
            result = await engine.copy(
                source,
                target,
                platforms=tuple(platforms) or None,
                source_credentials=keyring_credentials(keyring, source) if keyring else None,
                progress=progress,
            )
            if mark_as and target_registry is not None:
                await _mark(mark_as, client, target_registry, target, result, stream)
            return result
        finally:
            progress.finish()
            if target_registry is not None:
                await target_registry.aclose()


async def _mark(
    cluster: str,
    client: RegistryClient,
    registry: TargetRegistry,
    target: ImageReference,
    result: CopyResult,
    out: IO[str],
) -> None:
    """This cluster's usage mark on the image just copied (see :func:`run_mirror`)."""
    from swapper.mirror.marks import Marker, OCIMarkStore
    from swapper.targets.admin import RegistryAdmin

    if not isinstance(registry, RegistryAdmin):
        print(
            f"swapper: warning: no usage mark: the target {type(registry).__name__} cannot "
            "list or delete images; cleanup keeps this image",
            file=out,
        )
        return
    marker = Marker(cluster, OCIMarkStore(client, target.domain), registry)
    try:
        await marker.mark(target.path, result.digest)
    except (RegistryError, CopyError) as exc:
        print(
            f"swapper: warning: the usage mark was not written ({exc}); cleanup keeps this image",
            file=out,
        )


def _registry_credentials(
    registry: TargetRegistry, target: ImageReference, others: CredentialsProvider | None
) -> CredentialsProvider:
    async def provide(host: str) -> Credentials | None:
        if host == target.domain:
            pushed = await registry.pull_credentials()
            if pushed is not None:
                return pushed
        return await others(host) if others is not None else None

    return provide


async def _verified(
    client: RegistryClient,
    source: ImageReference,
    verify: Sequence[VerifyRule],
    keyring: Keyring | None,
) -> ImageReference:
    if not verify:
        return source
    from swapper.mirror.signatures import SignatureVerifier, pinned
    from swapper.mirror.trust import VerifyRules

    rules = VerifyRules(verify)
    matching = rules.matching(source)
    if not matching:
        return source
    credentials = keyring_credentials(keyring, source) if keyring is not None else None
    checker = SignatureVerifier(client, rules, credentials=credentials)
    try:
        signed = await checker.check(source, matching, None, None)
    finally:
        await checker.aclose()
    if not signed.verified:
        raise CopyError(f"not copied: {source}: {signed.reason}", CopyReason.UNVERIFIED_SIGNATURE)
    return pinned(source, signed)
