"""mirror.referrers and mirror.referrerTypes: validated, carried to the copy engine of
``swapper serve``; a copy's referrers counted in swapper_referrers_copied_total and each one not
copied logged once, the copy itself succeeding."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog
from helpers import run_swapper
from registries import (
    FAST_RETRY,
    OCI_INDEX,
    Index,
    Registry,
    multi_arch,
    plain_hosts,
    push_blob,
    push_manifest,
)
from supply.tools import RunningRegistry

from swapper.config import GenericRegistry, load_config
from swapper.errors import ConfigError
from swapper.images import parse
from swapper.metrics import Metrics
from swapper.mirror.engine import EngineCopier
from swapper.mirror.queue import CopyJob
from swapper.oci import CopyEngine, ReferrerSettings, RegistryClient
from swapper.targets.generic import GenericTarget
from swapper.wiring import referrer_settings

BASE = {"target": {"type": "generic", "generic": {"registry": "mirror.example.com/m"}}}


def config_with(**mirror: object) -> dict[str, object]:
    return {**BASE, "mirror": mirror}


def test_referrers_are_copied_by_default_whatever_their_type() -> None:
    config = load_config(BASE)
    assert config.mirror.referrers is True
    assert config.mirror.referrer_types == ()
    assert referrer_settings(config) == ReferrerSettings(types=())


def test_referrers_false_gives_the_engine_no_referrer_settings() -> None:
    assert referrer_settings(load_config(config_with(referrers=False))) is None


@pytest.mark.parametrize(
    "given",
    [
        ["application/vnd.dev.cosign.*", "application/spdx+json"],
        "application/vnd.dev.cosign.*, application/spdx+json",
    ],
)
def test_referrer_types_are_taken_as_a_list_or_comma_separated(given: object) -> None:
    config = load_config(config_with(referrerTypes=given))
    assert config.mirror.referrer_types == ("application/vnd.dev.cosign.*", "application/spdx+json")
    settings = referrer_settings(config)
    assert settings is not None and settings.types == config.mirror.referrer_types


@pytest.mark.parametrize("bad", ["sbom", "application/", "text/spdx json", 7])
def test_a_referrer_type_that_is_no_media_type_is_refused_naming_the_key(bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_with(referrerTypes=[bad]))
    problems = dict(info.value.problems)
    assert any("referrerTypes" in key for key in problems), problems


@pytest.fixture
async def client(
    lenient_registry: RunningRegistry, plain_target: Registry
) -> AsyncIterator[RegistryClient]:
    hosts = plain_hosts(lenient_registry.host, plain_target)
    async with RegistryClient(hosts=hosts, retry=FAST_RETRY) as registry_client:
        yield registry_client


def push_badly_referred(registry: RunningRegistry, repo: str) -> tuple[Index, str]:
    """A two-platform index at ``repo:1.0`` whose fallback tag lists a referrer that is not
    there, and whose arm64 manifest's fallback tag is not JSON; the missing digest."""
    index = multi_arch("logged")
    missing = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": 10,
        "digest": "sha256:" + "0" * 64,
    }
    fallback = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [missing]})
    with httpx.Client(base_url=registry.url, timeout=30) as source:
        for image in index.images:
            for blob in image.blobs:
                push_blob(source, repo, blob)
            push_manifest(source, repo, image.digest, image.data, image.media_type)
        push_manifest(source, repo, "1.0", index.data, index.media_type)
        for tag, body in (
            (index.digest.replace(":", "-"), fallback.encode()),
            (index.images[1].digest.replace(":", "-"), b"not json"),
        ):
            source.put(
                f"/v2/{repo}/manifests/{tag}",
                content=body,
                headers={"Content-Type": "application/json"},
            ).raise_for_status()
    return index, missing["digest"]


async def test_referrers_not_copied_are_counted_and_logged_once_each_and_the_copy_succeeds(
    client: RegistryClient,
    lenient_registry: RunningRegistry,
    plain_target: Registry,
    fresh_repo: str,
) -> None:
    index, missing = push_badly_referred(lenient_registry, fresh_repo)
    metrics = Metrics()
    target = GenericTarget(
        GenericRegistry.model_validate({"registry": f"{plain_target.host}/m", "insecure": True})
    )
    copier = EngineCopier(CopyEngine(client, referrers=ReferrerSettings()), target, metrics=metrics)
    job = CopyJob(
        parse(f"{lenient_registry.host}/{fresh_repo}:1.0"),
        f"{plain_target.host}/m/{fresh_repo}:1.0",
        f"m/{fresh_repo}",
    )
    with structlog.testing.capture_logs() as logs:
        result = await copier(job)
    assert result is not None and result.digest == index.digest
    sample = metrics.registry.get_sample_value
    assert sample("swapper_referrers_copied_total", {"result": "failed"}) == 1
    assert sample("swapper_referrers_copied_total", {"result": "malformed"}) == 1
    assert sample("swapper_referrers_copied_total", {"result": "copied"}) is None
    lines = [entry for entry in logs if entry["event"] == "referrer_not_copied"]
    assert len(lines) == 2
    assert {entry["log_level"] for entry in lines} == {"warning"}
    assert any(missing in entry["problem"] for entry in lines)


def test_swapper_mirror_refuses_a_referrer_type_that_is_no_media_type_before_copying() -> None:
    done = run_swapper("mirror", "127.0.0.1:1/a:1", "127.0.0.1:2/b:1", "--referrer-type", "sbom")
    assert done.returncode == 2
    assert "--referrer-type: 'sbom' is not a media type" in done.stderr
