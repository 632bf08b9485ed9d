"""HTTP/1.1 conformance of the client under the engine (``swapper.oci._http``), as one table.

Each case scripts the exact bytes a raw server on ``127.0.0.1`` answers, in order, one answer
per request it receives; the server records what the client sent (head, body as on the wire,
body decoded). A case says what every request on the wire must hold and what the caller gets:
a status and body, or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from swapper.errors import ConnectTimeout, CopyError, RedirectError, RemoteProtocolError
from swapper.images import parse
from swapper.oci import HostConfig, RegistryClient, RetryPolicy
from swapper.oci._http import HTTPClient, Timeout

# -- the raw server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """Bytes written back for one request, piece by piece (a short pause between pieces, so
    that they tend to arrive apart); ``close``: close the connection after them."""

    pieces: tuple[bytes, ...]
    close: bool = False


def answer(*pieces: bytes, close: bool = False) -> Answer:
    return Answer(pieces, close)


@dataclass
class Received:
    method: str
    target: str
    headers: list[tuple[str, str]]
    raw_body: bytes  # as on the wire (chunk framing included)
    body: bytes  # decoded

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class ScriptedServer:
    """Reads requests (``Content-Length`` or chunked bodies) and writes the next answer of the
    script for each; a body promised by ``Content-Length`` that does not come within
    ``body_wait`` seconds is recorded as what came (nothing), and the answer sent anyway."""

    def __init__(self, answers: tuple[Answer, ...], body_wait: float = 0.3) -> None:
        self.answers = deque(answers)
        self.body_wait = body_wait
        self.received: list[Received] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def aclose(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._tasks.values():
            writer.transport.abort()  # the handler's next read or write ends it
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks[task] = writer
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head[:-4].decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = []
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers.append((name.strip(), value.strip()))
                raw, body = await self._body(reader, {k.lower(): v for k, v in headers})
                self.received.append(Received(method, target, headers, raw, body))
                if not self.answers:
                    return
                scripted = self.answers.popleft()
                for number, piece in enumerate(scripted.pieces):
                    if number:
                        await asyncio.sleep(0.02)
                    writer.write(piece)
                    await writer.drain()
                if scripted.close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._tasks.pop(task, None)
            writer.close()

    async def _body(
        self, reader: asyncio.StreamReader, headers: dict[str, str]
    ) -> tuple[bytes, bytes]:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raw, body = bytearray(), bytearray()
            while True:
                line = await reader.readuntil(b"\r\n")
                raw += line
                size = int(line.split(b";", 1)[0], 16)
                if size == 0:
                    while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                        raw += trailer
                    raw += b"\r\n"
                    return bytes(raw), bytes(body)
                data = await reader.readexactly(size + 2)
                raw += data
                body += data[:-2]
        length = int(headers.get("content-length", "0"))
        try:
            async with asyncio.timeout(self.body_wait):
                data = await reader.readexactly(length)
        except TimeoutError:
            data = b""
        return data, data


class NeverAccepts:
    """A listener whose backlog is full (``listen(0)`` and one connection never accepted):
    the kernel drops further SYNs, so a connection attempt hangs, on loopback."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.connections = 0
        self._listener = socket.socket()
        self._fillers: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> NeverAccepts:
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        for _ in range(16):
            filler = socket.socket()
            filler.settimeout(0.2)
            try:
                filler.connect(self._listener.getsockname())
            except TimeoutError:
                filler.close()
                return self  # the backlog is full: this attempt hung
            self._fillers.append(filler)
        self.close()
        raise AssertionError("the listener's backlog never filled up")

    def close(self) -> None:
        for filler in self._fillers:
            filler.close()
        self._listener.close()


# -- the cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Streamed:
    """A one-shot request body (an async iterator made afresh for each ``send``)."""

    chunks: tuple[bytes, ...]

    async def iterate(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


@dataclass(frozen=True)
class Sent:
    """What one request on the wire must be: ``has`` headers with exactly these values (once),
    none of ``lacks``, and (unless None) this body, decoded and as framed on the wire."""

    method: str
    target: str
    has: dict[str, str] = field(default_factory=dict)
    lacks: tuple[str, ...] = ()
    body: bytes | None = None
    raw_body: bytes | None = None


@dataclass(frozen=True)
class Case:
    id: str
    answers: tuple[Answer, ...]
    sent: tuple[Sent, ...]
    method: str = "GET"
    path: str = "/x"
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | Streamed | None = None
    follow_redirects: bool = False
    repeat: int = 1  # the request is sent this many times, one after the other
    status: int | None = None
    body: bytes = b""
    answer_has: dict[str, str | None] = field(default_factory=dict)  # None: must be absent
    error: type[Exception] | None = None
    error_match: str = ""
    connections: int | None = None
    listener: str = "scripted"  # or "never-accepts"


BODY_HEADERS = ("content-length", "content-type", "transfer-encoding")
OK = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
CREATED = answer(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")


def redirect(status: int, location: str) -> Answer:
    return answer(
        f"HTTP/1.1 {status} R\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
    )


def length(value: bytes) -> Answer:
    return answer(b"HTTP/1.1 200 OK\r\n" + value + b"\r\n\r\nok")


def bad_length(case_id: str, header: bytes) -> Case:
    return Case(
        case_id,
        answers=(length(header),),
        sent=(Sent("GET", "/x"),),
        error=RemoteProtocolError,
        error_match="Content-Length",
    )


CASES = [
    # -- request bodies
    Case(
        "a_streamed_body_without_a_length_is_sent_chunked_and_its_empty_chunks_skipped",
        method="PUT",
        content=Streamed((b"hello", b"", b" world")),
        answers=(CREATED,),
        sent=(
            Sent(
                "PUT",
                "/x",
                has={"Transfer-Encoding": "chunked"},
                lacks=("content-length",),
                body=b"hello world",
                raw_body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            ),
        ),
        status=201,
    ),
    Case(
        "a_streamed_body_with_the_callers_length_is_sent_unframed",
        method="PUT",
        headers={"Content-Length": "11"},
        content=Streamed((b"hello", b" world")),
        answers=(CREATED,),
        sent=(
            Sent(
                "PUT",
                "/x",
                has={"Content-Length": "11"},
                lacks=("transfer-encoding",),
                raw_body=b"hello world",
            ),
        ),
        status=201,
    ),
    Case(
        "a_bytes_body_is_sent_with_its_content_length",
        method="PUT",
        content=b"{}",
        answers=(CREATED,),
        sent=(Sent("PUT", "/x", has={"Content-Length": "2"}, raw_body=b"{}"),),
        status=201,
    ),
    # -- response bodies
    Case(
        "a_body_without_a_length_or_chunks_is_read_until_the_server_closes",
        answers=(
            answer(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ", b"world", close=True
            ),
        )
        * 2,
        sent=(Sent("GET", "/x"),) * 2,
        repeat=2,
        status=200,
        body=b"hello world",
        connections=2,  # that connection ends with the body: the next request opens another
    ),
    Case(
        "a_100_continue_before_the_answer_is_skipped_and_the_connection_kept",
        answers=(
            answer(
                b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            ),
        )
        * 2,
        sent=(Sent("GET", "/x"),) * 2,
        repeat=2,
        status=200,
        body=b"ok",
        connections=1,
    ),
    Case(
        "interim_answers_with_headers_are_skipped_and_their_headers_not_kept",
        answers=(
            answer(
                b"HTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 2\r\n\r\nok"
            ),
        ),
        sent=(Sent("GET", "/x"),),
        status=200,
        body=b"ok",
        answer_has={"X-Final": "yes", "Link": None},
    ),
    Case(
        "an_answer_both_chunked_and_with_a_content_length_is_read_chunked_and_not_kept_alive",
        answers=(
            answer(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"
                b"2\r\nok\r\n0\r\n\r\n"
            ),
        )
        * 2,
        sent=(Sent("GET", "/x"),) * 2,
        repeat=2,
        status=200,
        body=b"ok",
        connections=2,
    ),
    # -- Content-Length of an answer
    bad_length("a_non_numeric_content_length_is_refused", b"Content-Length: two"),
    bad_length("a_negative_content_length_is_refused", b"Content-Length: -2"),
    bad_length("a_content_length_with_a_sign_is_refused", b"Content-Length: +2"),
    bad_length("a_content_length_with_an_underscore_is_refused", b"Content-Length: 0_2"),
    bad_length(
        "two_content_length_headers_that_differ_are_refused",
        b"Content-Length: 2\r\nContent-Length: 3",
    ),
    bad_length("a_content_length_list_of_values_that_differ_is_refused", b"Content-Length: 2, 3"),
    Case(
        "content_length_values_repeated_identically_are_accepted",
        answers=(length(b"Content-Length: 2, 2\r\nContent-Length: 2"),),
        sent=(Sent("GET", "/x"),),
        status=200,
        body=b"ok",
    ),
    # -- redirects
    Case(
        "a_post_redirected_by_302_is_sent_again_as_a_get_without_its_body_headers",
        method="POST",
        headers={"Content-Type": "application/json", "Content-Length": "2"},
        content=b"{}",
        follow_redirects=True,
        answers=(redirect(302, "/next"), OK),
        sent=(
            Sent("POST", "/x", has={"Content-Length": "2"}, body=b"{}"),
            Sent("GET", "/next", lacks=BODY_HEADERS, body=b""),
        ),
        status=200,
        body=b"ok",
    ),
    Case(
        "a_put_redirected_by_303_is_sent_again_as_a_get_without_its_body_headers",
        method="PUT",
        headers={"Content-Type": "application/octet-stream", "Content-Length": "2"},
        content=b"{}",
        follow_redirects=True,
        answers=(redirect(303, "/next"), OK),
        sent=(Sent("PUT", "/x", body=b"{}"), Sent("GET", "/next", lacks=BODY_HEADERS, body=b"")),
        status=200,
        body=b"ok",
    ),
    Case(
        "a_streamed_post_redirected_by_303_is_sent_again_as_a_get_without_its_body_headers",
        method="POST",
        headers={"Content-Type": "application/octet-stream"},
        content=Streamed((b"hello",)),
        follow_redirects=True,
        answers=(redirect(303, "/next"), OK),
        sent=(
            Sent("POST", "/x", has={"Transfer-Encoding": "chunked"}, body=b"hello"),
            Sent("GET", "/next", lacks=BODY_HEADERS, body=b""),
        ),
        status=200,
        body=b"ok",
    ),
    Case(
        "a_head_redirected_by_303_stays_a_head",
        method="HEAD",
        follow_redirects=True,
        answers=(redirect(303, "/next"), answer(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n")),
        sent=(Sent("HEAD", "/x"), Sent("HEAD", "/next")),
        status=200,
    ),
    Case(
        "a_put_redirected_by_307_is_sent_again_with_its_body_and_body_headers",
        method="PUT",
        headers={"Content-Type": "application/json"},
        content=b"{}",
        follow_redirects=True,
        answers=(redirect(307, "/next"), CREATED),
        sent=(
            Sent("PUT", "/x", body=b"{}"),
            Sent(
                "PUT",
                "/next",
                has={"Content-Type": "application/json", "Content-Length": "2"},
                body=b"{}",
            ),
        ),
        status=201,
    ),
    Case(
        "a_streamed_put_redirected_by_307_raises_an_error_naming_the_redirect",
        method="PUT",
        content=Streamed((b"hello",)),
        follow_redirects=True,
        answers=(redirect(307, "/next"), CREATED),
        sent=(Sent("PUT", "/x", body=b"hello"),),
        error=RedirectError,
        error_match=r"307 redirect .*/next",
    ),
    Case(
        "a_streamed_put_redirected_by_308_raises_an_error_naming_the_redirect",
        method="PUT",
        content=Streamed((b"hello",)),
        follow_redirects=True,
        answers=(redirect(308, "/next"), CREATED),
        sent=(Sent("PUT", "/x", body=b"hello"),),
        error=RedirectError,
        error_match=r"308 redirect .*/next",
    ),
    Case(
        "a_streamed_put_answered_307_is_returned_as_is_when_redirects_are_not_followed",
        method="PUT",
        content=Streamed((b"hello",)),
        answers=(redirect(307, "/next"),),
        sent=(Sent("PUT", "/x", body=b"hello"),),
        status=307,
        answer_has={"Location": "/next"},
    ),
    # -- connecting
    Case(
        "a_server_that_never_accepts_the_connection_times_out_connecting",
        listener="never-accepts",
        answers=(),
        sent=(),
        error=ConnectTimeout,
        error_match="timed out",
    ),
]


@contextlib.asynccontextmanager
async def listening(case: Case) -> AsyncIterator[ScriptedServer | NeverAccepts]:
    if case.listener == "never-accepts":
        with closing(NeverAccepts().start()) as never:
            yield never
        return
    server = await ScriptedServer(case.answers).start()
    try:
        yield server
    finally:
        await server.aclose()


@contextlib.contextmanager
def closing(listener: NeverAccepts) -> Iterator[NeverAccepts]:
    try:
        yield listener
    finally:
        listener.close()


def check_sent(received: list[Received], expected: tuple[Sent, ...]) -> None:
    assert [(r.method, r.target) for r in received] == [(s.method, s.target) for s in expected]
    for got, want in zip(received, expected, strict=True):
        assert {name: got.values(name) for name in want.has} == {
            name: [value] for name, value in want.has.items()
        }
        assert {name: got.values(name) for name in want.lacks} == {name: [] for name in want.lacks}
        if want.body is not None:
            assert got.body == want.body
        if want.raw_body is not None:
            assert got.raw_body == want.raw_body


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_each_exchange_is_sent_and_read_as_http_1_1_says(case: Case) -> None:
    client = HTTPClient(
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
        timeout=Timeout(connect=0.3, read=2, write=2),
        max_connections=4,
        trust_env=False,
    )
    outcomes: list[tuple[int, bytes, dict[str, str | None]] | Exception] = []
    async with listening(case) as server:
        try:
            for _ in range(case.repeat):
                content = (
                    case.content.iterate() if isinstance(case.content, Streamed) else case.content
                )
                try:
                    response = await client.send(
                        case.method,
                        f"{server.url}{case.path}",
                        headers=case.headers,
                        content=content,
                        follow_redirects=case.follow_redirects,
                    )
                    body = await response.aread()
                except Exception as exc:
                    outcomes.append(exc)
                    continue
                seen = {name: response.headers.get(name) for name in case.answer_has}
                outcomes.append((response.status_code, body, seen))
        finally:
            await client.aclose()

    check_sent(server.received, case.sent)
    for outcome in outcomes:
        if case.error is not None:
            assert isinstance(outcome, case.error), outcome
            assert re.search(case.error_match, str(outcome)), outcome
        else:
            assert outcome == (case.status, case.body, case.answer_has)
    if case.connections is not None:
        assert server.connections == case.connections


async def test_a_token_answer_that_breaks_off_is_a_copy_error_not_a_transport_error() -> None:
    server = await ScriptedServer(()).start()
    challenge = f'Bearer realm="{server.url}/token",service="scripted"'.encode()
    server.answers.extend(
        [
            answer(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: " + challenge + b"\r\n"
                b"Content-Length: 0\r\n\r\n"
            ),
            answer(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"tok', close=True),
        ]
    )
    host = server.url.removeprefix("http://")
    client = RegistryClient(
        hosts={host: HostConfig(plain_http=True)}, retry=RetryPolicy(attempts=1)
    )
    try:
        with pytest.raises(CopyError) as raised:
            await client.repository(parse(f"{host}/team/app:1")).head_manifest("1")
    finally:
        await client.aclose()
        await server.aclose()
    assert "token for" in str(raised.value)
