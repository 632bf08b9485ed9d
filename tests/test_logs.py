"""The log output: decision lines rendered with orjson, buffered until flushed, redacted."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from swapper import logs


@pytest.fixture
def unbuffered(tmp_path: Path) -> Iterator[tuple[io.FileIO, Path]]:
    """A raw file, as ``sys.stderr.buffer`` is under ``PYTHONUNBUFFERED``."""
    path = tmp_path / "log"
    raw = io.FileIO(path, "wb")
    logs.configure("info", "json", stream=raw)  # type: ignore[arg-type]
    yield raw, path
    logs.configure("info", "json", stream=io.BytesIO())
    raw.close()


def _record(**extra: object) -> dict[str, object]:
    return {"uid": "u1", "namespace": "shop", "container": "web", **extra}


def test_decision_lines_on_an_unbuffered_stream_wait_for_the_flush(
    unbuffered: tuple[io.FileIO, Path],
) -> None:
    _, path = unbuffered
    logs.info_lines("decision", [_record(), _record(container="init")], None)
    assert path.read_bytes() == b""
    logs.flush()
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [line["container"] for line in lines] == ["web", "init"]
    assert {line["event"] for line in lines} == {"decision"}
    assert {line["level"] for line in lines} == {"info"}
    assert all(line["timestamp"].endswith("Z") for line in lines)


def test_replacing_the_buffered_view_leaves_the_stream_open(
    unbuffered: tuple[io.FileIO, Path],
) -> None:
    raw, path = unbuffered
    logs.info_lines("decision", [_record()], None)
    logs.configure("info", "json", stream=io.BytesIO())  # the buffered view is dropped
    raw.write(b"after\n")
    assert path.read_bytes().splitlines()[-1] == b"after"


def test_reconfiguring_writes_out_the_lines_still_buffered(
    unbuffered: tuple[io.FileIO, Path],
) -> None:
    _, path = unbuffered
    logs.info_lines("decision", [_record()], None)
    logs.configure("info", "json", stream=io.BytesIO())
    assert orjson.loads(path.read_bytes())["uid"] == "u1"


# A flat decision record, with keys redaction hides and a bracket in a string.
FLAT = _record(
    pod="web-1",
    source="nginx:1.27",
    target="mirror.example.com/nginx:1.27",
    reason="swapped",
    dry_run=False,
    filter=0,
    detail="copy failed: [registry] said no",
    token="t0ken",
    annotations="team/token=t0ken",
)
ISO_UTC = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def _structlog_line(log: Any) -> None:
    log.info("decision", **dict(FLAT))


def _decision_line(log: Any) -> None:
    logs.info_lines("decision", [dict(FLAT)], log)


def _output(fmt: str, level: str, write: Callable[[Any], None]) -> list[bytes]:
    """The lines ``write`` logs, configured so, each line's timestamp (in UTC) as ``<now>``."""
    out = io.BytesIO()
    logs.configure(level, fmt, stream=out)
    try:
        write(logs.get_logger("swapper.app"))
    finally:
        logs.configure("info", "json", stream=io.BytesIO())
    lines = out.getvalue().splitlines()
    assert all(len(ISO_UTC.findall(line)) == 1 for line in lines)
    return [ISO_UTC.sub(b"<now>", line) for line in lines]


@pytest.mark.parametrize(
    ("fmt", "level"), [("json", "info"), ("json", "debug"), ("console", "info")]
)
def test_a_decision_line_is_the_line_structlog_writes_for_the_same_event(
    fmt: str, level: str
) -> None:
    decision = _output(fmt, level, _decision_line)
    assert len(decision) == 1
    assert b"t0ken" not in decision[0]
    assert decision == _output(fmt, level, _structlog_line)


def test_credential_keys_are_redacted_in_decision_lines(
    unbuffered: tuple[io.FileIO, Path],
) -> None:
    _, path = unbuffered
    logs.info_lines("decision", [_record(password="hunter2", token="t0ken")], None)
    logs.flush()
    text = path.read_text()
    assert "hunter2" not in text and "t0ken" not in text
    assert orjson.loads(text)["password"] == "[redacted]"


def test_a_line_logged_outside_an_event_loop_is_written_at_once(
    unbuffered: tuple[io.FileIO, Path],
) -> None:
    _, path = unbuffered
    logs.get_logger("swapper.test").info("started", target="mirror.example.com")
    assert orjson.loads(path.read_bytes())["event"] == "started"


def test_lines_logged_in_an_event_loop_are_written_after_its_turn(
    unbuffered: tuple[io.FileIO, Path],
) -> None:
    _, path = unbuffered
    seen: list[bytes] = []

    async def request() -> None:
        logs.get_logger("swapper.test").info("first")
        logs.info_lines("decision", [_record()], None)
        seen.append(path.read_bytes())  # still buffered: one write for the whole turn
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(path.read_bytes())

    asyncio.run(request())
    assert seen[0] == b""
    assert [orjson.loads(line)["event"] for line in seen[1].splitlines()] == ["first", "decision"]


def test_each_new_event_loop_gets_its_own_flush(unbuffered: tuple[io.FileIO, Path]) -> None:
    _, path = unbuffered

    async def log_and_leave() -> None:
        logs.get_logger("swapper.test").info("in-loop")

    asyncio.run(log_and_leave())
    asyncio.run(log_and_leave())
    logs.get_logger("swapper.test").info("outside")
    events = [orjson.loads(line)["event"] for line in path.read_bytes().splitlines()]
    assert events == ["in-loop", "in-loop", "outside"]


def test_other_libraries_lines_are_compact_json_like_swappers_own(
    unbuffered: tuple[io.FileIO, Path],
) -> None:
    import logging

    _, path = unbuffered
    logging.getLogger("uvicorn.error").info("Started server process [1]")
    logs.get_logger("swapper.test").info("ready", target="mirror.example.com")
    logs.flush()
    first, second = path.read_bytes().splitlines()
    for line in (first, second):
        assert line == orjson.dumps(orjson.loads(line))  # orjson's own compact form
    assert orjson.loads(first)["logger"] == "uvicorn.error"


def test_a_traceback_from_another_library_is_rendered_as_text(
    unbuffered: tuple[io.FileIO, Path],
) -> None:
    import logging

    _, path = unbuffered
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    logs.flush()
    line = orjson.loads(path.read_bytes().splitlines()[-1])
    assert "traceback object" not in str(line)
    assert "Traceback (most recent call last)" in line["exception"]
    assert "ValueError: boom" in line["exception"]
