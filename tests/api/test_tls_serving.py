"""TLS as the API server sees it: TLS 1.2+ only, a rotated certificate served without restart."""

from __future__ import annotations

import socket
import ssl
import time
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from helpers import FIXTURES
from webhook_process import Webhook, make_certs, start_webhook, stop

from swapper import certs


def served_certificate(hook: Webhook) -> x509.Certificate:
    context = ssl.create_default_context(cafile=str(hook.cert_dir / "ca.crt"))
    port = int(hook.url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def tls_client(maximum: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client really offer TLS 1.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.maximum_version = maximum
    return context


def handshake(webhook: Webhook, context: ssl.SSLContext) -> str | None:
    port = int(webhook.url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.version()


def test_a_client_limited_to_tls_1_1_cannot_connect(webhook: Webhook) -> None:
    # The same client, allowed TLS 1.2, connects: the refusal is about the version.
    assert handshake(webhook, tls_client(ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    with warnings.catch_warnings(), pytest.raises(ssl.SSLError):
        warnings.simplefilter("ignore", DeprecationWarning)
        handshake(webhook, tls_client(ssl.TLSVersion.TLSv1_1))


def test_connections_negotiate_tls_1_2_or_newer(webhook: Webhook) -> None:
    context = ssl.create_default_context(cafile=str(webhook.cert_dir / "ca.crt"))
    port = int(webhook.url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_a_rotated_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    cert_dir = make_certs(tmp_path / "certs")
    hook = start_webhook(
        tmp_path,
        FIXTURES / "configs" / "webhook.yaml",
        "--cert-reload-interval",
        "0.1",
        cert_dir=cert_dir,
    )
    try:
        before = served_certificate(hook)
        ca = ((cert_dir / "ca.crt").read_bytes(), (cert_dir / "ca.key").read_bytes())
        certs.write(
            certs.generate("swapper", "swapper", ["localhost", "127.0.0.1"], ca=ca), cert_dir
        )
        deadline = time.monotonic() + 10
        after = served_certificate(hook)
        while after.serial_number == before.serial_number and time.monotonic() < deadline:
            time.sleep(0.1)
            after = served_certificate(hook)
        pid_still_running = hook.process.poll() is None
        with hook.client() as client:
            metrics = client.get("/metrics").text
    finally:
        stop(hook)
    assert after.serial_number != before.serial_number
    assert pid_still_running
    assert "swapper_tls_certificate_reloads_total 1.0" in metrics
