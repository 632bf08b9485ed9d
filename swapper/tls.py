"""The server's TLS context (TLS 1.2 or newer only) and its hot reload.

A Kubernetes Secret volume is updated by an atomic symlink swap that gives no reliable file
event, so :class:`CertificateReloader` polls: it fingerprints both files with ``stat`` and, when
they changed and the new pair loads cleanly, loads it into the same live ``SSLContext``. New
handshakes get the new pair, open connections keep theirs, nothing restarts. A half-written or
mismatched pair is ignored (logged, no key material) and retried at the next poll.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from swapper.errors import CertificateError

log = logging.getLogger("swapper.tls")


def _load(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    for path in (cert_file, key_file):
        if not path.is_file():
            raise CertificateError(f"cannot read {path}: no such file")
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise CertificateError(
            f"cannot load the pair {cert_file} / {key_file}: {exc.__class__.__name__}: "
            f"{getattr(exc, 'reason', None) or exc}"
        ) from None


def server_context(cert_file: str | Path, key_file: str | Path) -> ssl.SSLContext:
    """A server context with TLS 1.2 as the minimum, loaded with the given pair."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    _load(context, Path(cert_file), Path(key_file))
    return context


def _stat(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


def _not_after(cert_file: Path) -> dt.datetime | None:
    try:
        return x509.load_pem_x509_certificate(cert_file.read_bytes()).not_valid_after_utc
    except (OSError, ValueError):
        return None


class CertificateReloader:
    """Keeps ``context`` serving the current pair on disk (see the module docstring)."""

    def __init__(
        self,
        context: ssl.SSLContext,
        cert_file: str | Path,
        key_file: str | Path,
        interval: float = 10.0,
    ) -> None:
        self.context = context
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self.interval = interval
        self.on_reload: Callable[[], None] | None = None
        self._reloads = 0
        self._stats = self._read_stats()
        self._digest = self._content_digest()
        self._not_after = _not_after(self.cert_file)

    @property
    def reloads(self) -> int:
        return self._reloads

    @property
    def not_after(self) -> dt.datetime | None:
        """Expiry of the serving certificate currently loaded."""
        return self._not_after

    def _read_stats(self) -> tuple[tuple[int, int, int], ...] | None:
        try:
            return _stat(self.cert_file), _stat(self.key_file)
        except OSError:
            return None

    def _content_digest(self) -> str | None:
        try:
            h = hashlib.sha256(self.cert_file.read_bytes())
            h.update(self.key_file.read_bytes())
        except OSError:
            return None
        return h.hexdigest()

    def check(self) -> bool:
        """One poll. True when a new pair was loaded."""
        stats = self._read_stats()
        if stats is None or stats == self._stats:
            return False
        digest = self._content_digest()
        if digest is None:
            return False
        if digest == self._digest:
            self._stats = stats
            return False
        try:
            # Check the pair on a scratch context first, so a bad pair never touches the live one.
            _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), self.cert_file, self.key_file)
            _load(self.context, self.cert_file, self.key_file)
        except CertificateError as exc:
            log.warning(
                "certificate pair changed but does not load yet; keeping the old one: %s", exc
            )
            return False
        self._stats, self._digest = stats, digest
        self._not_after = _not_after(self.cert_file)
        self._reloads += 1
        log.info("serving certificate reloaded (expires %s)", self._not_after)
        if self.on_reload is not None:
            self.on_reload()
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:  # a poll must never end the loop
                log.exception("certificate check failed")
