from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from swapper import certs
from swapper.errors import CertificateError
from swapper.tls import CertificateReloader, server_context


def pair(folder: Path, ca: tuple[bytes, bytes] | None = None) -> certs.GeneratedCerts:
    made = certs.generate("swapper", "ops", ["localhost"], ca=ca)
    certs.write(made, folder)
    return made


async def served_serial(port: int, ca_file: Path) -> int:
    client = ssl.create_default_context(cafile=str(ca_file))
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client, server_hostname="localhost"
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


def serial(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


def test_the_context_refuses_anything_below_tls_1_2(tmp_path: Path) -> None:
    pair(tmp_path)
    context = server_context(tmp_path / "tls.crt", tmp_path / "tls.key")
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    pair(tmp_path)
    with pytest.raises(CertificateError, match=r"absent\.key"):
        server_context(tmp_path / "tls.crt", tmp_path / "absent.key")


def test_a_key_that_does_not_match_is_refused(tmp_path: Path) -> None:
    pair(tmp_path / "a")
    pair(tmp_path / "b")
    with pytest.raises(CertificateError, match="cannot load the pair"):
        server_context(tmp_path / "a" / "tls.crt", tmp_path / "b" / "tls.key")


async def test_a_rotated_pair_is_served_to_new_connections_without_restart(tmp_path: Path) -> None:
    first = pair(tmp_path)
    context = server_context(tmp_path / "tls.crt", tmp_path / "tls.key")
    reloader = CertificateReloader(context, tmp_path / "tls.crt", tmp_path / "tls.key")
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await served_serial(port, tmp_path / "ca.crt") == serial(first.cert_pem)
        assert reloader.check() is False  # nothing changed yet
        second = pair(tmp_path, ca=(first.ca_cert_pem, first.ca_key_pem))
        assert reloader.check() is True
        assert await served_serial(port, tmp_path / "ca.crt") == serial(second.cert_pem)
        assert reloader.reloads == 1
        assert (
            reloader.not_after
            == x509.load_pem_x509_certificate(second.cert_pem).not_valid_after_utc
        )
    finally:
        server.close()
        await server.wait_closed()


async def test_a_half_written_pair_is_ignored_until_it_is_whole(tmp_path: Path) -> None:
    first = pair(tmp_path)
    context = server_context(tmp_path / "tls.crt", tmp_path / "tls.key")
    reloader = CertificateReloader(context, tmp_path / "tls.crt", tmp_path / "tls.key")
    second = certs.generate(
        "swapper", "ops", ["localhost"], ca=(first.ca_cert_pem, first.ca_key_pem)
    )
    (tmp_path / "tls.crt").write_bytes(second.cert_pem)  # new cert, old key: mismatched
    assert reloader.check() is False
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await served_serial(port, tmp_path / "ca.crt") == serial(first.cert_pem)
        (tmp_path / "tls.key").write_bytes(second.key_pem)  # now whole
        assert reloader.check() is True
        assert await served_serial(port, tmp_path / "ca.crt") == serial(second.cert_pem)
    finally:
        server.close()
        await server.wait_closed()


async def test_the_reload_loop_stops_cleanly_when_cancelled(tmp_path: Path) -> None:
    pair(tmp_path)
    context = server_context(tmp_path / "tls.crt", tmp_path / "tls.key")
    reloader = CertificateReloader(
        context, tmp_path / "tls.crt", tmp_path / "tls.key", interval=0.01
    )
    task = asyncio.create_task(reloader.run())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
