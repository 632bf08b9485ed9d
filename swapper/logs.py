"""Structured logging (structlog): one JSON or console line per event, with request context.

Secrets never reach a log line: callers log names of secrets, never their data, and never a
pod's annotations or ``env`` values. As a last guard, every line (structlog's and
:func:`info_lines`') is redacted by the same functions (``_finish``, ``_scrub_nested``): any key
that looks like it carries a credential is hidden, and so are, wherever they are (in a dict or
list logged as it is too), ``annotations``, ``kubectl.kubernetes.io/last-applied-configuration``
and the ``value`` of ``env`` entries.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import io
import logging
import sys
from collections.abc import MutableMapping
from typing import IO, Any, Protocol

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


# Besides those, hidden wherever they are: what a pod carries that often holds secrets.
_HIDDEN = _SENSITIVE | {"annotations", "kubectl.kubernetes.io/last-applied-configuration"}
_REDACTED = "[redacted]"


def _scrubbed(value: Any) -> Any:
    """A copy of a nested value with the :data:`_HIDDEN` keys and ``env`` values hidden."""
    if isinstance(value, dict):
        return {
            k: _REDACTED if k in _HIDDEN else (_env(v) if k == "env" else _scrubbed(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value


def _env(value: Any) -> Any:
    if not isinstance(value, list):
        return _scrubbed(value)
    return [
        {**_scrubbed(e), "value": _REDACTED} if isinstance(e, dict) and "value" in e else e
        for e in value
    ]


def _finish(event: dict[str, Any], level: str, stamp: str) -> dict[str, Any]:
    """What every line adds to an event's own fields (its level and timestamp), and the
    redaction of its top-level fields: for structlog's lines and for :func:`info_lines`' alike
    (its nested values are :func:`_scrub_nested`'s)."""
    event["level"] = level
    event["timestamp"] = stamp
    # Keys are lowercase by convention here; the set intersection keeps this off the hot path.
    for key in _HIDDEN.intersection(event):
        event[key] = _REDACTED
    if "env" in event:
        event["env"] = _env(event["env"])
    return event


def _scrub_nested(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its nested values (other than the ones already hidden) scrubbed."""
    for key, value in event.items():
        if isinstance(value, dict | list | tuple) and key not in _HIDDEN and key != "env":
            event[key] = _scrubbed(value)
    return event


def _now() -> str:
    """A line's timestamp: ISO 8601, in UTC, with ``Z`` for the zone."""
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def _finish_line(logger: Any, method_name: str, event: dict[str, Any]) -> dict[str, Any]:
    """The structlog processor: :func:`_finish` (the level named as structlog names it, the
    time now) and :func:`_scrub_nested`."""
    level = structlog.processors.add_log_level(logger, method_name, event)["level"]
    return _scrub_nested(_finish(event, level, _now()))


def _orjson(event: dict[str, Any], **_: Any) -> bytes:
    """The JSON of a line (without its newline)."""
    return orjson.dumps(event, default=str)


def _orjson_text(event: dict[str, Any], **_: Any) -> str:
    return orjson.dumps(event, default=str).decode()


def configure(level: str = "info", fmt: str = "json", stream: IO[bytes] | None = None) -> None:
    """Configure structlog and the stdlib root logger (uvicorn's lines go through it too).

    Structlog lines are rendered with orjson straight to bytes: one decision line per container
    is on the admission hot path.
    """
    numeric = _LEVELS.get(level.lower(), logging.INFO)
    global _output, _format
    flush()  # what the previous configuration still holds
    _output = _DeferredFlush(stream or sys.stderr.buffer)
    _format = fmt
    out = _output
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [_finish_line]
    _set(numeric)
    if fmt == "json":
        final: list[Any] = [renderer]
    else:  # the console renderer makes text; structlog's byte logger wants bytes
        final = [renderer, lambda _, __, text: text.encode()]
    structlog.configure(
        processors=[_below_level, *shared, structlog.processors.format_exc_info, *final],
        # Every method kept: the level is :func:`_below_level`'s, which set_level changes for
        # loggers already cached too.
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.BytesLoggerFactory(out),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    # Lines of other libraries (uvicorn, asyncio) in the same style as swapper's own: the same
    # JSON serializer, and a traceback rendered as text, never as "<traceback object ...>".
    stdlib_renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_text) if fmt == "json" else renderer
    )
    handler = logging.StreamHandler(sys.stderr if stream is None else _TextOut(out))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                stdlib_renderer,
            ],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    _set(numeric)


_level = logging.INFO
_format = "json"
_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def _below_level(
    _: Any, method_name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Drops a line below the level set (by :func:`configure` or :func:`set_level`)."""
    if _METHOD_LEVELS.get(method_name, logging.INFO) < _level:
        raise structlog.DropEvent
    return event


def _set(numeric: int) -> None:
    global _level, _fast_json
    _level = numeric
    _fast_json = _format == "json" and numeric <= logging.INFO
    logging.getLogger().setLevel(numeric)
    # One access line per admission request is noise next to the decision lines.
    logging.getLogger("uvicorn.access").setLevel(max(numeric, logging.WARNING))


def set_level(level: str) -> None:
    """Change the level of a running process (a reloaded ``logLevel``): swapper's loggers,
    those already in use too, and the standard library's (uvicorn's)."""
    _set(_LEVELS.get(level.lower(), logging.INFO))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


class _DeferredFlush:
    """The structlog output: in the server, lines are buffered and written out once the event
    loop's current turn is done (and every second by :func:`flush_periodically`, and at exit)
    instead of after every line: under load, one write system call for the lines of several
    requests instead of one per container. Outside an event loop (the CLI, worker threads) a
    line is written at once."""

    def __init__(self, raw: IO[bytes]) -> None:
        if isinstance(raw, io.RawIOBase):
            # PYTHONUNBUFFERED (set in the container image) makes sys.stderr.buffer a raw file:
            # every write would be a system call. Buffer on a view of the same descriptor
            # that never closes it.
            raw = io.BufferedWriter(io.FileIO(raw.fileno(), "wb", closefd=False), 1 << 16)
        self.raw = raw

    def write(self, data: bytes) -> int:
        return self.raw.write(data)

    def flush(self) -> None:  # called after every line: deferred to the loop's turn, if any
        flush_soon()

    def sync(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # a broken stream must not fail a request
            self.raw.flush()


_output: _DeferredFlush | None = None
_fast_json = False
_flush_loop: object | None = None  # the loop a flush is scheduled on


def flush_soon() -> None:
    """Flush once the event loop has run what is ready now: under load, the lines of many
    requests share one write; when idle, a request's lines are written right after it.
    Outside a running loop, flush now."""
    global _flush_loop
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        flush()
        return
    if _flush_loop is not loop:  # (a loop closed with a flush pending is not waited for)
        _flush_loop = loop
        loop.call_soon(_scheduled_flush)


def _scheduled_flush() -> None:
    global _flush_loop
    _flush_loop = None
    flush()


def info_lines(event: str, records: list[dict[str, Any]], fallback: Any) -> None:
    """One info line per record: the per-container decision lines of the admission hot path.

    In JSON format the lines are rendered here, skipping structlog's logger, with the functions
    its own lines go through (:func:`_finish`: level, timestamp, redaction; :func:`_orjson`):
    the same bytes (one timestamp for the batch) at a fraction of the cost per line, and one
    write for all of them. Records are flat (strings, numbers, booleans): unlike structlog's
    lines, nested values are not looked into (:func:`_scrub_nested` would add a fifth to the
    cost of a line), nor is an ``exc_info`` rendered. The records are consumed (the line's
    fields are added to them). Otherwise each record goes through ``fallback`` (a structlog
    logger).
    """
    if not records:
        return
    if not _fast_json or _output is None:
        for record in records:
            fallback.info(event, **record)
        return
    stamp = _now()
    lines = []
    for record in records:
        record["event"] = event
        lines.append(_orjson(_finish(record, "info", stamp)))
    lines.append(b"")
    _output.write(b"\n".join(lines))


def flush() -> None:
    """Write out the log lines buffered so far."""
    if _output is not None:
        _output.sync()


atexit.register(flush)


async def flush_periodically(interval: float = 1.0) -> None:
    """Flush lines logged outside requests (start-up, background tasks) within a second."""
    import asyncio

    try:
        while True:
            await asyncio.sleep(interval)
            flush()
    finally:
        flush()


class _ByteSink(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


class _TextOut:
    """A text stream over a byte stream, for the stdlib handler when a stream is given."""

    def __init__(self, out: _ByteSink) -> None:
        self._out = out

    def write(self, text: str) -> int:
        return self._out.write(text.encode())

    def flush(self) -> None:
        self._out.flush()
