from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from swapper import certs
from swapper.errors import CertificateError


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_the_serving_certificate_verifies_against_its_ca_for_the_service_name() -> None:
    made = certs.generate("swapper", "ops")
    verifier = (
        PolicyBuilder()
        .store(Store([load(made.ca_cert_pem)]))
        .build_server_verifier(x509.DNSName("swapper.ops.svc"))
    )
    chain = verifier.verify(load(made.cert_pem), [])
    assert chain[-1] == load(made.ca_cert_pem)


def test_sans_cover_every_service_name_and_the_extra_names() -> None:
    made = certs.generate("swapper", "ops", ["localhost", "127.0.0.1", "::1"])
    sans = load(made.cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert sans.value.get_values_for_type(x509.DNSName) == [
        "swapper",
        "swapper.ops",
        "swapper.ops.svc",
        "swapper.ops.svc.cluster.local",
        "localhost",
    ]
    assert sans.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_the_serving_certificate_is_for_server_auth_only() -> None:
    cert = load(certs.generate("swapper", "ops").cert_pem)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_renewal_with_the_same_ca_keeps_the_ca_certificate() -> None:
    first = certs.generate("swapper", "ops")
    second = certs.generate("swapper", "ops", ca=(first.ca_cert_pem, first.ca_key_pem))
    assert second.ca_cert_pem == first.ca_cert_pem
    assert load(second.cert_pem).serial_number != load(first.cert_pem).serial_number


def test_a_ca_key_that_does_not_match_its_certificate_is_refused() -> None:
    one, two = certs.generate("a", "b"), certs.generate("a", "b")
    with pytest.raises(CertificateError, match="does not match"):
        certs.generate("a", "b", ca=(one.ca_cert_pem, two.ca_key_pem))


def test_keys_are_written_readable_by_the_owner_only(tmp_path: Path) -> None:
    paths = certs.write(certs.generate("swapper", "ops"), tmp_path / "out")
    assert stat.S_IMODE(paths["tls.key"].stat().st_mode) == 0o600
    assert stat.S_IMODE(paths["ca.key"].stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "ca.crt",
        "ca.key",
        "tls.crt",
        "tls.key",
    ]
