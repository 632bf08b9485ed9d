"""The HTTPS server (``server``): connection limits and deadlines."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
    field_validator,
)

from swapper.settings import Duration, _Model, parse_size


class ServerSettings(_Model):
    """Limits of the HTTPS server (swapper's own key ``server``); see the README's Hardening."""

    max_request_bytes: int = Field(8 * 1024**2, alias="maxRequestBytes")  # 413 beyond
    max_header_bytes: int = Field(64 * 1024, alias="maxHeaderBytes")  # 431 beyond
    max_containers: int = Field(1000, alias="maxContainers", ge=1, le=100_000)  # per pod
    handshake_timeout: Annotated[float, Duration(3600, "1h")] = Field(
        5.0, alias="handshakeTimeout"
    )  # TLS handshake
    header_timeout: Annotated[float, Duration(3600, "1h")] = Field(
        5.0, alias="headerTimeout"
    )  # request line and headers
    # Longer than the API server's own idle timeout for webhook connections (90s), so it never
    # sends a request on a connection swapper is closing.
    keep_alive_timeout: Annotated[float, Duration(3600, "1h")] = Field(
        120.0, alias="keepAliveTimeout"
    )
    # Connections at once; beyond it the oldest idle one is closed, else the newest gets 503.
    # Kept below the open-file limit (raised to its hard limit at start).
    max_connections: int = Field(1000, alias="maxConnections", ge=16, le=1_000_000)

    @field_validator("max_request_bytes", "max_header_bytes", mode="before")
    @classmethod
    def _size(cls, value: object) -> int:
        size = parse_size(value)
        if not 1024 <= size <= 1024**3:
            raise ValueError("must be at least 1Ki and at most 1Gi")
        return size
