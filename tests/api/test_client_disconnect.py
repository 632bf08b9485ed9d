"""A client that goes away mid-request (the API server at its timeout) is not an error."""

from __future__ import annotations

import json
import socket
import ssl
import time

from webhook_process import Webhook


def test_a_client_that_disconnects_mid_body_is_logged_as_info_not_as_an_error(
    webhook: Webhook,
) -> None:
    host, port = webhook.url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(webhook.cert_dir / "ca.crt"))
    raw = socket.create_connection((host, int(port)))
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(
            b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b'Content-Length: 4000\r\n\r\n{"apiVersion":'
        )
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while "client_disconnected" not in webhook.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(line) for line in webhook.logs().splitlines() if line.startswith("{")]
    disconnected = [line for line in lines if line.get("event") == "client_disconnected"]
    assert disconnected and disconnected[-1]["level"] == "info"
    assert not [line for line in lines if line.get("level") == "error"]
