"""The system's CAs, loaded the cheap way when the system allows it.

``ssl.create_default_context()`` parses the whole system bundle (about 140 certificates) up
front: some 20 ms of CPU, which is most of a ``swapper mirror`` that finds the image already
copied. OpenSSL can instead look CAs up in a hashed directory (``<subject hash>.0`` links, what
``update-ca-certificates`` and ``c_rehash`` make: Debian, Ubuntu, Alpine) and read only those a
chain needs. Same trust, read lazily. Without such a directory (RHEL's ``/etc/pki/tls/certs``,
say), or when ``SSL_CERT_FILE`` names a bundle, the default loading is kept.
"""

from __future__ import annotations

import os
import ssl

_HEX = frozenset("0123456789abcdef")


def _hashed(directory: str) -> bool:
    """Whether ``directory`` holds OpenSSL's ``<8 hex>.<n>`` CA links (the first one found)."""
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if (
                    len(name) > 9
                    and name[8] == "."
                    and name[9:].isdigit()
                    and set(name[:8]) <= _HEX
                ):
                    return True
    except OSError:
        return False
    return False


def load_system_cas(context: ssl.SSLContext) -> None:
    """Trust the system's CAs in ``context``, as ``load_default_certs`` would (see the module
    docstring for when they are looked up lazily instead)."""
    paths = ssl.get_default_verify_paths()
    if not os.environ.get(paths.openssl_cafile_env) and paths.capath and _hashed(paths.capath):
        context.load_verify_locations(capath=paths.capath)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying client context (``create_default_context``'s settings): the system's CAs
    plus ``ca_file``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname checks, CERT_REQUIRED
    load_system_cas(context)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context
