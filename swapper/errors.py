"""The one error hierarchy of swapper.

Every error swapper raises on purpose derives from :class:`SwapperError`::

    SwapperError
    ├── ConfigError                 the config is missing, unreadable or invalid (no start)
    ├── InvalidReference            an image reference does not follow the distribution grammar
    ├── AdmissionError              the request body is not an AdmissionReview (HTTP 400)
    ├── MalformedPod                the review's pod cannot be read (allowed, unchanged)
    ├── CertificateError            the TLS certificate or key cannot be loaded or generated
    ├── CredentialsError            a pull secret or credentials file cannot be read
    ├── KubeError                   a Kubernetes API call failed, or holds what swapper won't touch
    │   └── KubeApiError            the API server answered an error status (``status``)
    │       ├── Forbidden           the service account may not (403)
    │       ├── NotFound            no such object (404)
    │       ├── Conflict            the object exists already or changed since it was read (409)
    │       ├── Gone                a resourceVersion or continue token is too old (410)
    │       └── Invalid             refused as invalid (422): a JSON-patch ``test`` that failed
    ├── QueueFull                   the copy queue is at its bound; the copy was not accepted
    ├── MalformedMark               a usage mark's tag holds what swapper did not write
    ├── SignatureError              a cosign key, signature, payload or bundle is unusable
    ├── TransportError              an HTTP exchange of swapper.oci's client failed
    │   ├── ConnectError            no connection: refused, TLS, proxy, or a URL it cannot use
    │   ├── ReadError               the connection broke while an answer was read
    │   ├── WriteError              the connection broke while a request was sent
    │   ├── RemoteProtocolError     the server broke HTTP/1.1 (or closed mid-answer)
    │   │   ├── RedirectError       a redirect that cannot be followed
    │   │   └── Disconnected        closed without a byte of its answer
    │   └── TimeoutException        a connect, read or write timeout ran out
    │       ├── ConnectTimeout
    │       ├── ReadTimeout
    │       └── WriteTimeout
    └── RegistryError               a target registry or the copy machinery failed
        ├── DeleteRefused           the target registry will not delete that tag or manifest
        └── CopyError               an image copy failed (its CopyReason says why)
            ├── CopyDeadlineExceeded  an immediate/force copy did not finish before its deadline
            └── TransientCopyError  it may pass (connection, timeout, 5xx, 429): retries ran out

Admission never lets any of these escape as a failed pod: the handler turns them into
``allowed: true`` without a patch, a warning, a log line and a metric.

Two of them are signals inside one module rather than failures to report: the registry
client of :mod:`swapper.oci` turns a :class:`TransportError` into a :class:`CopyError`
(``timeout``, ``connection``, ``tls`` or ``rejected``), and the watch loops of
:mod:`swapper.kube` catch :class:`Gone` and list again.
"""

from __future__ import annotations

from enum import StrEnum


class SwapperError(Exception):
    """Base of every error swapper raises on purpose."""


class ConfigError(SwapperError):
    """The configuration is invalid. ``problems`` holds one ``(key, message)`` per problem."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  {key}: {message}" for key, message in problems)
        super().__init__(f"invalid {source}:\n{lines}")


class InvalidReference(SwapperError):
    """An image reference that does not parse. ``reference`` is the input as given."""

    def __init__(self, reference: str, reason: str) -> None:
        self.reference = reference
        self.reason = reason
        super().__init__(f"invalid image reference {reference!r}: {reason}")


class AdmissionError(SwapperError):
    """The request body is not a usable AdmissionReview."""


class MalformedPod(SwapperError):
    """The pod in the request cannot be read (answered allowed, unchanged)."""


class CertificateError(SwapperError):
    """A TLS certificate or key cannot be loaded or generated."""


class CredentialsError(SwapperError):
    """Registry credentials (a pull secret, a credentials file) cannot be read. The message
    never carries the credentials themselves."""


class KubeError(SwapperError):
    """A Kubernetes API call failed, or the cluster holds something swapper will not touch.

    The message names the verb, the object and the API server's reason; never object data.
    """


class KubeApiError(KubeError):
    """The API server answered an error status (``status``). ``continue_token``: the fresh
    token a 410 for an expired list continue token carries ("" when none)."""

    STATUS = 0

    def __init__(self, message: str = "", *, status: int = 0, continue_token: str = "") -> None:
        super().__init__(message or f"HTTP {status or self.STATUS}")
        self.status = status or self.STATUS
        self.continue_token = continue_token


class Forbidden(KubeApiError):
    """The service account may not do this (HTTP 403)."""

    STATUS = 403


class NotFound(KubeApiError):
    """No such object (HTTP 404)."""

    STATUS = 404


class Conflict(KubeApiError):
    """The object exists already, or changed since it was read (HTTP 409): read it again."""

    STATUS = 409


class Gone(KubeApiError):
    """A watch's resourceVersion, or a list's continue token, is too old (HTTP 410): list
    again."""

    STATUS = 410


class Invalid(KubeApiError):
    """The object or patch was refused as invalid (HTTP 422), as a failed JSON-patch ``test``."""

    STATUS = 422


class QueueFull(SwapperError):
    """The copy queue is full; the copy was not accepted."""


# -- the HTTP client under swapper.oci --------------------------------------------------------


class MalformedMark(SwapperError):
    """A tag of the usage marks' scheme (:mod:`swapper.mirror.marks`) whose manifest is not a
    mark swapper would write (another tool wrote it, or it was changed): cleanup keeps it and
    its image, and reports it."""


class SignatureError(SwapperError):
    """A cosign public key, signature, simple signing payload or sigstore bundle cannot be
    used: not a key, malformed, or a signature over another image. The message is one line
    and names what was wrong; verification turns it into a decision, never a crash."""


class TransportError(SwapperError):
    """The connection failed, timed out, or the server broke the protocol."""


class ConnectError(TransportError):
    """No connection: refused, unreachable, a failed TLS handshake or proxy ``CONNECT``, or a
    URL (scheme, port, proxy) the client cannot use."""


class ReadError(TransportError):
    """The connection broke while an answer was read."""


class WriteError(TransportError):
    """The connection broke, or was closed, while a request was sent."""


class RemoteProtocolError(TransportError):
    """The server's answer is not valid HTTP/1.1, or the connection closed in the middle of it."""


class RedirectError(RemoteProtocolError):
    """A redirect that cannot be followed: one too many, or one that needs a request body sent
    again that was streamed (and so is spent)."""


class Disconnected(RemoteProtocolError):
    """The server closed the connection without sending a byte of its answer."""


class TimeoutException(TransportError):
    """A connect, read or write timeout ran out."""


class ConnectTimeout(TimeoutException):
    """Connecting (TLS included) took longer than the connect timeout."""


class ReadTimeout(TimeoutException):
    """Nothing was received for the read timeout."""


class WriteTimeout(TimeoutException):
    """The peer took nothing for the write timeout."""


# -- registries and copies --------------------------------------------------------------------


class RegistryError(SwapperError):
    """A target registry or the copy machinery failed."""


class DeleteRefused(RegistryError):
    """The target registry refuses to delete a tag or a manifest, and asking again will not
    change that: deletes are switched off (distribution without ``storage.delete.enabled``),
    it deletes by digest only (no tag deletes), or swapper's identity may not delete there.
    The message says which and what to change."""


class CopyReason(StrEnum):
    """Why a copy failed: :attr:`CopyError.reason`, and the ``reason`` label of
    ``swapper_copies_failed_total`` (README.md's metrics table lists exactly these; a test
    holds it to them). Stable: dashboards and alerts match them."""

    # from swapper.oci (its REASONS)
    NOT_FOUND = "not-found"  # the source image, a child manifest or a blob does not exist
    UNAUTHORIZED = "unauthorized"  # credentials missing or refused (401, or the token endpoint)
    DENIED = "denied"  # authenticated but not allowed (403)
    RATE_LIMITED = "rate-limited"  # 429 until the retries ran out, or a Retry-After too long
    SERVER_ERROR = "server-error"  # 5xx until the retries ran out
    TIMEOUT = "timeout"  # connect/read/write timeouts until the retries ran out
    CONNECTION = "connection"  # refused, reset or broken connections until the retries ran out
    TLS = "tls"  # the registry's certificate is not trusted
    DIGEST_MISMATCH = "digest-mismatch"  # content differs from its digest (or a pinned one)
    INVALID_MANIFEST = "invalid-manifest"  # not JSON, malformed descriptors, larger than 4 MiB
    UNSUPPORTED = "unsupported"  # Docker schema 1, an unknown digest algorithm
    PLATFORM_NOT_FOUND = "platform-not-found"  # none of the selected platforms is in the index
    REJECTED = "rejected"  # the target refused a push (4xx other than the above)
    # from the copy queue and ``swapper mirror`` under mirror.verify
    UNVERIFIED_SIGNATURE = "unverified-signature"  # no signature verified by a configured key
    # from the copy queue and ``swapper mirror``
    TARGET = "target"  # the target registry's own API failed (a RegistryError: ECR, GAR)
    INTERNAL = "internal"  # anything else the copier raised
    # only ever given to a waiter: no copy failed, so they are never counted
    DEADLINE = "deadline"  # an immediate or force copy did not finish within its deadline
    SHUTDOWN = "shutdown"  # swapper is stopping: a queued or running copy ends unfinished


class CopyError(RegistryError):
    """An image copy failed; ``reason`` says why (a ``str`` given is made a
    :class:`CopyReason`, and one that is none raises ``ValueError``)."""

    def __init__(self, message: str, reason: CopyReason) -> None:
        self.reason = CopyReason(reason)
        super().__init__(message)


class CopyDeadlineExceeded(CopyError):
    """An ``immediate`` or ``force`` copy did not finish within ``imageCopyDeadline``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, CopyReason.DEADLINE)


class TransientCopyError(CopyError):
    """A copy failed for a reason that may pass (connection, timeout, 5xx, 429).

    Raised once the retries of :mod:`swapper.oci` are spent; ``retry_after`` is what the
    registry last asked for (seconds), if anything.
    """

    def __init__(self, message: str, reason: CopyReason, retry_after: float | None = None) -> None:
        super().__init__(message, reason)
        self.retry_after = retry_after
