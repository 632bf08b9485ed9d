"""Swapper's own failures never block a pod: a stalled or dead target still gets ``allowed``."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import FIXTURES
from webhook_process import Webhook, free_port, start_webhook, stop

REQUEST = (FIXTURES / "admission" / "three-containers.request.json").read_bytes()


@pytest.fixture
def stalling_port() -> Iterator[int]:
    """A TCP server on loopback that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stopping.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stopping.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def exists_config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "exists.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "imageSwapPolicy": "exists",
                "imageCopyPolicy": "none",
                "imageCopyDeadline": "500ms",
                "admissionTimeout": "1s",
                "source": {"checkAccess": False},
                "target": {
                    "type": "generic",
                    "generic": {"registry": f"127.0.0.1:{port}/mirror", "insecure": True},
                },
            }
        )
    )
    return config


def post(hook: Webhook) -> tuple[dict[str, object], float]:
    with hook.client() as client:
        started = time.monotonic()
        answer = client.post("/mutate", content=REQUEST)
        elapsed = time.monotonic() - started
    assert answer.status_code == 200
    return answer.json()["response"], elapsed


def test_a_stalled_target_is_answered_allowed_unchanged_within_the_admission_timeout(
    tmp_path: Path, stalling_port: int
) -> None:
    hook = start_webhook(tmp_path, exists_config(tmp_path, stalling_port))
    try:
        response, elapsed = post(hook)
        with hook.client() as client:
            metrics = client.get("/metrics").text
    finally:
        stop(hook)
    assert response["allowed"] is True
    assert "patch" not in response
    assert response["warnings"] == ["swapper: pod left unchanged (timeout: timed out)"]
    assert elapsed < 5  # admissionTimeout is 1s; the webhook's own timeout is 10s
    assert 'swapper_internal_errors_total{stage="timeout"} 1.0' in metrics
    assert '"admission_unchanged"' in hook.logs()


def test_a_target_that_refuses_connections_leaves_each_container_unchanged(
    tmp_path: Path,
) -> None:
    hook = start_webhook(tmp_path, exists_config(tmp_path, free_port()))
    try:
        response, _ = post(hook)
        with hook.client() as client:
            metrics = client.get("/metrics").text
    finally:
        stop(hook)
    assert response["allowed"] is True
    assert "patch" not in response
    warnings = response["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 3
    assert all("not swapped: RegistryError: manifest" in w for w in warnings)
    assert all("Connection refused" in w for w in warnings)
    assert 'swapper_container_decisions_total{decision="error",dry_run="false"} 3.0' in metrics
    decisions = [
        json.loads(line)
        for line in hook.logs().splitlines()
        if line.startswith("{") and '"decision"' in line
    ]
    assert {d["reason"] for d in decisions} == {"error"}
