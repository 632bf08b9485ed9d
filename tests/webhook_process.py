"""Real ``swapper serve`` processes over HTTPS with generated certificates, stopped after use.

Also used by ``make demo`` and ``make bench`` (which put this folder on ``sys.path``).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from swapper import certs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Webhook:
    url: str
    cert_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
        return httpx.Client(base_url=self.url, verify=context, timeout=15)

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("https://").rsplit(":", 1)
        return host, int(port)

    def tls_socket(self, timeout: float = 10) -> ssl.SSLSocket:
        """A TLS connection to the webhook, its handshake done and nothing sent yet."""
        context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
        raw = socket.create_connection(self.address(), timeout=timeout)
        return context.wrap_socket(raw, server_hostname="localhost")


def make_certs(folder: Path) -> Path:
    certs.write(certs.generate("swapper", "swapper", ["localhost", "127.0.0.1"]), folder)
    return folder


def start_https_process(
    command: Sequence[str],
    port: int,
    cert_dir: Path,
    log: Path,
    timeout: float = 20,
    env: Mapping[str, str] | None = None,
) -> Webhook:
    """Start ``command`` (which serves HTTPS on 127.0.0.1:port) and wait for ``/readyz``."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    hook = Webhook(f"https://127.0.0.1:{port}", cert_dir, process, log)
    deadline = time.monotonic() + timeout
    with hook.client() as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited {process.returncode}:\n{hook.logs()}")
            try:
                if client.get("/readyz").status_code == 200:
                    return hook
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                stop(hook)
                raise RuntimeError(f"{command[:4]} never became ready:\n{hook.logs()}")
            time.sleep(0.05)


def start_webhook(
    tmp: Path,
    config: Path,
    *extra: str,
    cert_dir: Path | None = None,
    wrapper: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 20,
) -> Webhook:
    """``swapper serve`` as a subprocess; ``wrapper`` prefixes the command (e.g. ``taskset``)."""
    cert_dir = cert_dir or make_certs(tmp / "certs")
    port = free_port()
    command = [
        *wrapper,
        sys.executable,
        "-m",
        "swapper",
        "serve",
        "--config",
        str(config),
        "--tls-cert-file",
        str(cert_dir / "tls.crt"),
        "--tls-key-file",
        str(cert_dir / "tls.key"),
        "--listen-address",
        f"127.0.0.1:{port}",
        *extra,
    ]
    log = tmp / f"serve-{port}.log"
    return start_https_process(command, port, cert_dir, log, timeout=timeout, env=env)


def stop(hook: Webhook) -> None:
    hook.process.terminate()
    try:
        hook.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        hook.process.kill()
        hook.process.wait()
