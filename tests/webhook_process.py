"""Real ``swapper serve`` processes over HTTPS with generated certificates, stopped after use."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from helpers import FIXTURES

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


def start_webhook(
    tmp: Path, config: Path, *extra: str, cert_dir: Path | None = None
) -> Webhook:
    if cert_dir is None:
        cert_dir = tmp / "certs"
        certs.write(certs.generate("swapper", "swapper", ["localhost", "127.0.0.1"]), cert_dir)
    port = free_port()
    log = tmp / f"serve-{port}.log"
    command = [
        sys.executable, "-m", "swapper", "serve", "--config", str(config),
        "--tls-cert-file", str(cert_dir / "tls.crt"), "--tls-key-file", str(cert_dir / "tls.key"),
        "--listen-address", f"127.0.0.1:{port}", *extra,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    hook = Webhook(f"https://127.0.0.1:{port}", cert_dir, process, log)
    deadline = time.monotonic() + 20
    with hook.client() as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"swapper serve exited {process.returncode}:\n{hook.logs()}")
            try:
                if client.get("/readyz").status_code == 200:
                    return hook
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                stop(hook)
                raise RuntimeError(f"swapper serve never became ready:\n{hook.logs()}")
            time.sleep(0.05)


def stop(hook: Webhook) -> None:
    hook.process.terminate()
    try:
        hook.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        hook.process.kill()
        hook.process.wait()
