"""Large layers: a 100+ MiB layer streamed and verified, chunked uploads, flat memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from registries import (
    FaultProxy,
    Image,
    MiB,
    Registry,
    assert_same_image,
    make_big_layer,
    make_image,
    plain_hosts,
    push_image,
)

from swapper.oci import CopyEngine, HostConfig, RegistryClient


@pytest.fixture(scope="module")
def big(source: Registry, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """A 101 MiB random layer (it does not compress) at ``source/big:1``."""
    layer = make_big_layer(tmp_path_factory.mktemp("big") / "layer.tar.gz", 101 * MiB, seed=7)
    image = make_image([layer])
    push_image(source, "big", image, "1")
    return image


@pytest.fixture(scope="module")
def medium(source: Registry, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """A 12 MiB layer at ``source/medium:1``."""
    layer = make_big_layer(tmp_path_factory.mktemp("medium") / "layer.tar.gz", 12 * MiB, seed=8)
    image = make_image([layer])
    push_image(source, "medium", image, "1")
    return image


async def test_a_layer_over_100_mib_is_streamed_into_the_target_and_verified(
    engine: CopyEngine, source: Registry, target: Registry, big: Image, fresh_repo: str
) -> None:
    result = await engine.copy(f"{source.host}/big:1", f"{target.host}/{fresh_repo}:1")

    assert big.layers[0].size > 100 * MiB
    assert result.bytes_copied == sum(blob.size for blob in big.blobs)
    assert_same_image(source, "big", target, fresh_repo, "1", big.digest)


async def test_chunked_uploads_send_parts_of_the_configured_size_and_at_least_5_mib(
    source: Registry, target: Registry, medium: Image, proxy: FaultProxy, fresh_repo: str
) -> None:
    hosts = {
        **plain_hosts(source),
        proxy.host: HostConfig(plain_http=True, upload="chunked", chunk_size=5 * MiB),
    }
    async with RegistryClient(hosts=hosts) as client:
        await CopyEngine(client).copy(f"{source.host}/medium:1", f"{proxy.host}/{fresh_repo}:1")

    layer = medium.layers[0]
    sessions: dict[str, list[tuple[str, int, int | str]]] = {}
    layer_session = ""
    for entry in proxy.log:
        if "/blobs/uploads/" in entry.path and entry.method in ("PATCH", "PUT"):
            session = entry.path.split("/blobs/uploads/")[1].split("?")[0]
            sessions.setdefault(session, []).append(
                (entry.method, entry.request_length, entry.status)
            )
            if layer.digest.replace(":", "%3A") in entry.path:
                layer_session = session
    requests = sessions[layer_session]
    assert requests == [
        ("PATCH", 5 * MiB, 202),
        ("PATCH", 5 * MiB, 202),
        ("PATCH", layer.size - 10 * MiB, 202),
        ("PUT", 0, 201),
    ]
    assert_same_image(source, "medium", target, fresh_repo, "1", medium.digest)


COPY_AND_MEASURE = """
import asyncio, json, sys
from swapper.oci import CopyEngine, HostConfig, RegistryClient

def peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

async def main(source, target, upload):
    names = (source.split("/")[0], target.split("/")[0])
    hosts = {name: HostConfig(plain_http=True, upload=upload) for name in names}
    async with RegistryClient(hosts=hosts) as client:
        engine = CopyEngine(client)
        await engine.copy(sys.argv[4], sys.argv[5])  # warm up: imports, connections, tokens
        before = peak_kib()
        result = await engine.copy(source, target)
        print(json.dumps({"before": before, "after": peak_kib(), "bytes": result.bytes_copied}))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


@pytest.mark.parametrize("upload", ["monolithic", "chunked"])
def test_copying_a_100_mib_layer_grows_peak_memory_by_less_than_32_mib(
    source: Registry, target: Registry, big: Image, fresh_repo: str, upload: str, tmp_path: Path
) -> None:
    small = make_image([])
    push_image(source, "warmup", small, "1")
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            COPY_AND_MEASURE,
            f"{source.host}/big:1",
            f"{target.host}/{fresh_repo}:1",
            upload,
            f"{source.host}/warmup:1",
            f"{target.host}/{fresh_repo}-warmup:1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout)

    assert measured["bytes"] > 100 * MiB
    assert (measured["after"] - measured["before"]) * 1024 < 32 * MiB
    assert_same_image(source, "big", target, fresh_repo, "1", big.digest)
