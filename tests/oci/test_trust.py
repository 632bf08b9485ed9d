"""The system's CAs: looked up lazily in OpenSSL's hashed directory when there is one, loaded
whole otherwise; either way a registry whose CA is among them is trusted (a real TLS
``docker-registry``, its CA made a "system" CA through ``SSL_CERT_DIR``/``SSL_CERT_FILE``)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from registries import Registry

from swapper.oci import tls_context
from swapper.oci._trust import client_context


def _handshake(context: ssl.SSLContext, registry: Registry) -> None:
    host, port = registry.host.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.version() is not None


def _hashed_dir(tmp_path: Path, ca_file: Path) -> Path:
    """A directory holding ``ca_file`` under OpenSSL's ``<subject hash>.0`` name."""
    folder = tmp_path / "certs"
    folder.mkdir()
    subject_hash = subprocess.run(
        ["openssl", "x509", "-subject_hash", "-noout", "-in", str(ca_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    shutil.copy(ca_file, folder / f"{subject_hash}.0")
    return folder


def test_a_ca_in_the_hashed_system_directory_is_trusted_without_loading_any_up_front(
    tls_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tls_registry.ca_file is not None
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(_hashed_dir(tmp_path, tls_registry.ca_file)))

    context = tls_context()

    assert context.cert_store_stats()["x509_ca"] == 0  # nothing parsed yet
    _handshake(context, tls_registry)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_a_bundle_named_by_ssl_cert_file_is_loaded_whole_and_trusted(
    tls_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tls_registry.ca_file is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca_file))
    monkeypatch.setenv("SSL_CERT_DIR", str(_hashed_dir(tmp_path, tls_registry.ca_file)))

    context = client_context()

    assert context.cert_store_stats()["x509_ca"] == 1
    _handshake(context, tls_registry)


def test_without_a_hashed_directory_the_default_bundle_is_loaded(
    tls_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tls_registry.ca_file is not None
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(tls_registry.ca_file, plain / "registry-ca.pem")  # no hash names: not looked up
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(plain))

    context = client_context()

    assert context.cert_store_stats()["x509_ca"] == len(ssl.create_default_context().get_ca_certs())
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(context, tls_registry)
    _handshake(client_context(str(tls_registry.ca_file)), tls_registry)  # --ca-file still adds
