"""When to try again: exponential backoff with jitter, ``Retry-After`` on 429 and 503."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swapper.oci._http import Response

# Statuses worth another go: the registry (or something in front of it) is overloaded or
# restarting. 501 and 505 say the request will never work and are not retried.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failed request (or blob transfer) is tried again.

    ``attempts`` counts the first try. The delay before try ``n + 1`` is
    ``min(max_delay, base_delay * 2**n)`` scaled by a random factor in ``[0.5, 1]`` so that many
    copies failing together do not come back together. A 429 or 503 with ``Retry-After`` waits
    what the registry asks, unless that is longer than ``max_retry_after``: then the copy fails
    at once with reason ``rate-limited`` (a Docker Hub pull limit resets in hours; a queue
    worker should not sleep through it).
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (0-based)."""
        import random  # only when something failed: not at start-up

        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return float(ceiling * random.uniform(0.5, 1.0))  # noqa: S311 (jitter, not secrecy)


def retry_after(response: Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from datetime import UTC, datetime  # rare: not imported at start-up
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
