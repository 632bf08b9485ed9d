"""The tools the supply-chain tests run are the real ones, at their pinned releases."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from supply import tools


def test_cosign_is_built_at_its_pinned_release(cosign_bin: Path) -> None:
    shown = subprocess.run(
        [str(cosign_bin), "version", "--json"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["gitVersion"] == tools.COSIGN.version


def test_the_referrers_registry_answers_the_referrers_api_with_an_empty_index(
    referrers_registry: tools.RunningRegistry,
) -> None:
    # An unknown repository is a 404 (NAME_UNKNOWN); a known one answers an empty index. Push a
    # blob-less manifest through the plain API first, so the repository exists.
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                "size": 2,
            },
            "layers": [],
        }
    ).encode()
    put = urllib.request.Request(
        f"{referrers_registry.url}/v2/tools/empty/manifests/v1",
        data=manifest,
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(put, timeout=10) as answer:
        digest = answer.headers["Docker-Content-Digest"]
    with urllib.request.urlopen(
        f"{referrers_registry.url}/v2/tools/empty/referrers/{digest}", timeout=10
    ) as answer:
        index = json.loads(answer.read())
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert index["manifests"] == []
    assert referrers_registry.requests("GET", "/v2/tools/empty/referrers/") == 1
