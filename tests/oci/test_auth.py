"""Authentication and TLS against real registries: htpasswd over TLS with a private CA, and
bearer tokens from a token server the registry verifies (anonymous pull under ``public/``,
credentials for everything else)."""

from __future__ import annotations

import pytest
from registries import (
    FAST_RETRY,
    Index,
    Registry,
    TokenServer,
    assert_same_image,
    get_manifest,
    make_image,
    make_layer,
    multi_arch,
    plain_hosts,
    push_image,
    push_index,
)

from swapper.credentials import Credentials
from swapper.errors import CopyError
from swapper.oci import CopyEngine, HostConfig, RegistryClient, static_credentials

ALICE = Credentials("alice", "alice-secret")
BOB = Credentials("bob", "bob-secret")


@pytest.fixture(scope="module")
def public_image(token_registry: Registry) -> Index:
    index = multi_arch("public", layers=2)
    push_index(token_registry, "public/app", index, "1")
    return index


@pytest.fixture(scope="module")
def private_image(token_registry: Registry) -> str:
    image = make_image([make_layer("private-1"), make_layer("private-2")])
    return push_image(token_registry, "private/app", image, "1")


async def test_a_tls_registry_with_basic_auth_is_reached_through_its_ca_bundle(
    source: Registry, tls_registry: Registry, multi: Index, fresh_repo: str
) -> None:
    hosts = {
        **plain_hosts(source),
        tls_registry.host: HostConfig(ca_file=str(tls_registry.ca_file)),
    }
    credentials = static_credentials({tls_registry.host: Credentials("carol", "carol-secret")})
    async with RegistryClient(hosts=hosts, credentials=credentials, retry=FAST_RETRY) as client:
        result = await CopyEngine(client).copy(
            f"{source.host}/multi:1.0", f"{tls_registry.host}/{fresh_repo}:1.0"
        )

    assert result.digest == multi.digest
    assert_same_image(source, "multi", tls_registry, fresh_repo, "1.0", multi.digest)


async def test_a_registry_whose_certificate_is_not_trusted_fails_with_reason_tls(
    source: Registry, tls_registry: Registry, multi: Index, fresh_repo: str
) -> None:
    async with RegistryClient(hosts=plain_hosts(source), retry=FAST_RETRY) as client:
        with pytest.raises(CopyError) as failure:
            await CopyEngine(client).copy(
                f"{source.host}/multi:1.0", f"{tls_registry.host}/{fresh_repo}:1.0"
            )

    assert failure.value.reason == "tls"


async def test_certificate_verification_can_be_turned_off_for_one_host(
    source: Registry, tls_registry: Registry, multi: Index, fresh_repo: str
) -> None:
    hosts = {**plain_hosts(source), tls_registry.host: HostConfig(verify_tls=False)}
    credentials = static_credentials({tls_registry.host: Credentials("carol", "carol-secret")})
    async with RegistryClient(hosts=hosts, credentials=credentials, retry=FAST_RETRY) as client:
        result = await CopyEngine(client).copy(
            f"{source.host}/multi:1.0", f"{tls_registry.host}/{fresh_repo}:1.0"
        )

    assert_same_image(source, "multi", tls_registry, fresh_repo, "1.0", result.digest)


async def test_wrong_basic_credentials_fail_with_reason_unauthorized(
    source: Registry, tls_registry: Registry, multi: Index, fresh_repo: str
) -> None:
    hosts = {
        **plain_hosts(source),
        tls_registry.host: HostConfig(ca_file=str(tls_registry.ca_file)),
    }
    credentials = static_credentials({tls_registry.host: Credentials("carol", "wrong")})
    async with RegistryClient(hosts=hosts, credentials=credentials, retry=FAST_RETRY) as client:
        with pytest.raises(CopyError) as failure:
            await CopyEngine(client).copy(
                f"{source.host}/multi:1.0", f"{tls_registry.host}/{fresh_repo}:1.0"
            )

    assert failure.value.reason == "unauthorized"


async def test_a_registry_anonymous_for_pull_takes_credentials_for_push(
    token_registry: Registry,
    token_server: TokenServer,
    public_image: Index,
    fresh_repo: str,
) -> None:
    token_server.requests.clear()
    pushers = static_credentials({token_registry.host: ALICE})
    async with RegistryClient(hosts=plain_hosts(token_registry), credentials=pushers) as client:
        result = await CopyEngine(client).copy(
            f"{token_registry.host}/public/app:1",
            f"{token_registry.host}/{fresh_repo}:1",
            source_credentials=static_credentials({}),  # read the source anonymously
        )

    assert result.digest == public_image.digest
    assert_same_image(token_registry, "public/app", token_registry, fresh_repo, "1")
    asked = {(r.user, tuple(r.scopes)) for r in token_server.requests}
    assert (None, ("repository:public/app:pull",)) in asked
    assert ("alice", (f"repository:{fresh_repo}:pull,push",)) in asked


async def test_pushing_without_credentials_fails_with_reason_unauthorized_and_tags_nothing(
    token_registry: Registry, public_image: Index, fresh_repo: str
) -> None:
    async with RegistryClient(hosts=plain_hosts(token_registry), retry=FAST_RETRY) as client:
        with pytest.raises(CopyError) as failure:
            await CopyEngine(client).copy(
                f"{token_registry.host}/public/app:1", f"{token_registry.host}/{fresh_repo}:1"
            )

    assert failure.value.reason == "unauthorized"
    assert get_manifest(token_registry, fresh_repo, "1") is None


async def test_tokens_are_fetched_once_per_scope_and_reused_for_later_copies(
    token_registry: Registry, token_server: TokenServer, public_image: Index, fresh_repo: str
) -> None:
    credentials = static_credentials({token_registry.host: ALICE})
    async with RegistryClient(hosts=plain_hosts(token_registry), credentials=credentials) as client:
        engine = CopyEngine(client)
        token_server.requests.clear()
        await engine.copy(
            f"{token_registry.host}/public/app:1", f"{token_registry.host}/{fresh_repo}:1"
        )
        first = [tuple(r.scopes) for r in token_server.requests]
        await engine.copy(
            f"{token_registry.host}/public/app:1", f"{token_registry.host}/{fresh_repo}:2"
        )

    # source pull; target pull,push; target pull,push with the source for the mounts
    assert len(first) == len(set(first)) == 3
    assert [tuple(r.scopes) for r in token_server.requests] == first
    assert_same_image(token_registry, "public/app", token_registry, fresh_repo, "1", target_ref="2")


async def test_a_private_source_is_read_with_the_credentials_given_for_that_copy(
    source: Registry,
    token_registry: Registry,
    target: Registry,
    private_image: str,
    fresh_repo: str,
) -> None:
    async with RegistryClient(hosts=plain_hosts(token_registry, target)) as client:
        engine = CopyEngine(client)
        with pytest.raises(CopyError) as failure:
            await engine.copy(
                f"{token_registry.host}/private/app:1", f"{target.host}/{fresh_repo}:1"
            )
        assert failure.value.reason == "unauthorized"

        result = await engine.copy(
            f"{token_registry.host}/private/app:1",
            f"{target.host}/{fresh_repo}:1",
            source_credentials=static_credentials({token_registry.host: BOB}),
        )

    assert result.digest == private_image
    assert_same_image(token_registry, "private/app", target, fresh_repo, "1", private_image)


async def test_a_token_fetched_with_one_identity_is_never_used_for_another(
    token_registry: Registry, target: Registry, private_image: str, fresh_repo: str
) -> None:
    async with RegistryClient(hosts=plain_hosts(token_registry, target)) as client:
        engine = CopyEngine(client)
        await engine.copy(
            f"{token_registry.host}/private/app:1",
            f"{target.host}/{fresh_repo}:1",
            source_credentials=static_credentials({token_registry.host: BOB}),
        )
        with pytest.raises(CopyError) as failure:
            await engine.copy(
                f"{token_registry.host}/private/app:1", f"{target.host}/{fresh_repo}-anon:1"
            )

    assert failure.value.reason == "unauthorized"
    assert get_manifest(target, f"{fresh_repo}-anon", "1") is None


async def test_a_wrong_password_for_the_token_endpoint_fails_with_reason_unauthorized(
    token_registry: Registry, target: Registry, private_image: str, fresh_repo: str
) -> None:
    async with RegistryClient(hosts=plain_hosts(token_registry, target)) as client:
        with pytest.raises(CopyError) as failure:
            await CopyEngine(client).copy(
                f"{token_registry.host}/private/app:1",
                f"{target.host}/{fresh_repo}:1",
                source_credentials=static_credentials(
                    {token_registry.host: Credentials("bob", "wrong")}
                ),
            )

    assert failure.value.reason == "unauthorized"
    assert "token" in str(failure.value)
