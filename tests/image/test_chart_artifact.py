"""The chart as a release artifact: packaged with the one version, pushed to an OCI registry,
rendered back from ``oci://``, and installed from there into the real API server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from e2e.cluster import Cluster
from e2e.install import install_order
from image import imagebuild
from image.chart_release import package_chart, push_chart, with_image_repository
from registries import Registry

RELEASE = "swapper-oci"
NAMESPACE = "swapper-oci"
# The one value a user must give (where to mirror); the image comes from the chart's defaults.
VALUES = {"config": {"target": {"type": "generic", "generic": {"registry": "mirror.internal/m"}}}}


@pytest.fixture(scope="module")
def pushed(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``oci://127.0.0.1:PORT/platform/charts/swapper``, the version pushed to it."""
    archive = package_chart(
        tmp_path_factory.mktemp("chart"), image_repository=f"{registry.host}/platform/swapper"
    )
    push_chart(archive, f"oci://{registry.host}/platform/charts", plain_http=True)
    return f"oci://{registry.host}/platform/charts/swapper"


def pulled(reference: str, folder: Path) -> helm.Chart:
    with helm.RegistryClient(plain_http=True) as client:
        client.pull(reference, version=imagebuild.version(), destination=folder)
    (archive,) = folder.glob("swapper-*.tgz")
    return helm.Chart.load_archive(archive.read_bytes())


def rendered_objects(chart: helm.Chart, *, hooks: bool = True) -> list[dict[str, Any]]:
    manifests = chart.render(VALUES, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [
        doc
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc and (hooks or "helm.sh/hook" not in (doc["metadata"].get("annotations") or {}))
    ]


def test_the_packaged_chart_carries_the_pyproject_version_as_version_and_app_version(
    tmp_path: Path,
) -> None:
    chart = helm.Chart.load_archive(package_chart(tmp_path).read_bytes())
    assert chart.metadata["version"] == imagebuild.version()
    assert chart.metadata["appVersion"] == imagebuild.version()


def test_packaging_for_a_registry_sets_the_default_image_repository_only() -> None:
    values = (imagebuild.REPO / "charts/swapper/values.yaml").read_text(encoding="utf-8")
    replaced = with_image_repository(values, "registry.internal/platform/swapper")
    before, after = yaml.safe_load(values), yaml.safe_load(replaced)
    assert after["image"]["repository"] == "registry.internal/platform/swapper"
    after["image"]["repository"] = before["image"]["repository"]
    assert after == before


def test_the_pushed_chart_is_listed_under_its_version(pushed: str) -> None:
    with helm.RegistryClient(plain_http=True) as client:
        assert imagebuild.version() in client.tags(pushed)


def test_the_chart_renders_back_from_the_registry_with_the_registry_image(
    pushed: str, registry: Registry, tmp_path: Path
) -> None:
    objects = rendered_objects(pulled(pushed, tmp_path))
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{registry.host}/platform/swapper:{imagebuild.version()}"


def test_the_chart_from_the_registry_installs_into_the_api_server(
    pushed: str, cluster: Cluster, tmp_path: Path
) -> None:
    objects = rendered_objects(pulled(pushed, tmp_path), hooks=False)
    cluster.namespace(NAMESPACE)
    created = []
    try:
        for obj in install_order(objects):
            cluster.kubectl("create", "--validate=strict", "-f", "-", stdin=yaml.safe_dump(obj))
            created.append(obj)
        stored = cluster.kubectl(
            "-n",
            NAMESPACE,
            "get",
            "deployment",
            RELEASE,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ).stdout
        assert stored.endswith(f"/platform/swapper:{imagebuild.version()}")
    finally:
        for obj in reversed(created):
            cluster.kubectl(
                "delete", "--wait=false", "-f", "-", stdin=yaml.safe_dump(obj), check=False
            )
