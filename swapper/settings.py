"""What every settings group is made of: the base model, durations, sizes, the policy enums.

The config file's model (:mod:`swapper.config`) and the groups that live beside the code using
them (:mod:`swapper.access.settings`) build on it. Imports nothing of swapper.
"""

from __future__ import annotations

import dataclasses
import re
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
)
from pydantic_core import core_schema


class SwapPolicy(StrEnum):
    """When a container's image is rewritten to the mirror."""

    ALWAYS = "always"  # always rewrite, whether or not the mirror has the image yet
    EXISTS = "exists"  # rewrite only when the mirror already has the image


class RefreshTags(StrEnum):
    """When a mirrored tag is copied again from its source (``mirror.refreshTags``)."""

    NEVER = "never"  # the mirror keeps what it copied first: a pinned, stable copy
    ON_PULL = "onPull"  # a pod admitted with the tag looks at the source again (refreshEvery)
    ALWAYS = "always"  # onPull, and the monitor copies a tag it sees moved at the source


class CopyPolicy(StrEnum):
    """How the copy into the mirror is started."""

    DELAYED = "delayed"  # queue the copy and answer at once
    IMMEDIATE = "immediate"  # queue the copy and wait for it, up to imageCopyDeadline
    FORCE = "force"  # copy now, outside the queue, up to imageCopyDeadline
    NONE = "none"  # never copy


LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "fatal", "panic")

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def format_duration(seconds: float) -> str:
    """The shortest Go duration for ``seconds``: ``8s``, ``1h``, ``1m30s``, ``500ms``."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("us", 1_000)):
            if ns % size == 0:
                return f"{sign}{ns // size}{unit}"
        return f"{sign}{ns}ns"
    hours, ns = divmod(ns, 3_600_000_000_000)
    minutes, ns = divmod(ns, 60_000_000_000)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if ns:
        text += f"{ns / 1e9:.9f}".rstrip("0").rstrip(".") + "s"
    return sign + text


def parse_duration(value: object) -> float:
    """Seconds from a Go duration string (``8s``, ``1m30s``, ``500ms``) or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '8s'")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a duration such as '8s'")
    text = value.strip()
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(f"{value!r} is not a duration (examples: '8s', '1m30s', '500ms')")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total


@dataclasses.dataclass(frozen=True, slots=True)
class Duration:
    """The metadata that makes a ``float`` field a duration setting:
    ``Annotated[float, Duration(86_400, "24h")]``. It reads a Go duration (``8s``, ``1m30s``)
    or a number of seconds, keeps it within its bounds (more than 0s and at most ``high``,
    named ``label`` in the error; with ``zero_ok``, 0s too and no upper bound; ``zero_means``:
    what 0s stands for), and is written back as a Go duration in JSON (``check-config``, the
    config reload). The one place durations are read, checked and printed."""

    high: float | None = None
    label: str = ""
    zero_ok: bool = False
    zero_means: float | None = None

    def check(self, value: object) -> float:
        seconds = parse_duration(value)
        if seconds == 0 and self.zero_means is not None:
            return self.zero_means
        if self.zero_ok:
            if seconds < 0:
                raise ValueError("must not be negative")
            return seconds
        if not 0 < seconds <= (self.high if self.high is not None else float("inf")):
            raise ValueError(f"must be more than 0s and at most {self.label}")
        return seconds

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(
            self.check,
            handler(source),
            serialization=core_schema.plain_serializer_function_ser_schema(
                format_duration, when_used="json"
            ),
        )


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=True, str_strip_whitespace=True
    )


_SIZE = re.compile(r"^(\d+)(Ki|Mi|Gi)?$")
_SIZE_UNITS = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def parse_size(value: object) -> int:
    """Bytes from a number or a Kubernetes-style binary quantity (``64Ki``, ``8Mi``)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 8Mi")
    if isinstance(value, int):
        return value
    match = _SIZE.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a size (examples: 8388608, '64Ki', '8Mi')")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


DEFAULT_COPY_DEADLINE = 8.0
