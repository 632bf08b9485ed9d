"""``mirror.hosts.<host>`` reaches every request swapper makes to a generic target: its existence
checks as well as the copies and access checks (the shared client of ``wiring``). Against a real
plain-HTTP ``docker-registry`` on loopback, configured as insecure only through ``mirror.hosts``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from registries import Registry, make_image, make_layer, push_image, start_registry

from swapper.config import Config, load_config
from swapper.oci import RegistryClient
from swapper.targets._oci import manifest_digest
from swapper.targets.generic import GenericTarget
from swapper.wiring import registry_hosts


@pytest.fixture(scope="module")
def plain_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = start_registry(tmp_path_factory.mktemp("plain-http"))
    try:
        push_image(registry, "m/docker.io/library/app", make_image([make_layer("app")]), "1.0")
        yield registry
    finally:
        registry.stop()


def insecure_through_mirror_hosts(registry: Registry) -> Config:
    return load_config(
        {
            "target": {"type": "generic", "generic": {"registry": f"{registry.host}/m"}},
            "mirror": {"hosts": {registry.host: {"insecure": True}}},
        }
    )


async def test_a_generic_targets_existence_check_speaks_plain_http_when_mirror_hosts_says_so(
    plain_http: Registry,
) -> None:
    config = insecure_through_mirror_hosts(plain_http)
    assert config.target.generic is not None and not config.target.generic.insecure
    target = GenericTarget(config.target.generic)
    try:
        assert await target.image_exists(f"{plain_http.host}/m/docker.io/library/app:1.0")
        assert not await target.image_exists(f"{plain_http.host}/m/docker.io/library/app:9.9")
    finally:
        await target.aclose()


async def test_copies_and_access_checks_reach_the_target_as_mirror_hosts_says(
    plain_http: Registry,
) -> None:
    config = insecure_through_mirror_hosts(plain_http)
    client = RegistryClient(hosts=registry_hosts(config))
    try:
        assert await manifest_digest(client, f"{plain_http.host}/m/docker.io/library/app:1.0")
    finally:
        await client.aclose()


async def test_mirror_hosts_keeps_the_generic_targets_own_insecure_setting(
    plain_http: Registry,
) -> None:
    config = load_config(
        {
            "target": {
                "type": "generic",
                "generic": {"registry": f"{plain_http.host}/m", "insecure": True},
            },
            "mirror": {"hosts": {plain_http.host: {"skipVerify": True}}},
        }
    )
    assert config.target.generic is not None
    target = GenericTarget(config.target.generic)
    try:
        assert await target.image_exists(f"{plain_http.host}/m/docker.io/library/app:1.0")
    finally:
        await target.aclose()
    assert registry_hosts(config)[plain_http.host].plain_http is True


def test_the_copy_settings_of_a_generic_target_host_merge_both_places(tmp_path: Path) -> None:
    config = load_config(
        {
            "target": {
                "type": "generic",
                "generic": {"registry": "reg.local:5000", "caFile": str(tmp_path / "ca.pem")},
            },
            "mirror": {"hosts": {"Reg.Local:5000": {"skipVerify": True}}},
        }
    )
    host = registry_hosts(config)["reg.local:5000"]
    assert (host.plain_http, host.verify_tls, host.ca_file) == (
        False,
        False,
        str(tmp_path / "ca.pem"),
    )
