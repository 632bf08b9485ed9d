"""``make release REGISTRY=...``: the image and the chart pushed under one registry path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import helm_python as helm
from image import imagebuild
from registries import Registry, get_manifest


def test_release_pushes_the_image_and_a_chart_whose_default_image_is_that_image(
    registry: Registry, tmp_path: Path
) -> None:
    subprocess.run(
        ["make", "-s", "release", f"REGISTRY={registry.host}/release", "INSECURE=1"],
        cwd=imagebuild.REPO,
        check=True,
        timeout=900,
    )
    version = imagebuild.version()
    assert get_manifest(registry, "release/swapper", version) is not None
    with helm.RegistryClient(plain_http=True) as client:
        client.pull(
            f"oci://{registry.host}/release/charts/swapper", version=version, destination=tmp_path
        )
    chart = helm.Chart.load_archive((tmp_path / f"swapper-{version}.tgz").read_bytes())
    assert chart.metadata["appVersion"] == version
    values = chart.values
    assert values["image"]["repository"] == f"{registry.host}/release/swapper"
    assert values["image"]["tag"] in ("", version)
