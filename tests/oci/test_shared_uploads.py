"""Copies running at once through one engine (the copy queue's workers) that need the same blob
in one target registry: it is uploaded once, and mounted by the others (real registries)."""

from __future__ import annotations

import asyncio
from collections import Counter
from urllib.parse import parse_qs, urlsplit

from registries import (
    FAST_RETRY,
    Fault,
    FaultProxy,
    Registry,
    assert_same_image,
    make_image,
    make_layer,
    plain_hosts,
    push_image,
)

from swapper.oci import CopyEngine, RegistryClient


def _uploads(proxy: FaultProxy) -> Counter[str]:
    """Completed blob uploads the target was sent, by digest (its side of the wire)."""
    done: Counter[str] = Counter()
    for entry in proxy.log:
        url = urlsplit(entry.path)
        digest = parse_qs(url.query).get("digest")
        if entry.method == "PUT" and "/blobs/uploads/" in url.path and digest:
            done[digest[0]] += 1
    return done


async def test_copies_at_once_upload_a_shared_base_layer_once_and_mount_it_elsewhere(
    source: Registry,
    target: Registry,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    base = [make_layer(f"{fresh_repo}-base-{i}", 64 * 1024) for i in range(3)]
    images = [make_image([*base, make_layer(f"{fresh_repo}-own-{n}")]) for n in range(3)]
    for n, image in enumerate(images):
        push_image(source, f"{fresh_repo}-src{n}", image, "1")
    # Slow downloads: every copy has found the base layers missing before any upload ends.
    source_proxy.add(Fault("delay", "/blobs/sha256:", method="GET", times=100, seconds=0.3))

    async with RegistryClient(hosts=plain_hosts(source_proxy, proxy), retry=FAST_RETRY) as client:
        engine = CopyEngine(client)
        results = await asyncio.gather(
            *(
                engine.copy(
                    f"{source_proxy.host}/{fresh_repo}-src{n}:1", f"{proxy.host}/{fresh_repo}-{n}:1"
                )
                for n in range(len(images))
            )
        )

    uploads = _uploads(proxy)
    every_blob = {blob.digest for image in images for blob in image.blobs}
    assert set(uploads) == every_blob
    assert max(uploads.values()) == 1, uploads
    shared = {layer.digest for layer in base}
    assert sum(result.blobs_mounted for result in results) == (len(images) - 1) * len(shared)
    assert sum(result.blobs_copied for result in results) == len(every_blob)
    for n, image in enumerate(images):
        assert_same_image(
            source, f"{fresh_repo}-src{n}", target, f"{fresh_repo}-{n}", "1", image.digest
        )
    assert not engine.uploading  # nothing is remembered once the uploads are over


async def test_a_failed_upload_lets_the_copy_waiting_for_it_upload_the_blob_itself(
    source: Registry,
    target: Registry,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    layer = make_layer(f"{fresh_repo}-base", 64 * 1024)
    images = [make_image([layer, make_layer(f"{fresh_repo}-own-{n}")]) for n in range(2)]
    for n, image in enumerate(images):
        push_image(source, f"{fresh_repo}-src{n}", image, "1")
    source_proxy.add(Fault("delay", "/blobs/sha256:", method="GET", times=100, seconds=0.3))
    # The first upload of the shared layer is refused for good (a 400 is not retried).
    refused = proxy.add(
        Fault("status", f"digest={layer.digest.replace(':', '%3A')}", "PUT", 1, 400)
    )

    async with RegistryClient(hosts=plain_hosts(source_proxy, proxy), retry=FAST_RETRY) as client:
        engine = CopyEngine(client)
        results = await asyncio.gather(
            *(
                engine.copy(
                    f"{source_proxy.host}/{fresh_repo}-src{n}:1", f"{proxy.host}/{fresh_repo}-{n}:1"
                )
                for n in range(len(images))
            ),
            return_exceptions=True,
        )

    assert refused.hits == 1
    failed = [r for r in results if isinstance(r, BaseException)]
    copied = [n for n, r in enumerate(results) if not isinstance(r, BaseException)]
    assert len(failed) == 1 and len(copied) == 1, results
    n = copied[0]
    assert_same_image(
        source, f"{fresh_repo}-src{n}", target, f"{fresh_repo}-{n}", "1", images[n].digest
    )
    assert not engine.uploading
