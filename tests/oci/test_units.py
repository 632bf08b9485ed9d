"""The pure parts of ``swapper.oci``: challenges, platforms, manifests, retries, token cache."""

from __future__ import annotations

import json

import pytest

from swapper.credentials import Credentials
from swapper.errors import CopyError
from swapper.oci import HostConfig, Platform, RetryPolicy, parse_platforms
from swapper.oci._auth import TokenCache, parse_challenge
from swapper.oci._client import _environment_proxy
from swapper.oci._manifests import parse_manifest

DIGEST = "sha256:" + "a" * 64


def test_a_bearer_challenge_keeps_commas_inside_quoted_values() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:org/app:pull,push",error="insufficient_scope"'
    )

    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.example.com/token"
    assert challenge.service == "registry.example.com"
    assert challenge.scope == "repository:org/app:pull,push"
    assert challenge.error == "insufficient_scope"


def test_a_basic_challenge_and_no_challenge_are_told_apart() -> None:
    assert parse_challenge('Basic realm="Registry Realm"').scheme == "basic"
    assert parse_challenge(None).scheme == ""


@pytest.mark.parametrize(
    ("selector", "platform", "selected"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/arm64", False),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/arm/v7", "linux/arm/v6", False),
        ("linux/arm", "linux/arm/v6", True),
        ("windows/amd64", "linux/amd64", False),
    ],
)
def test_a_platform_selects_manifests_of_its_os_architecture_and_variant(
    selector: str, platform: str, selected: bool
) -> None:
    assert Platform.parse(selector).matches(Platform.parse(platform)) is selected


def test_all_or_nothing_means_every_platform_and_a_list_means_those() -> None:
    assert parse_platforms(None) is None
    assert parse_platforms("all") is None
    assert parse_platforms("linux/amd64, linux/arm64") == (
        Platform("linux", "amd64"),
        Platform("linux", "arm64"),
    )
    with pytest.raises(ValueError, match="not a platform"):
        parse_platforms("amd64")


def test_docker_schema_1_manifests_are_refused_as_unsupported() -> None:
    data = json.dumps({"schemaVersion": 1, "name": "app", "fsLayers": []}).encode()

    with pytest.raises(CopyError) as failure:
        parse_manifest(data, "application/vnd.docker.distribution.manifest.v1+prettyjws", DIGEST)

    assert failure.value.reason == "unsupported"


def test_a_manifest_that_is_not_json_is_refused_as_invalid() -> None:
    with pytest.raises(CopyError) as failure:
        parse_manifest(b"<html>", "text/html", DIGEST)

    assert failure.value.reason == "invalid-manifest"


def test_a_manifest_of_an_unknown_type_is_read_for_its_blobs_and_kept_byte_for_byte() -> None:
    data = json.dumps(
        {
            "mediaType": "application/vnd.example.thing.v1+json",
            "blobs": [{"mediaType": "application/x-thing", "digest": DIGEST, "size": 3}],
        }
    ).encode()

    manifest = parse_manifest(data, "application/vnd.example.thing.v1+json", DIGEST)

    assert manifest.data == data and not manifest.is_index
    assert [blob.digest for blob in manifest.blobs] == [DIGEST]


def test_the_retry_delay_doubles_up_to_its_ceiling_with_jitter() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)

    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1


def test_a_cached_token_is_dropped_shortly_before_it_expires() -> None:
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    key = ("registry.example.com", Credentials("u", "p"), ("repository:a:pull",))
    cache.put(key, "token", expires_in=300)

    now[0] += 260
    assert cache.get(key) == "token"
    now[0] += 15  # 275 s: within the last 10% of its life
    assert cache.get(key) is None


def test_tokens_are_cached_per_identity() -> None:
    cache = TokenCache()
    scopes = ("repository:a:pull",)
    cache.put(("r", Credentials("u", "p"), scopes), "token-of-u", expires_in=300)

    assert cache.get(("r", None, scopes)) is None
    assert cache.get(("r", Credentials("v", "p"), scopes)) is None


def test_credentials_never_show_their_password() -> None:
    assert "hunter2" not in repr(Credentials("user", "hunter2"))


def test_upload_parts_below_5_mib_are_refused() -> None:
    with pytest.raises(ValueError, match="5 MiB"):
        HostConfig(upload="chunked", chunk_size=1024)


def test_an_environment_proxy_applies_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    monkeypatch.setenv("NO_PROXY", "registry.internal,127.0.0.1")
    monkeypatch.delenv("no_proxy", raising=False)
    assert not _environment_proxy("https", "ghcr.io")

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.com:3128")

    assert _environment_proxy("https", "ghcr.io")
    assert not _environment_proxy("https", "registry.internal:5000")
    assert not _environment_proxy("http", "ghcr.io")
