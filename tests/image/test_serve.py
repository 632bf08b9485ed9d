"""``swapper serve`` inside the image answers the API server's calls from outside it.

The config and the certificates are bind-mounted read-only; swapper listens on the host
network (loopback) as uid 65532; the client is outside the image. The work tree is not in the
image, so what answers is the installed package.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import FIXTURES
from image.running import run_command, stop_process_group
from webhook_process import free_port, make_certs


class ServingImage:
    def __init__(self, url: str, ca: Path, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.ca, self.process, self.log = url, ca, process, log

    def client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(base_url=self.url, verify=context, timeout=15)


@pytest.fixture(scope="module")
def serving(container: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingImage]:
    folder = tmp_path_factory.mktemp("serve")
    cert_dir = make_certs(folder / "certs")
    config_dir = folder / "config"
    config_dir.mkdir()
    shutil.copy(FIXTURES / "configs" / "webhook.yaml", config_dir / "config.yaml")
    for path in (cert_dir, config_dir, *cert_dir.iterdir(), *config_dir.iterdir()):
        os.chown(path, 65532, 65532)  # as a Secret volume with fsGroup would be
    port = free_port()
    command = run_command(
        container,
        [
            *("swapper", "serve", "--config", "/etc/swapper/config/config.yaml"),
            *("--tls-cert-file", "/etc/swapper/tls/tls.crt"),
            *("--tls-key-file", "/etc/swapper/tls/tls.key"),
            *("--listen-address", f"127.0.0.1:{port}"),
        ],
        volumes=[f"{config_dir}:/etc/swapper/config:ro", f"{cert_dir}:/etc/swapper/tls:ro"],
    )
    log = folder / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    served = ServingImage(f"https://127.0.0.1:{port}", cert_dir / "ca.crt", process, log)
    try:
        wait_ready(served)
        yield served
    finally:
        stop_process_group(process)


def wait_ready(served: ServingImage, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with served.client() as client:
        while True:
            if served.process.poll() is not None:
                raise RuntimeError(f"swapper serve exited:\n{served.log.read_text()}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"swapper serve never became ready:\n{served.log.read_text()}")
            time.sleep(0.1)


def test_the_image_answers_readyz_over_tls(serving: ServingImage) -> None:
    with serving.client() as client:
        assert client.get("/readyz").json() == {"status": "ready"}


def test_the_image_answers_an_admission_review_with_the_expected_patch(
    serving: ServingImage,
) -> None:
    request = FIXTURES / "admission" / "three-containers.request.json"
    expected = json.loads((FIXTURES / "admission" / "three-containers.response.json").read_text())
    with serving.client() as client:
        answer = client.post("/mutate", content=request.read_bytes())
    assert answer.status_code == 200
    response = answer.json()["response"]
    response["patch"] = json.loads(base64.b64decode(response["patch"]))
    assert {**answer.json(), "response": response} == expected


def test_the_server_in_the_image_runs_as_65532(serving: ServingImage) -> None:
    # buildah run was started in a session of its own: every process of that session.
    session = subprocess.run(
        ["ps", "-o", "uid=,args=", "-s", str(serving.process.pid)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    servers = [line.split(None, 1) for line in session.splitlines() if " serve " in line]
    swapper = [uid for uid, args in servers if not args.startswith("buildah")]
    assert swapper == ["65532"], session
