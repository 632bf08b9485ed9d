"""The debootstrap base: made once, cached outside the work tree under a key of its recipe."""

from __future__ import annotations

import os

import pytest
from image import imagebuild
from image.running import Image, run

# With PYTHON_IMAGE (a pullable base such as python:3.11-slim-bookworm) no base is made here.
made_here = pytest.mark.skipif(
    bool(os.environ.get("PYTHON_IMAGE")), reason="PYTHON_IMAGE: built on a pulled base"
)


@made_here
def test_the_base_archive_is_cached_outside_the_work_tree_under_its_key(image: Image) -> None:
    archive = imagebuild.CACHE / f"base-{imagebuild.base_key()}" / "rootfs.tar"
    assert archive.is_file()
    assert not archive.resolve().is_relative_to(imagebuild.REPO)


def test_the_base_key_changes_with_its_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    key = imagebuild.base_key()
    monkeypatch.setattr(imagebuild, "PACKAGES", (*imagebuild.PACKAGES, "curl"))
    assert imagebuild.base_key() != key


@made_here
def test_the_image_python_is_3_11_and_python_names_it(container: str) -> None:
    result = run(container, "/usr/bin/python", "-c", "import sys; print(sys.version_info[:2])")
    assert result.stdout.strip() == "(3, 11)"
