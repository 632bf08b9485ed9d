"""Images a real node can run, made here from Debian's busybox-static (no image comes from the
internet).

Every image is two layers: the static busybox (the same layer for every image, so a registry
and containerd hold it once) and a layer with ``/marker`` and ``/run.sh``. The entrypoint prints
``image=<marker>`` and then waits for SIGTERM: the container's own output (read from the
kubelet's pod log files) names the image that ran.

The pod sandbox ("pause") image is the same busybox in a loop that only waits, written as an OCI
image layout tar for ``ctr images import``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from functools import cache
from pathlib import Path

from registries import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Blob, Image

BUSYBOX = Path("/bin/busybox")
#: The sandbox image's name in containerd's store (containerd's ``sandbox_image``).
PAUSE_IMAGE = "swapper.local/e2e/pause:1"

#: sh as PID 1 ignores SIGTERM unless it traps it; ``sleep & wait`` lets the trap run at once.
WAIT_FOR_TERM = "trap 'exit 0' TERM INT; while :; do /bin/busybox sleep 3600 & wait $!; done"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(files: dict[str, tuple[bytes, int]]) -> Blob:
    """A gzipped tar layer of ``path -> (content, mode)``, with its parent directories."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        folders = sorted({str(Path(p).parent) for p in files if str(Path(p).parent) != "."})
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, (content, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), mode, 0
            tar.addfile(info, io.BytesIO(content))
    data = gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
    return Blob(_digest(data), len(data), OCI_LAYER, data=data, diff_id=_digest(raw.getvalue()))


@cache
def busybox_layer() -> Blob:
    """Debian's static busybox as ``/bin/busybox``."""
    return _layer({"bin/busybox": (BUSYBOX.read_bytes(), 0o755)})


def _image(layers: list[Blob], entrypoint: list[str]) -> Image:
    config_doc = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "config": {"Env": ["PATH=/bin"], "Entrypoint": entrypoint, "WorkingDir": "/"},
    }
    config_data = json.dumps(config_doc, separators=(",", ":")).encode()
    config = Blob(_digest(config_data), len(config_data), OCI_CONFIG, data=config_data)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    data = json.dumps(manifest, indent=2).encode()
    return Image(data, OCI_MANIFEST, config, layers)


def marker_image(marker: str) -> Image:
    """An image that prints ``image=<marker>`` and then waits for SIGTERM."""
    script = f'#!/bin/busybox sh\necho "image=$(/bin/busybox cat /marker)"\n{WAIT_FOR_TERM}\n'
    top = _layer({"marker": (marker.encode(), 0o644), "run.sh": (script.encode(), 0o755)})
    return _image([busybox_layer(), top], ["/bin/busybox", "sh", "/run.sh"])


def pause_image() -> Image:
    return _image([busybox_layer()], ["/bin/busybox", "sh", "-c", WAIT_FOR_TERM])


def write_oci_archive(image: Image, name: str, path: Path) -> Path:
    """``image`` as an OCI image layout tar that ``ctr images import`` stores as ``name``."""
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": len(image.data),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                },
            }
        ],
    }
    entries = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index).encode(),
        f"blobs/sha256/{image.digest.removeprefix('sha256:')}": image.data,
    }
    for blob in image.blobs:
        assert blob.data is not None
        entries[f"blobs/sha256/{blob.digest.removeprefix('sha256:')}"] = blob.data
    with tarfile.open(path, "w") as tar:
        for name_in_tar, content in entries.items():
            info = tarfile.TarInfo(name_in_tar)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return path
