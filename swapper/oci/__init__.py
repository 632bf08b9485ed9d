"""The OCI distribution client and the image copy engine.
Imported by targets, mirror and wiring; imports images, credentials, errors and aio only.

Usage::

    client = RegistryClient(
        hosts={"registry.local:5000": HostConfig(ca_file="/etc/ca.pem")},
        credentials=provider,  # async (host) -> Credentials | None
    )
    engine = CopyEngine(client, max_concurrent_blobs=6)
    result = await engine.copy("ghcr.io/org/app:1.4", "registry.local:5000/ghcr.io/org/app:1.4")
    await client.aclose()

Every failure is a :class:`~swapper.errors.CopyError` (a :class:`TransientCopyError` when it
may pass: retries were used up). Its ``reason`` is one of :data:`REASONS`.

What is guaranteed: the target gets the source's manifests byte for byte (same digests; the one
exception, a platform-filtered index, is reported in :class:`CopyResult`), each blob is
verified against its digest while it streams through and no blob is ever held in memory
whole, and the tag is written last, so a failed copy tags nothing. With
``CopyEngine(referrers=ReferrerSettings())`` what refers to the image (signatures,
attestations, SBOMs: ``_referrers``) is copied with it, before the tag. See ``_copy`` for the
order of work and the platform rules, ``_auth`` for authentication, ``_http`` for the small
HTTP/1.1 client underneath (and why it is not httpx).
"""

from swapper.errors import CopyError, CopyReason, TransientCopyError
from swapper.oci._auth import CredentialsProvider, static_credentials
from swapper.oci._client import (
    DEFAULT_BLOB_IDLE_TIMEOUT,
    DEFAULT_TIMEOUT,
    MIN_CHUNK_SIZE,
    HostConfig,
    Mount,
    RegistryClient,
    Repository,
    UploadMode,
    tls_context,
)
from swapper.oci._copy import (
    REFERRER_RESULTS,
    CopyEngine,
    CopyResult,
    ProgressCallback,
    ProgressEvent,
    ProgressKind,
    ReferrerReport,
    ReferrerSettings,
    parse_platforms,
)
from swapper.oci._http import Response, Timeout, Transport
from swapper.oci._manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    Platform,
)
from swapper.oci._referrers import (
    ApiMemory,
    Found,
    Referrer,
    ReferrerFinder,
    artifact_type_of,
    cosign_tags,
    fallback_tag,
)
from swapper.oci._retry import RetryPolicy

REASONS = (
    CopyReason.NOT_FOUND,
    CopyReason.UNAUTHORIZED,
    CopyReason.DENIED,
    CopyReason.RATE_LIMITED,
    CopyReason.SERVER_ERROR,
    CopyReason.TIMEOUT,
    CopyReason.CONNECTION,
    CopyReason.TLS,
    CopyReason.DIGEST_MISMATCH,
    CopyReason.INVALID_MANIFEST,
    CopyReason.UNSUPPORTED,
    CopyReason.PLATFORM_NOT_FOUND,
    CopyReason.REJECTED,
)
"""Every ``CopyError.reason`` this package produces (each explained in
:class:`~swapper.errors.CopyReason`)."""

__all__ = [
    "DEFAULT_BLOB_IDLE_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "MIN_CHUNK_SIZE",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "REASONS",
    "REFERRER_RESULTS",
    "ApiMemory",
    "CopyEngine",
    "CopyError",
    "CopyReason",
    "CopyResult",
    "CredentialsProvider",
    "Descriptor",
    "Found",
    "HostConfig",
    "Manifest",
    "Mount",
    "Platform",
    "ProgressCallback",
    "ProgressEvent",
    "ProgressKind",
    "Referrer",
    "ReferrerFinder",
    "ReferrerReport",
    "ReferrerSettings",
    "RegistryClient",
    "Repository",
    "Response",
    "RetryPolicy",
    "Timeout",
    "TransientCopyError",
    "Transport",
    "UploadMode",
    "artifact_type_of",
    "cosign_tags",
    "fallback_tag",
    "parse_platforms",
    "static_credentials",
    "tls_context",
]
