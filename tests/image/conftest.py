"""The real image, built with buildah from the Dockerfile, and processes run inside it.

``make image-test`` runs this folder: the session fixture ``image`` builds the image on the
cached debootstrap base (tests/image/imagebuild.py), ``container`` is one working container
of it, and ``image.running.run`` runs a command in it with ``buildah run --isolation chroot``,
as uid 65532 and on the host network. Every container, process and registry started here is
removed or stopped by the fixture that started it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from image import imagebuild
from image.running import Image
from registries import Registry, start_registry


@pytest.fixture(scope="session")
def image() -> Image:
    name = imagebuild.build_image()
    inspected = json.loads(
        subprocess.run(
            [*imagebuild.BUILDAH, "inspect", "--type", "image", name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    return Image(name, inspected)


@pytest.fixture(scope="session")
def container(image: Image) -> Iterator[str]:
    """A working container of the image (nothing runs in it until :func:`run`)."""
    name = subprocess.run(
        [*imagebuild.BUILDAH, "from", "--quiet", "--pull-never", image.name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    yield name
    subprocess.run([*imagebuild.BUILDAH, "rm", name], check=False, capture_output=True)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP docker-registry on loopback: the release registry."""
    running = start_registry(tmp_path_factory.mktemp("release-registry"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def mirror_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A second registry, the mirror ``swapper mirror`` copies into."""
    running = start_registry(tmp_path_factory.mktemp("mirror-registry"))
    yield running
    running.stop()
