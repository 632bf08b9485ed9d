"""Faults injected between the engine and real registries: the copy finishes correctly, or
fails cleanly with a reason and nothing tagged.

``source_proxy`` sits in front of the source registry, ``proxy`` in front of the target; the
engine only talks to the proxies.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from registries import (
    Fault,
    FaultProxy,
    Image,
    Registry,
    assert_same_image,
    blob_exists,
    get_manifest,
    make_image,
    make_layer,
    plain_hosts,
    push_image,
)
from webhook_process import free_port

from swapper.errors import CopyError, TransientCopyError
from swapper.oci import CopyEngine, ProgressEvent, RegistryClient, RetryPolicy, Timeout

RETRY = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2, max_retry_after=5)


@pytest.fixture(scope="module")
def image(source: Registry) -> Image:
    """One manifest with a config and three 64 KiB layers at ``source/faulty:1``."""
    layers = [make_layer(f"faulty-{i}", size=64 * 1024) for i in range(3)]
    built = make_image(layers)
    push_image(source, "faulty", built, "1")
    return built


@pytest.fixture
async def engine(source_proxy: FaultProxy, proxy: FaultProxy) -> AsyncIterator[CopyEngine]:
    async with RegistryClient(
        hosts=plain_hosts(source_proxy, proxy),
        retry=RETRY,
        timeout=Timeout(1.0, 1.0, 1.0),  # a stall is noticed after 1 s
    ) as client:
        yield CopyEngine(client)


def blob_path(digest: str) -> str:
    return f"/blobs/{digest}"


def upload_of(digest: str) -> str:
    return "digest=" + digest.replace(":", "%3A")


async def copy(
    engine: CopyEngine, source_proxy: FaultProxy, proxy: FaultProxy, repo: str
) -> list[str]:
    kinds: list[str] = []
    await engine.copy(
        f"{source_proxy.host}/faulty:1",
        f"{proxy.host}/{repo}:1",
        progress=lambda event: kinds.append(event.kind),
    )
    return kinds


def statuses(proxy: FaultProxy) -> list[int | str]:
    return [entry.status for entry in proxy.log]


async def test_a_connection_reset_in_the_middle_of_a_download_restarts_that_blob(
    engine: CopyEngine,
    source: Registry,
    target: Registry,
    image: Image,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    layer = image.layers[1]
    fault = source_proxy.add(Fault("reset", blob_path(layer.digest), method="GET", after=20_000))

    kinds = await copy(engine, source_proxy, proxy, fresh_repo)

    assert fault.hits == 1 and "reset" in statuses(source_proxy)
    assert kinds.count("blob-retried") == 1
    assert_same_image(source, "faulty", target, fresh_repo, "1", image.digest)


async def test_a_connection_reset_in_the_middle_of_an_upload_restarts_that_blob(
    engine: CopyEngine,
    source: Registry,
    target: Registry,
    image: Image,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    layer = image.layers[0]
    proxy.add(
        Fault("reset", upload_of(layer.digest), method="PUT", after=10_000, request_body=True)
    )

    kinds = await copy(engine, source_proxy, proxy, fresh_repo)

    assert "reset" in statuses(proxy)
    assert kinds.count("blob-retried") == 1
    assert_same_image(source, "faulty", target, fresh_repo, "1", image.digest)


async def test_500_502_and_503_answers_are_retried_until_the_copy_completes(
    engine: CopyEngine,
    source: Registry,
    target: Registry,
    image: Image,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    source_proxy.add(Fault("status", "/manifests/1", method="GET", status=502))
    source_proxy.add(Fault("status", blob_path(image.layers[2].digest), method="GET", status=500))
    proxy.add(Fault("status", "/blobs/uploads/", method="POST", status=503, times=2))
    proxy.add(Fault("status", "/manifests/1", method="PUT", status=500))

    await copy(engine, source_proxy, proxy, fresh_repo)

    assert {502, 500} <= set(statuses(source_proxy))
    assert statuses(proxy).count(503) == 2 and 500 in statuses(proxy)
    assert_same_image(source, "faulty", target, fresh_repo, "1", image.digest)


async def test_a_429_on_a_manifest_waits_for_retry_after_before_asking_again(
    engine: CopyEngine,
    source: Registry,
    target: Registry,
    image: Image,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    source_proxy.add(
        Fault("status", "/manifests/1", method="GET", status=429, headers={"Retry-After": "1"})
    )

    await copy(engine, source_proxy, proxy, fresh_repo)

    gets = [e for e in source_proxy.log if e.method == "GET" and e.path.endswith("/manifests/1")]
    limited, retried = gets[:2]  # (after the HEAD that comes first)
    assert limited.status == 429 and retried.status == 200
    assert retried.started - limited.finished >= 0.95
    assert_same_image(source, "faulty", target, fresh_repo, "1", image.digest)


async def test_a_429_on_a_blob_download_waits_for_retry_after_before_asking_again(
    engine: CopyEngine,
    source: Registry,
    target: Registry,
    image: Image,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    path = blob_path(image.layers[0].digest)
    source_proxy.add(Fault("status", path, method="GET", status=429, headers={"Retry-After": "1"}))

    await copy(engine, source_proxy, proxy, fresh_repo)

    limited, retried = [e for e in source_proxy.log if e.path.endswith(path)][:2]
    assert limited.status == 429 and retried.status == 200
    assert retried.started - limited.finished >= 0.95
    assert_same_image(source, "faulty", target, fresh_repo, "1", image.digest)


async def test_a_download_that_stalls_times_out_and_is_tried_again(
    engine: CopyEngine,
    source: Registry,
    target: Registry,
    image: Image,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    layer = image.layers[2]
    source_proxy.add(Fault("stall", blob_path(layer.digest), method="GET", after=30_000))

    kinds = await copy(engine, source_proxy, proxy, fresh_repo)

    assert "stall" in statuses(source_proxy) and kinds.count("blob-retried") == 1
    assert_same_image(source, "faulty", target, fresh_repo, "1", image.digest)


async def test_a_manifest_push_whose_answer_never_comes_is_sent_again(
    engine: CopyEngine,
    source: Registry,
    target: Registry,
    image: Image,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    proxy.add(Fault("stall", "/manifests/1", method="PUT", after=0))

    await copy(engine, source_proxy, proxy, fresh_repo)

    pushes = [e.status for e in proxy.log if e.method == "PUT" and "/manifests/" in e.path]
    assert pushes == ["stall", 201]
    assert_same_image(source, "faulty", target, fresh_repo, "1", image.digest)


async def test_a_corrupted_blob_aborts_the_copy_and_nothing_is_tagged(
    engine: CopyEngine,
    target: Registry,
    image: Image,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    layer = image.layers[1]
    source_proxy.add(Fault("corrupt", blob_path(layer.digest), method="GET", after=5000))

    with pytest.raises(CopyError) as failure:
        await copy(engine, source_proxy, proxy, fresh_repo)

    assert failure.value.reason == "digest-mismatch"
    assert not isinstance(failure.value, TransientCopyError)
    assert not blob_exists(target, fresh_repo, layer.digest)
    assert get_manifest(target, fresh_repo, "1") is None
    assert get_manifest(target, fresh_repo, image.digest) is None


async def test_a_registry_that_keeps_failing_ends_the_copy_with_nothing_tagged(
    engine: CopyEngine,
    target: Registry,
    image: Image,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    layer = image.layers[0]
    fault = proxy.add(Fault("status", upload_of(layer.digest), method="PUT", status=503, times=99))

    with pytest.raises(TransientCopyError) as failure:
        await copy(engine, source_proxy, proxy, fresh_repo)

    assert failure.value.reason == "server-error"
    assert fault.hits == RETRY.attempts
    assert get_manifest(target, fresh_repo, "1") is None
    assert not blob_exists(target, fresh_repo, layer.digest)


async def test_a_retry_after_beyond_the_allowed_wait_fails_at_once_as_rate_limited(
    engine: CopyEngine,
    target: Registry,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    image: Image,
    fresh_repo: str,
) -> None:
    source_proxy.add(
        Fault("status", "/manifests/1", method="GET", status=429, headers={"Retry-After": "3600"})
    )
    started = time.monotonic()

    with pytest.raises(TransientCopyError) as failure:
        await copy(engine, source_proxy, proxy, fresh_repo)

    assert failure.value.reason == "rate-limited"
    assert time.monotonic() - started < 1
    assert get_manifest(target, fresh_repo, "1") is None


async def test_an_unreachable_registry_fails_with_reason_connection() -> None:
    events: list[ProgressEvent] = []
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    async with RegistryClient(hosts=plain_hosts(host), retry=RETRY) as client:
        with pytest.raises(TransientCopyError) as failure:
            await CopyEngine(client).copy(
                f"{host}/app:1", f"{host}/mirror/app:1", progress=events.append
            )

    assert failure.value.reason == "connection"
    assert events == []
