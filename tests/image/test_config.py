"""The image's configuration, as buildah committed it."""

from __future__ import annotations

from image import imagebuild
from image.running import Image


def test_the_image_runs_as_the_numeric_non_root_user_65532(image: Image) -> None:
    assert image.config["User"] == "65532:65532"


def test_the_entrypoint_is_swapper_and_the_default_command_its_help(image: Image) -> None:
    assert image.config["Entrypoint"] == ["swapper"]
    assert image.config["Cmd"] == ["--help"]


def test_the_oci_labels_name_the_title_source_licence_and_pyproject_version(
    image: Image,
) -> None:
    labels = image.config["Labels"]
    assert labels["org.opencontainers.image.title"] == "swapper"
    assert labels["org.opencontainers.image.version"] == imagebuild.version()
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")


def test_the_image_is_tagged_with_the_pyproject_version(image: Image) -> None:
    assert image.name == f"{imagebuild.IMAGE_NAME}:{imagebuild.version()}"
