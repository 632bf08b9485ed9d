"""A real Debian ``docker-registry`` on loopback, plain HTTP, with helpers to push tiny images.

Started and stopped by the tests that use it; storage lives in the test's temporary folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from webhook_process import free_port

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class Registry:
    host: str  # "127.0.0.1:PORT"
    process: subprocess.Popen[bytes]
    log: Path | None = None  # its output: warnings, and the access log when it is on

    def requests(self, method: str, path_start: str = "/v2/") -> int:
        """How many ``method`` requests to paths starting with ``path_start`` the access log
        shows (start the registry with ``access_log=True``)."""
        assert self.log is not None
        needle = f'"{method} {path_start}'
        return sum(needle in line for line in self.log.read_text(errors="replace").splitlines())

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def push_blob(self, client: httpx.Client, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = client.post(f"{self.url}/v2/{repo}/blobs/uploads/")
        start.raise_for_status()
        location = httpx.URL(self.url).join(start.headers["location"])
        done = client.put(
            location.copy_merge_params({"digest": digest}),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        done.raise_for_status()
        return digest

    def push_image(self, repo: str, tag: str, payload: bytes = b"layer") -> str:
        """Push a one-layer OCI image; returns the manifest digest."""
        with httpx.Client(timeout=10) as client:
            config = json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": []},
                }
            ).encode()
            config_digest = self.push_blob(client, repo, config)
            layer_digest = self.push_blob(client, repo, payload)
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {
                        "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": config_digest,
                        "size": len(config),
                    },
                    "layers": [
                        {
                            "mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": layer_digest,
                            "size": len(payload),
                        }
                    ],
                }
            ).encode()
            put = client.put(
                f"{self.url}/v2/{repo}/manifests/{tag}",
                content=manifest,
                headers={"Content-Type": OCI_MANIFEST},
            )
            put.raise_for_status()
            return "sha256:" + hashlib.sha256(manifest).hexdigest()

    def delete_manifest(self, repo: str, digest: str) -> None:
        with httpx.Client(timeout=10) as client:
            client.delete(f"{self.url}/v2/{repo}/manifests/{digest}").raise_for_status()


@contextmanager
def running_registry(
    workdir: Path, *, delete_enabled: bool = True, access_log: bool = False
) -> Iterator[Registry]:
    """A registry storing under ``workdir``. ``delete_enabled`` is distribution's
    ``storage.delete.enabled`` (off: every DELETE answers 405 UNSUPPORTED); ``access_log``
    writes one line per request to :attr:`Registry.log`."""
    port = free_port()
    config = workdir / "registry.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "warn", "accesslog": {"disabled": not access_log}},
                "storage": {
                    "filesystem": {"rootdirectory": str(workdir / "data")},
                    "delete": {"enabled": delete_enabled},
                },
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen(
        [REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    registry = Registry(f"127.0.0.1:{port}", process, workdir / "registry.log")
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{registry.url}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "registry.log").read_text())
            time.sleep(0.05)
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
