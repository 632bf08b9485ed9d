"""The benchmark's ECR for k8s-image-swapper (``benchmarks/ecr_proxy.py``): moto's intercepting
proxy, run as the benchmark runs it, answering a real AWS SDK through ``HTTPS_PROXY`` with
tokens that last 12 hours, as AWS's do (moto's own say 2015-01-01)."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import moto.moto_proxy
from botocore.config import Config
from moto_ecr import ENV, REGION
from webhook_process import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_ecr_proxy_hands_out_tokens_that_expire_in_twelve_hours(
    tmp_path: Path,
) -> None:
    port = free_port()
    with (tmp_path / "proxy.log").open("wb") as log:
        proxy = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.ecr_proxy", "-H", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proxy.poll() is None, (tmp_path / "proxy.log").read_text()
                assert time.monotonic() < deadline, "the proxy never listened"
                time.sleep(0.1)
        client = boto3.client(
            "ecr",
            region_name=REGION,
            aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"],
            verify=str(Path(moto.moto_proxy.__file__).parent / "ca.crt"),
            config=Config(proxies={"https": f"http://127.0.0.1:{port}"}),
        )
        asked = dt.datetime.now(dt.UTC)
        data = client.get_authorization_token()["authorizationData"][0]
        left = data["expiresAt"] - asked
        assert dt.timedelta(hours=11, minutes=59) < left < dt.timedelta(hours=12, minutes=1)
        assert data["authorizationToken"]  # moto's answer otherwise, through the proxy
    finally:
        proxy.terminate()
        try:
            proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()
