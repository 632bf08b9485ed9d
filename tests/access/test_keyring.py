"""Pull-secret credentials matched to images as the kubelet matches them."""

from __future__ import annotations

import base64
import json

import pytest

from swapper.access.keyring import (
    DOCKER_CFG,
    DOCKER_CONFIG_JSON,
    Keyring,
    is_default_registry,
    keyring_key,
    parse_pull_secret,
    urls_match,
)
from swapper.credentials import Credentials
from swapper.errors import CredentialsError


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _config_json(auths: dict[str, dict[str, str]]) -> dict[str, str]:
    return {".dockerconfigjson": _b64(json.dumps({"auths": auths}))}


def _keyring(*locations: str) -> Keyring:
    return Keyring((loc, Credentials(loc, "pw", source=loc)) for loc in locations)


@pytest.mark.parametrize(
    ("location", "key"),
    [
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("index.docker.io", "index.docker.io"),
        ("http://registry.example.com/v2/", "registry.example.com"),
        ("registry.example.com/v2/team", "registry.example.com/team"),
        ("quay.io/coreos", "quay.io/coreos"),
        ("localhost:5000", "localhost:5000"),
        ("[::1]:5000/app", "[::1]:5000/app"),
        ("https://user@registry.example.com", "registry.example.com"),
        ("", None),
    ],
)
def test_config_locations_become_the_kubelets_index_keys(location: str, key: str | None) -> None:
    assert keyring_key(location) == key


@pytest.mark.parametrize(
    ("glob", "target", "matches"),
    [
        ("quay.io", "quay.io/coreos/etcd", True),
        ("quay.io/coreos", "quay.io/coreos/etcd", True),
        ("quay.io/coreos", "quay.io/other/etcd", False),
        # A string prefix, not a path-component prefix, exactly like the kubelet.
        ("quay.io/core", "quay.io/coreos/etcd", True),
        ("*.example.com", "eu.example.com/app", True),
        ("*.example.com", "example.com/app", False),
        ("*.example.com", "a.b.example.com/app", False),
        ("*.*.example.com", "a.b.example.com/app", True),
        ("eu-*.example.com", "eu-1.example.com/app", True),
        # As in the kubelet, "?" starts a URL query, so it cannot be a glob in a key.
        ("eu-?.example.com", "eu-1.example.com/app", False),
        ("registry.example.com", "registry.example.org/app", False),
        ("localhost:5000", "localhost:5000/app", True),
        ("localhost:5000", "localhost/app", False),
        ("localhost", "localhost:5000/app", False),
        ("*.example.com:5000", "eu.example.com:5000/app", True),
        ("*.example.com", "eu.example.com:5000/app", False),
        ("[::1]:5000", "[::1]:5000/app", True),
        ("[::1]:5000", "[::1]:5001/app", False),
        ("docker.io", "docker.io/library/nginx", True),
        ("index.docker.io", "docker.io/library/nginx", False),
    ],
)
def test_keys_match_repositories_by_port_host_glob_and_path_prefix(
    glob: str, target: str, matches: bool
) -> None:
    assert urls_match(glob, target) is matches


@pytest.mark.parametrize(
    ("repository", "default"),
    [
        ("docker.io/library/nginx", True),
        ("index.docker.io/library/nginx", True),
        ("library/nginx", True),
        ("nginx", True),
        ("ghcr.io/acme/app", False),
        ("localhost:5000/app", False),
        ("", False),
    ],
)
def test_docker_hub_repositories_are_recognised_like_the_kubelet(
    repository: str, default: bool
) -> None:
    assert is_default_registry(repository) is default


def test_more_specific_keys_come_first() -> None:
    ring = _keyring("quay.io", "quay.io/coreos", "quay.io/coreos/etcd")
    found = [a.source for a in ring.lookup("quay.io/coreos/etcd")]
    assert found == ["quay.io/coreos/etcd", "quay.io/coreos", "quay.io"]


def test_credentials_of_one_key_from_several_secrets_keep_their_order() -> None:
    ring = Keyring(
        [
            ("ghcr.io", Credentials("first", "a", source="ns/one")),
            ("https://ghcr.io", Credentials("second", "b", source="ns/two")),
        ]
    )
    assert [a.source for a in ring.lookup("ghcr.io/acme/app")] == ["ns/one", "ns/two"]


def test_docker_hub_images_fall_back_to_the_index_docker_io_key() -> None:
    ring = _keyring("https://index.docker.io/v1/", "ghcr.io")
    assert [a.source for a in ring.lookup("docker.io/library/nginx")] == [
        "https://index.docker.io/v1/"
    ]


def test_the_docker_hub_fallback_is_not_used_when_a_key_matches() -> None:
    ring = _keyring("https://index.docker.io/v1/", "docker.io/acme")
    assert [a.source for a in ring.lookup("docker.io/acme/app")] == ["docker.io/acme"]


def test_images_of_other_registries_get_no_credentials() -> None:
    assert _keyring("ghcr.io", "https://index.docker.io/v1/").lookup("quay.io/app/x") == []


def test_dockerconfigjson_secrets_are_read() -> None:
    data = _config_json({"ghcr.io": {"username": "robot", "password": "s3cret"}})
    entries = parse_pull_secret(DOCKER_CONFIG_JSON, data, source="team/ghcr")
    assert entries["ghcr.io"].username == "robot"
    assert entries["ghcr.io"].password == "s3cret"
    assert entries["ghcr.io"].source == "team/ghcr"


def test_legacy_dockercfg_secrets_are_read() -> None:
    data = {".dockercfg": _b64(json.dumps({"quay.io": {"auth": _b64("bot:pw:with:colons")}}))}
    entry = parse_pull_secret(DOCKER_CFG, data)["quay.io"]
    assert (entry.username, entry.password) == ("bot", "pw:with:colons")


def test_the_auth_field_wins_over_username_and_password() -> None:
    data = _config_json({"r.io": {"username": "u", "password": "p", "auth": _b64("a:b")}})
    entry = parse_pull_secret(DOCKER_CONFIG_JSON, data)["r.io"]
    assert (entry.username, entry.password) == ("a", "b")


def test_identity_tokens_are_kept() -> None:
    data = _config_json({"r.io": {"identitytoken": "tok"}})
    entry = parse_pull_secret(DOCKER_CONFIG_JSON, data)["r.io"]
    assert entry.identity_token == "tok"
    assert not entry.anonymous


@pytest.mark.parametrize(
    ("secret_type", "data"),
    [
        ("Opaque", {".dockerconfigjson": _b64("{}")}),
        (DOCKER_CONFIG_JSON, {}),
        (DOCKER_CONFIG_JSON, {".dockerconfigjson": "not base64!"}),
        (DOCKER_CONFIG_JSON, {".dockerconfigjson": _b64("not json")}),
        (DOCKER_CONFIG_JSON, _config_json({"r.io": {"auth": _b64("no-colon-s3cret")}})),
        (DOCKER_CFG, {".dockercfg": _b64("[]")}),
    ],
)
def test_unreadable_pull_secrets_raise_an_error_without_their_content(
    secret_type: str, data: dict[str, str]
) -> None:
    with pytest.raises(CredentialsError) as caught:
        parse_pull_secret(secret_type, data)
    assert "s3cret" not in str(caught.value)


def test_credentials_never_show_in_repr() -> None:
    text = repr(Credentials("robot", "s3cret", "t0ken", source="ns/name"))
    assert "s3cret" not in text
    assert "t0ken" not in text
    assert "ns/name" in text
