"""Structured logging (structlog): one JSON or console line per event, with request context.

Secrets never reach a log line: callers log names of secrets, never their data, and the
``_redact`` processor drops any key that looks like it carries a credential as a last guard.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import orjson
import structlog

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}
_SENSITIVE = frozenset(
    {"password", "token", "secret_data", "authorization", "auth", "dockerconfigjson"}
)


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    # Keys are lowercase by convention here; the set intersection keeps this off the hot path.
    for key in _SENSITIVE.intersection(event):
        event[key] = "[redacted]"
    return event


def _orjson(event: dict[str, Any], **_: Any) -> bytes:
    return orjson.dumps(event, default=str)


def configure(level: str = "info", fmt: str = "json", stream: IO[bytes] | None = None) -> None:
    """Configure structlog and the stdlib root logger (uvicorn's lines go through it too).

    Structlog lines are rendered with orjson straight to bytes: one decision line per container
    is on the admission hot path.
    """
    numeric = _LEVELS.get(level.lower(), logging.INFO)
    out = stream or sys.stderr.buffer
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    if fmt == "json":
        final: list[Any] = [renderer]
    else:  # the console renderer makes text; structlog's byte logger wants bytes
        final = [renderer, lambda _, __, text: text.encode()]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, *final],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(out),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    stdlib_renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else renderer
    handler = logging.StreamHandler(sys.stderr if stream is None else _TextOut(out))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                stdlib_renderer,
            ],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # One access line per admission request is noise next to the decision lines.
    logging.getLogger("uvicorn.access").setLevel(max(numeric, logging.WARNING))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


class _TextOut:
    """A text stream over a byte stream, for the stdlib handler when a stream is given."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def write(self, text: str) -> int:
        return self._out.write(text.encode())

    def flush(self) -> None:
        self._out.flush()
