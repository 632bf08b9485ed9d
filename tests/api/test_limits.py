"""Request limits over real HTTPS: the body (413), the headers (431), the containers of a pod."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import FIXTURES
from webhook_process import Webhook, start_webhook, stop

MiB = 1024 * 1024
LIMIT = 8 * MiB  # server.maxRequestBytes' default
REQUEST = json.loads((FIXTURES / "admission" / "three-containers.request.json").read_text())


def review_with(containers: int, uid: str) -> bytes:
    review = json.loads(json.dumps(REQUEST))
    review["request"]["uid"] = uid
    review["request"]["object"]["spec"] = {
        "containers": [{"name": f"c{i:06d}", "image": "nginx:1.27"} for i in range(containers)]
    }
    return json.dumps(review, separators=(",", ":")).encode()


def response_of(sock: Any) -> tuple[int, dict[str, str], bytes]:
    answer = http.client.HTTPResponse(sock)
    answer.begin()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_body_declared_larger_than_the_limit_gets_413_before_any_of_it_is_sent(
    webhook: Webhook,
) -> None:
    with webhook.tls_socket(timeout=5) as sock:
        sock.sendall(
            b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (50 * MiB)
        )
        status, headers, body = response_of(sock)
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert "maxRequestBytes" in json.loads(body)["error"]


def chunks(size: int) -> Iterator[bytes]:
    """A body sent chunked (no Content-Length), in blocks of 256 KiB."""
    block = b" " * (256 * 1024)
    for _ in range(size // len(block)):
        yield block


def test_a_chunked_body_is_refused_with_413_once_it_passes_the_limit(webhook: Webhook) -> None:
    with webhook.client() as client:
        answer = client.post("/mutate", content=chunks(12 * MiB))
    assert answer.status_code == 413
    assert "maxRequestBytes" in answer.json()["error"]


@pytest.fixture
def own_webhook(tmp_path: Path) -> Iterator[Webhook]:
    hook = start_webhook(tmp_path, FIXTURES / "configs" / "webhook.yaml")
    yield hook
    stop(hook)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_the_servers_memory_stays_near_idle_when_a_50_mib_body_is_posted(
    own_webhook: Webhook, framing: str
) -> None:
    body = b" " * (50 * MiB)
    with own_webhook.client() as client:
        client.post("/mutate", content=review_with(3, "warm-up"))
        idle = peak_rss_mib(own_webhook.process.pid)
        answer = client.post(
            "/mutate", content=body if framing == "content-length" else chunks(len(body))
        )
    assert answer.status_code == 413
    # Buffering it all took 150 MiB more; reading a chunked body up to the limit, 8 MiB.
    assert peak_rss_mib(own_webhook.process.pid) - idle < 20


def test_headers_that_do_not_end_within_the_limit_get_431_before_they_end(
    webhook: Webhook,
) -> None:
    with webhook.tls_socket(timeout=5) as sock:
        sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nX-Pad: ")
        try:  # 1 MiB more of the same header; the server may close before all of it is in
            for _ in range(64):
                sock.sendall(b"a" * 16384)
        except OSError:
            pass
        status, headers, body = response_of(sock)
    assert status == 431
    assert headers["connection"] == "close"
    assert "maxHeaderBytes" in json.loads(body)["error"]


def test_headers_just_within_the_limit_are_served(webhook: Webhook) -> None:
    with webhook.client() as client:
        answer = client.post(
            "/mutate", content=review_with(1, "big-headers"), headers={"x-pad": "a" * 60_000}
        )
    assert answer.status_code == 200


def test_a_pod_with_more_containers_than_the_limit_is_admitted_unchanged_with_a_warning(
    webhook: Webhook,
) -> None:
    with webhook.client() as client:
        answer = client.post("/mutate", content=review_with(1001, "many-containers"))
    response = answer.json()["response"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert response["warnings"] == [
        "swapper: pod left unchanged (too-many-containers: 1001 containers, more than "
        "server.maxContainers (1000))"
    ]


def test_a_pod_with_too_many_containers_is_logged_in_one_line_and_counted(
    webhook: Webhook,
) -> None:
    with webhook.client() as client:
        client.post("/mutate", content=review_with(1500, "one-line"))
        metrics = client.get("/metrics").text
    deadline = time.monotonic() + 5
    while '"one-line"' not in webhook.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in webhook.logs().splitlines() if '"uid":"one-line"' in line]
    assert len(lines) == 1
    assert json.loads(lines[0])["stage"] == "too-many-containers"
    assert 'swapper_internal_errors_total{stage="too-many-containers"}' in metrics


def test_a_small_admission_is_answered_quickly_while_an_8_mib_pod_is_processed(
    webhook: Webhook,
) -> None:
    each = len(b'{"name":"c000000","image":"nginx:1.27"},')
    big = review_with((LIMIT - len(review_with(0, "huge"))) // each, "huge")
    assert LIMIT - 64 * 1024 < len(big) <= LIMIT
    small = review_with(3, "small")
    latencies: list[float] = []
    done = threading.Event()
    answers: list[httpx.Response] = []

    def post_big() -> None:
        try:
            with webhook.client() as client:
                answers.append(client.post("/mutate", content=big))
        finally:
            done.set()

    with webhook.client() as client:
        client.post("/mutate", content=small)  # connected and warm
        thread = threading.Thread(target=post_big)
        thread.start()
        while not done.is_set():
            started = time.monotonic()
            assert client.post("/mutate", content=small).status_code == 200
            latencies.append(time.monotonic() - started)
        thread.join()
    assert answers[0].status_code == 200
    assert "too-many-containers" in answers[0].json()["response"]["warnings"][0]
    assert len(latencies) >= 3
    # Handling every container held the loop for seconds; parsing the body alone is what
    # remains (about 0.2 s on a busy 2-core machine).
    assert max(latencies) < 1.5, latencies


def test_the_patch_of_a_pod_within_the_limit_still_names_each_container(
    webhook: Webhook,
) -> None:
    with webhook.client() as client:
        answer = client.post("/mutate", content=review_with(1000, "at-limit"))
    patch = json.loads(base64.b64decode(answer.json()["response"]["patch"]))
    assert len([op for op in patch if op["path"].endswith("/image")]) == 1000
