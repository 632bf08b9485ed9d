"""Build the swapper image with buildah (no Docker daemon), and release it with the chart.

Used by ``make image``, ``make image-test`` (through tests/image/conftest.py) and
``make release``:

    python tests/image/imagebuild.py base            # the debootstrap base, cached
    python tests/image/imagebuild.py image           # the image, on that base
    python tests/image/imagebuild.py release REGISTRY [--insecure]

Public base images cannot be pulled on the machines this project is tested on, so the base is
made with ``debootstrap``: Debian bookworm (``--variant=minbase``) with python3, python3-venv and
ca-certificates, ``python`` linked to python3, and the host's CA bundle (the build's ``pip
install`` reaches PyPI through the same CA the host trusts). It is made once, as a tar archive
under ``~/.cache/swapper-image/base-<key>/`` (``SWAPPER_IMAGE_CACHE`` moves it), the key being a
hash of its package list, suite, mirror and CA bundle; then imported into buildah's storage as
``localhost/swapper-python-base:<key>``. ``PYTHON_IMAGE`` (for example
``python:3.11-slim-bookworm``, the Dockerfile's default) builds on a pullable base instead.

buildah runs with ``--isolation chroot`` and the ``vfs`` storage driver (``BUILDAH_STORAGE``
overrides it): neither needs a daemon, user namespaces or overlay mounts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SWAPPER_IMAGE_CACHE", Path.home() / ".cache" / "swapper-image"))
STORAGE_DRIVER = os.environ.get("BUILDAH_STORAGE", "vfs")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
BASE_NAME = "localhost/swapper-python-base"
IMAGE_NAME = "localhost/swapper"
APT_PACKAGES = ("buildah", "debootstrap")
# buildah's own storage for swapper's images, in the cache (outside the work tree): the base,
# the image and its layer cache, and nothing else, so pruning it touches no one else's images.
STORAGE = CACHE / "storage"
BUILDAH = [
    "buildah",
    "--storage-driver",
    STORAGE_DRIVER,
    "--root",
    str(STORAGE / "root"),
    "--runroot",
    str(STORAGE / "run"),
]
_STEP_ID = re.compile(r"^--> (?:Using cache )?([0-9a-f]{11,64})$")
# Bumped when the way the base is made changes, so an old cached base is not reused.
RECIPE = 1


def version() -> str:
    """The one version: pyproject.toml's. The image tag, the chart's version and appVersion."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    assert found, "no version in pyproject.toml"
    return found.group(1)


def log(message: str) -> None:
    print(f"imagebuild: {message}", file=sys.stderr, flush=True)


def ensure_tools() -> None:
    """buildah and debootstrap from Debian, when missing (needs root, as ``make apt`` does)."""
    missing = [p for p in APT_PACKAGES if shutil.which(p) is None]
    if not missing:
        return
    log(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def buildah(*args: str, capture: bool = False, check: bool = True) -> str:
    command = [*BUILDAH, *args]
    result = subprocess.run(
        command, check=check, text=True, stdout=subprocess.PIPE if capture else None
    )
    return result.stdout.strip() if capture else ""


def image_exists(name: str) -> bool:
    result = subprocess.run(
        [*BUILDAH, "inspect", "--type", "image", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return result.returncode == 0


def base_key() -> str:
    recipe = {
        "recipe": RECIPE,
        "suite": SUITE,
        "mirror": MIRROR,
        "packages": sorted(PACKAGES),
        "ca": hashlib.sha256(HOST_CA.read_bytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def base_archive() -> Path:
    """The debootstrap root file system as a tar archive, made once per key."""
    key = base_key()
    folder = CACHE / f"base-{key}"
    archive = folder / "rootfs.tar"
    if archive.exists():
        return archive
    ensure_tools()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=folder) as work:
        root = Path(work) / "rootfs"
        log(f"debootstrap {SUITE} with {', '.join(PACKAGES)} into {root}")
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (root / "usr/bin/python").symlink_to("python3")
        # The host's bundle: pip inside the build then trusts what the host trusts.
        bundle = root / HOST_CA.relative_to("/")
        bundle.unlink(missing_ok=True)
        shutil.copyfile(HOST_CA, bundle)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        partial = folder / "rootfs.tar.partial"
        with tarfile.open(partial, "w") as tar:
            for entry in sorted(root.iterdir()):
                tar.add(entry, arcname=entry.name)
        partial.rename(archive)
    log(f"base made in {time.monotonic() - started:.0f} s: {archive}")
    return archive


def base_image() -> str:
    """The debootstrap base in buildah's storage, imported from the cached archive if needed."""
    name = f"{BASE_NAME}:{base_key()}"
    if image_exists(name):
        return name
    archive = base_archive()
    log(f"importing {archive} as {name}")
    container = buildah("from", "--quiet", "scratch", capture=True)
    try:
        buildah("add", container, str(archive), "/")
        buildah(
            "config",
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env",
            "LANG=C.UTF-8",
            "--env",
            f"SSL_CERT_FILE={HOST_CA}",
            "--env",
            f"PIP_CERT={HOST_CA}",
            "--cmd",
            "python3",
            container,
        )
        buildah("commit", "--quiet", container, name)
    finally:
        subprocess.run([*BUILDAH, "rm", container], check=False, stdout=subprocess.DEVNULL)
    return name


def source_url() -> str | None:
    """The clone's ``origin`` as an https URL, for the image's source label (None without one)."""
    found = subprocess.run(
        ["git", "-C", str(REPO), "remote", "get-url", "origin"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if found.startswith("git@") and ":" in found:
        host, _, path = found[4:].partition(":")
        found = f"https://{host}/{path}"
    found = found.removesuffix(".git")
    return found if found.startswith("https://") else None


def build_image(tag: str | None = None, python_image: str | None = None) -> str:
    """``buildah bud`` of the Dockerfile; returns the image name."""
    ensure_tools()
    tag = tag or f"{IMAGE_NAME}:{version()}"
    base = python_image or os.environ.get("PYTHON_IMAGE") or base_image()
    started = time.monotonic()
    command = [
        *BUILDAH,
        "bud",
        "--isolation",
        "chroot",
        "--layers",
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        "--build-arg",
        f"VERSION={version()}",
        *(["--build-arg", f"SOURCE={url}"] if (url := source_url()) else []),
        "--tag",
        tag,
        "--file",
        str(REPO / "Dockerfile"),
        str(REPO),
    ]
    steps: set[str] = set()
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as build:
        assert build.stdout is not None
        for line in build.stdout:
            sys.stderr.write(line)
            found = _STEP_ID.match(line.strip())
            if found:
                steps.add(found.group(1))
    if build.returncode != 0:
        raise subprocess.CalledProcessError(build.returncode, command)
    prune(keep=steps)
    log(f"built {tag} on {base} in {time.monotonic() - started:.0f} s")
    return tag


def prune(keep: set[str]) -> None:
    """Remove the layer-cache images of earlier builds (``vfs`` copies every layer in full):
    dangling images that are not a step of the build that just ran."""
    listed = buildah("images", "--filter", "dangling=true", "--format", "{{.ID}}", capture=True)
    stale = [i for i in listed.split() if not any(k.startswith(i) or i.startswith(k) for k in keep)]
    for image in stale:
        subprocess.run([*BUILDAH, "rmi", image], check=False, capture_output=True)


def release(registry: str, insecure: bool) -> None:
    """Push the image to ``REGISTRY/swapper:V`` and the chart to ``oci://REGISTRY/charts``."""
    sys.path.insert(0, str(REPO / "tests"))
    from image.chart_release import package_chart, push_chart

    tag = build_image()
    target = f"{registry}/swapper:{version()}"
    tls = ["--tls-verify=false"] if insecure else []
    buildah("push", *tls, tag, f"docker://{target}")
    log(f"pushed {target}")
    with tempfile.TemporaryDirectory() as work:
        archive = package_chart(Path(work), image_repository=f"{registry}/swapper")
        pushed = push_chart(archive, f"oci://{registry}/charts", plain_http=insecure)
        log(f"pushed chart {pushed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("base", help="make (or reuse) the debootstrap base")
    image = sub.add_parser("image", help="build the image")
    image.add_argument("--tag")
    rel = sub.add_parser("release", help="build and push the image and the chart")
    rel.add_argument("registry", help="host/path, e.g. registry.internal/platform")
    rel.add_argument("--insecure", action="store_true", help="plain HTTP, no TLS")
    args = parser.parse_args()
    if args.command == "base":
        print(base_image())
    elif args.command == "image":
        print(build_image(args.tag))
    else:
        release(args.registry.rstrip("/"), args.insecure)


if __name__ == "__main__":
    main()
