"""Connection hygiene over real HTTPS: deadlines for each stage, and a cap that sheds idle ones."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers import FIXTURES
from webhook_process import Webhook, start_webhook, stop

from swapper.admission.connections import missing_internals

REQUEST = (FIXTURES / "admission" / "three-containers.request.json").read_bytes()
ULIMIT_1024 = ("bash", "-c", 'ulimit -n 1024 && exec "$@"', "bash")


def config_with(tmp: Path, **server: Any) -> Path:
    config = yaml.safe_load((FIXTURES / "configs" / "webhook.yaml").read_text())
    config["server"] = server
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection within ``seconds`` (what it sends is skipped)."""
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(4096) == b"":
                return True
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        return True
    return False


def metric(hook: Webhook, line_start: str) -> float:
    with hook.client() as client:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith(line_start):
                return float(line.split()[-1])
    return 0.0


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    """Every deadline one second."""
    tmp = tmp_path_factory.mktemp("quick")
    config = config_with(tmp, handshakeTimeout="1s", headerTimeout="1s", keepAliveTimeout="1s")
    hook = start_webhook(tmp, config)
    yield hook
    stop(hook)


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Webhook]:
    """At most 16 connections, and deadlines long enough never to matter."""
    config = config_with(
        tmp_path,
        maxConnections=16,
        handshakeTimeout="1m",
        headerTimeout="1m",
        keepAliveTimeout="1m",
    )
    hook = start_webhook(tmp_path, config)
    yield hook
    stop(hook)


def test_a_connection_that_never_starts_tls_is_closed_after_the_handshake_timeout(
    quick: Webhook,
) -> None:
    with socket.create_connection(quick.address()) as sock:
        assert closed_within(sock, 4)  # uvloop's own default is 60 s


def test_a_tls_connection_that_sends_no_request_is_closed_after_the_header_timeout(
    quick: Webhook,
) -> None:
    with quick.tls_socket() as sock:
        assert closed_within(sock, 4)


def test_headers_trickling_in_a_byte_at_a_time_are_cut_off_at_the_header_timeout(
    quick: Webhook,
) -> None:
    head = b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 200
    started = time.monotonic()
    with quick.tls_socket() as sock:
        try:
            for byte in head:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:
            pass
        assert closed_within(sock, 1)
    assert time.monotonic() - started < 4  # sending it all would take 10 s


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    quick: Webhook,
) -> None:
    with quick.tls_socket() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.settimeout(4)
        assert b"200 OK" in sock.recv(4096)
        assert closed_within(sock, 4)  # uvicorn's own default is 5 s


def test_connections_closed_at_a_deadline_are_counted_by_reason(quick: Webhook) -> None:
    before = metric(quick, 'swapper_connections_closed_total{reason="header-timeout"}')
    with quick.tls_socket() as sock:
        closed_within(sock, 4)
    after = metric(quick, 'swapper_connections_closed_total{reason="header-timeout"}')
    assert after == before + 1


def test_a_new_connection_at_the_cap_closes_the_oldest_one_that_sent_no_request(
    capped: Webhook,
) -> None:
    silent = [capped.tls_socket() for _ in range(16)]
    try:
        with capped.client() as client:
            assert client.post("/mutate", content=REQUEST).status_code == 200
        assert closed_within(silent[0], 2)
        assert not closed_within(silent[-1], 0.5)
    finally:
        for sock in silent:
            sock.close()


def test_an_idle_keep_alive_connection_is_shed_after_those_that_never_sent_a_request(
    capped: Webhook,
) -> None:
    kept = capped.tls_socket()
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert b"200 OK" in kept.recv(4096)
    silent = [capped.tls_socket() for _ in range(15)]
    try:
        newest = capped.tls_socket()  # the cap is reached: one of the others goes
        assert closed_within(silent[0], 2)
        assert not closed_within(kept, 0.5)
        newest.close()
    finally:
        kept.close()
        for sock in silent:
            sock.close()


def test_at_the_cap_with_every_connection_busy_a_new_request_gets_503(capped: Webhook) -> None:
    busy = [capped.tls_socket() for _ in range(16)]
    try:
        for sock in busy:  # each one's headers in, its body never: a request in progress
            sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n")
        time.sleep(0.3)
        with capped.client() as client:
            answer = client.post("/mutate", content=REQUEST)
        assert answer.status_code == 503
        assert answer.json()["error"]
    finally:
        for sock in busy:
            sock.close()


def test_shed_connections_are_logged_once_with_a_count(capped: Webhook) -> None:
    silent = [capped.tls_socket() for _ in range(40)]  # 24 shed, all within 10 s
    for sock in silent:
        sock.close()
    time.sleep(0.3)
    lines = [
        json.loads(line)
        for line in capped.logs().splitlines()
        if '"connections_closed"' in line and '"shed"' in line
    ]
    assert len(lines) == 1  # the first at once; the rest are counted for the next line
    assert lines[0]["count"] == 1 and lines[0]["max_connections"] == 16
    assert metric(capped, 'swapper_connections_closed_total{reason="shed"}') == 24


def test_the_count_still_waiting_for_its_log_line_is_logged_at_shutdown(capped: Webhook) -> None:
    silent = [capped.tls_socket() for _ in range(40)]
    for sock in silent:
        sock.close()
    stop(capped)
    counts = [
        json.loads(line)["count"]
        for line in capped.logs().splitlines()
        if '"connections_closed"' in line and '"shed"' in line
    ]
    assert counts == [1, 23]


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit_at_start(tmp_path: Path) -> None:
    hook = start_webhook(
        tmp_path,
        FIXTURES / "configs" / "webhook.yaml",
        wrapper=("bash", "-c", 'ulimit -S -n 1024 && exec "$@"', "bash"),
    )
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        [line] = [
            json.loads(line) for line in hook.logs().splitlines() if '"connection_limits"' in line
        ]
    finally:
        stop(hook)
    assert line["open_files"] == hard
    assert line["max_connections"] == min(1000, hard - 64)


@pytest.fixture
def more_open_files() -> Iterator[None]:
    """This process needs 1,100 sockets and more of its own: the soft limit raised."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1500:
        pytest.skip(f"the hard limit on open files ({hard}) leaves no room for 1,100 sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_normal_requests_are_answered_while_1100_idle_connections_are_held_at_ulimit_1024(
    tmp_path: Path, more_open_files: None
) -> None:
    # Deadlines long enough never to matter here: only the cap keeps descriptors free.
    config = config_with(tmp_path, handshakeTimeout="1m", headerTimeout="1m")
    hook = start_webhook(tmp_path, config, wrapper=ULIMIT_1024)
    context = ssl.create_default_context(cafile=str(hook.cert_dir / "ca.crt"))
    held: list[socket.socket] = []
    answered = 0
    try:
        for i in range(1100):  # every other one bare TCP; the others finish TLS, send nothing
            sock = socket.create_connection(hook.address(), timeout=10)
            held.append(sock)
            if i % 2:
                with contextlib.suppress(OSError):  # shed by the server before it is done
                    held.append(context.wrap_socket(sock, server_hostname="localhost"))
        for _ in range(10):
            with httpx.Client(base_url=hook.url, verify=context, timeout=10) as client:
                answered += client.post("/mutate", content=REQUEST).status_code == 200
    finally:
        for sock in held:
            sock.close()
        stop(hook)
    assert answered == 10  # before the cap: every one reset


def test_every_private_internal_of_uvicorn_and_uvloop_relied_on_is_still_there() -> None:
    missing = missing_internals()
    assert missing == [], (
        "an upgrade of uvicorn or uvloop removed what swapper/admission/connections.py relies "
        f"on: {', '.join(missing)}; adapt the module, or keep the version pinned in pyproject.toml"
    )


def test_a_removed_internal_is_named() -> None:
    import swapper.admission.connections as connections

    saved = connections.INTERNALS
    connections.INTERNALS = (*saved, ("uvicorn.server", "Server._gone_in_a_later_release"))
    try:
        assert connections.missing_internals() == ["uvicorn.server.Server._gone_in_a_later_release"]
    finally:
        connections.INTERNALS = saved
