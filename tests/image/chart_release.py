"""The Helm chart as a release artifact: packaged and pushed with the Helm SDK (helm_python).

The chart's ``version`` and ``appVersion`` come from one place, pyproject.toml's version (the
image tag too); ``charts/swapper/Chart.yaml`` carries the same values so that installing from
the path works, and tests/chart/test_dockerfile.py keeps them equal. When packaged for a
registry, the chart's default ``image.repository`` becomes ``<registry>/swapper``, so
``helm install oci://<registry>/charts/swapper --version X`` needs no image value.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import helm_python as helm
import yaml
from image.imagebuild import REPO, version

CHART = REPO / "charts" / "swapper"
# The first ``repository:`` line inside the top-level ``image:`` block of values.yaml.
_IMAGE_REPOSITORY = re.compile(r"(?m)^(image:\n(?:(?:  .*|\s*)\n)*?  repository: ).*$")


def with_image_repository(values_text: str, repository: str) -> str:
    """values.yaml text with the default image repository replaced; comments kept."""
    replaced, count = _IMAGE_REPOSITORY.subn(lambda m: m.group(1) + repository, values_text, 1)
    assert count == 1, "no image.repository in values.yaml"
    assert yaml.safe_load(replaced)["image"]["repository"] == repository
    return replaced


def package_chart(destination: Path, image_repository: str | None = None) -> Path:
    """``helm package`` with version and appVersion from pyproject.toml; returns the .tgz."""
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "swapper"
        shutil.copytree(CHART, source)
        if image_repository:
            values = source / "values.yaml"
            values.write_text(
                with_image_repository(values.read_text(encoding="utf-8"), image_repository),
                encoding="utf-8",
            )
        archive = helm.package(
            source, destination=destination, version=version(), app_version=version()
        )
    return Path(archive)


def push_chart(archive: Path, remote: str, *, plain_http: bool = False) -> str:
    """Push ``archive`` under ``remote`` (``oci://host/path``); returns ``remote/name:version``."""
    helm.push(archive, remote, plain_http=plain_http)
    loaded = helm.Chart.load_archive(archive.read_bytes())
    return f"{remote}/{loaded.name}:{loaded.version}"
