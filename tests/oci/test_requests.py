"""What a copy asks the source for: an image the target already has costs a HEAD on the source
and no GET (Docker Hub counts manifest GETs, not HEADs, against its pull limit), so re-checks
(``imagePullPolicy: Always``) stay cheap. Requests are counted in the logs of fault proxies in
front of both registries (no fault injected)."""

from __future__ import annotations

from registries import (
    FAST_RETRY,
    FaultProxy,
    Index,
    Registry,
    assert_same_image,
    make_image,
    make_layer,
    plain_hosts,
    push_image,
)

from swapper.oci import CopyEngine, CopyResult, RegistryClient


def requests(proxy: FaultProxy) -> list[tuple[str, str]]:
    return [(entry.method, entry.path) for entry in proxy.log]


async def copy(
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    source: str,
    target: str,
    engine: CopyEngine | None = None,
    platforms: list[str] | None = None,
) -> CopyResult:
    """A copy through the proxies; with a new client (as a new process would) by default."""
    if engine is not None:
        return await engine.copy(source, target, platforms=platforms)
    async with RegistryClient(hosts=plain_hosts(source_proxy, proxy), retry=FAST_RETRY) as client:
        return await CopyEngine(client).copy(source, target, platforms=platforms)


async def test_an_image_the_target_has_costs_one_head_on_each_side_and_no_get(
    source: Registry,
    target: Registry,
    multi: Index,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    src, dst = f"{source_proxy.host}/multi:1.0", f"{proxy.host}/{fresh_repo}:1.0"
    first = await copy(source_proxy, proxy, src, dst)
    assert not first.already_present
    assert ("GET", "/v2/multi/manifests/1.0") in requests(source_proxy)
    source_proxy.log.clear()
    proxy.log.clear()

    again = await copy(source_proxy, proxy, src, dst)

    assert again.already_present and again.digest == again.source_digest == multi.digest
    assert requests(source_proxy) == [("HEAD", "/v2/multi/manifests/1.0")]
    assert requests(proxy) == [("HEAD", f"/v2/{fresh_repo}/manifests/1.0")]
    assert_same_image(source, "multi", target, fresh_repo, "1.0", multi.digest)


async def test_a_source_pinned_by_digest_is_not_asked_at_all_when_the_target_has_it(
    multi: Index, source_proxy: FaultProxy, proxy: FaultProxy, fresh_repo: str
) -> None:
    dst = f"{proxy.host}/{fresh_repo}:1.0"
    await copy(source_proxy, proxy, f"{source_proxy.host}/multi:1.0", dst)
    source_proxy.log.clear()

    again = await copy(source_proxy, proxy, f"{source_proxy.host}/multi@{multi.digest}", dst)

    assert again.already_present and again.digest == multi.digest
    assert requests(source_proxy) == []


async def test_a_platform_filtered_copy_is_rechecked_without_a_get_by_the_same_engine(
    source: Registry,
    target: Registry,
    multi: Index,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    src, dst = f"{source_proxy.host}/multi:1.0", f"{proxy.host}/{fresh_repo}:1.0"
    async with RegistryClient(hosts=plain_hosts(source_proxy, proxy), retry=FAST_RETRY) as client:
        engine = CopyEngine(client)
        first = await copy(source_proxy, proxy, src, dst, engine, ["linux/arm64"])
        assert first.filtered
        source_proxy.log.clear()

        again = await copy(source_proxy, proxy, src, dst, engine, ["linux/arm64"])
        assert again.already_present and again.digest == first.digest
        assert requests(source_proxy) == [("HEAD", "/v2/multi/manifests/1.0")]
        source_proxy.log.clear()

        other = await copy(source_proxy, proxy, src, dst, engine, ["linux/amd64"])

    # Another selection does not match what the target has: the index is read and copied.
    assert not other.already_present and other.platforms == ("linux/amd64",)
    assert ("GET", "/v2/multi/manifests/1.0") in requests(source_proxy)


async def test_a_tag_that_moved_at_the_source_is_read_and_copied_again(
    source: Registry,
    target: Registry,
    source_proxy: FaultProxy,
    proxy: FaultProxy,
    fresh_repo: str,
) -> None:
    repo = f"moving-{fresh_repo.replace('/', '-')}"
    first, second = (make_image([make_layer(f"{repo}-{n}")]) for n in (1, 2))
    push_image(source, repo, first, "latest")
    src, dst = f"{source_proxy.host}/{repo}:latest", f"{proxy.host}/{fresh_repo}:latest"
    assert (await copy(source_proxy, proxy, src, dst)).digest == first.digest
    push_image(source, repo, second, "latest")
    source_proxy.log.clear()

    again = await copy(source_proxy, proxy, src, dst)

    assert not again.already_present and again.digest == second.digest
    assert requests(source_proxy)[:2] == [
        ("HEAD", f"/v2/{repo}/manifests/latest"),
        ("GET", f"/v2/{repo}/manifests/latest"),
    ]
    assert_same_image(source, repo, target, fresh_repo, "latest", second.digest)
