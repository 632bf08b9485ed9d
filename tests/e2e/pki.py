"""The certificates and keys a test API server needs, made with ``cryptography``.

The CA and the API server's serving certificate come from swapper's own generator
(:func:`swapper.certs.generate`, as for the ``kubernetes`` Service in ``default``, plus
127.0.0.1 and localhost). The same CA signs an ``O=system:masters`` client certificate, the
admin. The service-account signing key is a separate RSA key, as kube-apiserver expects.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from swapper import certs


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Pki:
    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    def cert(self, name: str) -> Path:
        return self.folder / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.folder / f"{name}.key"

    @property
    def service_account_key(self) -> Path:
        return self.folder / "sa.key"

    @property
    def service_account_public_key(self) -> Path:
        return self.folder / "sa.pub"


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _client_certificate(made: certs.GeneratedCerts, user: str, group: str) -> tuple[bytes, bytes]:
    """A client-auth certificate for ``user`` in ``group``, signed by ``made``'s CA."""
    ca = x509.load_pem_x509_certificate(made.ca_cert_pem)
    ca_key = serialization.load_pem_private_key(made.ca_key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, user),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, group),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def make_pki(folder: Path) -> Pki:
    """CA, ``apiserver`` serving pair, ``admin`` client pair and the service-account keys."""
    folder.mkdir(parents=True, exist_ok=True)
    pki = Pki(folder)
    made = certs.generate("kubernetes", "default", ["127.0.0.1", "localhost"], days=2)
    _write(pki.ca_cert, made.ca_cert_pem)
    _write(pki.cert("apiserver"), made.cert_pem)
    _write(pki.key("apiserver"), made.key_pem, private=True)
    admin_cert, admin_key = _client_certificate(made, "e2e-admin", "system:masters")
    _write(pki.cert("admin"), admin_cert)
    _write(pki.key("admin"), admin_key, private=True)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(pki.service_account_key, _pem_key(sa_key), private=True)
    public = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(pki.service_account_public_key, public)
    return pki
