"""The image as a mirror source: pushed into one registry, copied by ``swapper mirror`` into
another, the same manifest digest at both ends."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from image import imagebuild
from image.running import Image
from registries import OCI_MANIFEST, Registry, get_manifest

REPOSITORY = "platform/swapper"


def test_the_pushed_image_mirrored_by_swapper_has_the_same_digest(
    image: Image, registry: Registry, mirror_registry: Registry
) -> None:
    tag = imagebuild.version()
    source = f"{registry.host}/{REPOSITORY}:{tag}"
    target = f"{mirror_registry.host}/mirror/{REPOSITORY}:{tag}"
    subprocess.run(
        [
            *imagebuild.BUILDAH,
            "push",
            "--quiet",
            "--tls-verify=false",
            image.name,
            f"docker://{source}",
        ],
        check=True,
    )
    swapper = Path(sys.executable).with_name("swapper")
    copied = subprocess.run(
        [
            str(swapper),
            "mirror",
            source,
            target,
            "--insecure",
            f"{registry.host},{mirror_registry.host}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    pushed = get_manifest(registry, REPOSITORY, tag)
    mirrored = get_manifest(mirror_registry, f"mirror/{REPOSITORY}", tag)
    assert pushed is not None and mirrored is not None
    digest = hashlib.sha256(pushed[0]).hexdigest()
    assert hashlib.sha256(mirrored[0]).hexdigest() == digest
    assert mirrored[1] == pushed[1]
    layers = json.loads(pushed[0])["layers"]
    assert len(layers) >= 2, "the base and the virtualenv at least"
    assert pushed[1] in (OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json")
